"""One heartbeat thread a process (hpsearch/heartbeat.py): every trial beats from its start and
at least once an interval while it runs, without a thread started and joined for each."""

from __future__ import annotations

import threading
import time

import optuna
import pytest
import sqlalchemy
from optuna.storages._heartbeat import BaseHeartbeat, HeartbeatThread
from optuna.storages._rdb import models

from hpsearch import heartbeat, storage as hpsearch_storage
from hpsearch.storage import open_storage

BEATS = models.TrialHeartbeatModel.__table__


def _beat_of(storage, trial_id):
    with storage.engine.connect() as connection:
        return connection.execute(sqlalchemy.select(BEATS.c.heartbeat)
                                  .where(BEATS.c.trial_id == trial_id)).scalar()


def _first_beat(storage, trial_id, within_s=5.0):
    """The trial's beat, once the process's thread wrote it (at once, on another thread)."""
    deadline = time.monotonic() + within_s
    while (beat := _beat_of(storage, trial_id)) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return beat


def test_every_trial_beats_from_its_start_through_one_thread_of_the_process(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'beats.db'}")
    study = optuna.create_study(storage=storage)
    before = set(threading.enumerate())  # other tests' threads (a watchdog) are not counted
    seen = []

    def objective(trial):
        started = [t for t in threading.enumerate() if t not in before]
        seen.append((started, _first_beat(storage, trial._trial_id)))  # held: no id reused
        return 0.0

    study.optimize(objective, n_trials=4)
    assert all(beat is not None for _, beat in seen)  # a dead worker's trial is found stale
    assert len({tuple(id(t) for t in started) for started, _ in seen}) == 1  # Optuna: one each
    assert all(t.name == "hpsearch-heartbeat" for t in seen[0][0])
    assert heartbeat._BEATER._due == {}  # ended trials are not beaten for


def test_a_long_trial_beats_again_every_interval(tmp_path, monkeypatch):
    monkeypatch.setattr(hpsearch_storage, "HEARTBEAT_S", 1)
    storage = open_storage(f"sqlite:///{tmp_path / 'long.db'}")
    study = optuna.create_study(storage=storage)
    beats = []

    def objective(trial):
        beats.append(_first_beat(storage, trial._trial_id))
        for _ in range(2):
            time.sleep(1.6)  # a beat a second, written within 0.6 s (SQLite's clock reads whole s)
            beats.append(_beat_of(storage, trial._trial_id))
        return 0.0

    study.optimize(objective, n_trials=1)
    assert beats[0] is not None and beats[0] < beats[1] < beats[2]


def test_a_storage_hpsearch_did_not_open_keeps_optunas_own_thread(tmp_path):
    ours = open_storage(f"sqlite:///{tmp_path / 'ours.db'}")  # installs the shared heartbeat
    theirs = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'theirs.db'}",
                                        heartbeat_interval=60)
    lookup = optuna.study._optimize.get_heartbeat_thread
    assert type(lookup(1, theirs)) is HeartbeatThread
    assert type(lookup(1, optuna.storages._CachedStorage(ours))) is heartbeat.SharedHeartbeat


class _FlakyBeats(BaseHeartbeat):
    """A storage whose first beat fails (the database away for a moment)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def record_heartbeat(self, trial_id: int) -> None:
        self.calls.append(time.monotonic())
        if len(self.calls) == 1:
            raise optuna.exceptions.StorageInternalError("database away")

    def get_heartbeat_interval(self) -> int:
        return 1

    def _get_stale_trial_ids(self, study_id):
        return []

    def get_heartbeat_stale_trial_callback(self):
        return None


def test_a_beat_that_fails_is_tried_again_an_interval_later_and_none_after_the_trial():
    flaky = _FlakyBeats()
    beats = heartbeat.SharedHeartbeat(7, flaky)
    started = time.monotonic()
    beats.start()  # a failure stays in the heartbeat's thread: the trial runs on
    deadline = started + 5
    while len(flaky.calls) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(flaky.calls) == 2
    assert flaky.calls[0] - started < 0.5 and 0.9 < flaky.calls[1] - flaky.calls[0] < 2.0
    beats.join()
    ended = len(flaky.calls)
    time.sleep(1.5)  # past the next interval
    assert len(flaky.calls) == ended


@pytest.fixture(autouse=True)
def _no_beats_left():
    yield
    heartbeat._BEATER._due.clear()
