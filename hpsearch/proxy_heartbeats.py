"""Heartbeats through Optuna's gRPC storage proxy, whose protocol carries none.

A worker of the proxy (`--storage grpc://HOST:PORT`) records each running trial's heartbeat
as a trial system attribute (records.PROXY_HEARTBEAT: the worker's clock, in seconds), every
HEARTBEAT_S, through the proxy's ordinary calls. A RUNNING trial whose latest heartbeat, or
start, is more than GRACE_S old is stale: a killed worker's, or a lost machine's. Optuna's
own heartbeat machinery then works as on a SQL storage: the worker's heartbeat thread, stale
trials failed before each new trial and by every `run`, each queued again once, and phases
waiting for other workers' live trials before they choose. The workers' clocks must agree
to well within GRACE_S (120 s; NTP keeps them within milliseconds).
"""

from __future__ import annotations

import time
from typing import Callable

import optuna
from optuna.storages import GrpcStorageProxy, RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState

from hpsearch import records


class HeartbeatingProxy(GrpcStorageProxy, BaseHeartbeat):
    """A client of the gRPC proxy that records and reads heartbeats as trial attributes."""

    def __init__(self, *, host: str, port: int, interval_s: int, grace_s: int) -> None:
        super().__init__(host=host, port=port)
        self.interval_s, self.grace_s = interval_s, grace_s

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, records.PROXY_HEARTBEAT, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        now = time.time()
        return [t._trial_id for t in self._running(study_id)
                if now - self._last_sign_of_life(t) > self.grace_s]

    def get_heartbeat_interval(self) -> int | None:
        return self.interval_s

    def get_heartbeat_stale_trial_callback(
            self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        # A trial lost with its worker is queued again once, with the same parameters.
        return RetryHeartbeatStaleTrialCallback(max_retry=1)

    # What storage.count_trials and storage.records_heartbeats ask of our SQL storage.
    def count_trials(self, study_id: int, states: tuple[TrialState, ...],
                     number_below: int | None = None, heartbeating: bool = False) -> int:
        trials = self.get_all_trials(study_id, deepcopy=False, states=states)
        return sum(1 for t in trials
                   if (number_below is None or t.number < number_below)
                   and (not heartbeating or records.PROXY_HEARTBEAT in t.system_attrs))

    def records_heartbeats(self, trial_id: int) -> bool:
        return records.PROXY_HEARTBEAT in self.get_trial(trial_id).system_attrs

    def _running(self, study_id: int) -> list[FrozenTrial]:
        return [t for t in self.get_all_trials(study_id, deepcopy=False,
                                               states=(TrialState.RUNNING,))
                if records.PROXY_HEARTBEAT in t.system_attrs]

    @staticmethod
    def _last_sign_of_life(trial: FrozenTrial) -> float:
        """Its latest heartbeat, or its start when later: a retry carries the heartbeat its
        failed original recorded, until its own worker records the first."""
        started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
        return max(float(trial.system_attrs[records.PROXY_HEARTBEAT]), started)
