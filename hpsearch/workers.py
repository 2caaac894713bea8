"""Parallel workers on one machine: N processes share one study's budget through storage.

`hpsearch run --jobs N [--devices cuda:0,cuda:1]` validates the request once here, then
starts N worker processes (round-robin over the devices). Each runs the ordinary
`run_study` loop, so the budget, heartbeats and Ctrl-C behave exactly as for one worker;
workers on other machines join the same study by running `hpsearch run` against the same
PostgreSQL URL. Factories must be importable by path: a spawned process does not see models
registered with decorators in a notebook.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import signal
import socket
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Mapping

import optuna
import torch
from optuna.trial import TrialState

from hpsearch import interrupt, records
from hpsearch.errors import HpsearchError, TrainingError, UsageError
from hpsearch.runner import RunObserver, RunSummary, run_study, trial_budget
from hpsearch.storage import fail_trials_of_dead_workers, load_study

POLL_S = 1.0  # how often (s) the parent reads the study's progress from storage
# After the parent's SIGTERM, how long (s) a worker may take to fail its trial at its next
# batch and exit before it is signalled again (it then raises wherever it is), then killed.
STOP_GRACE_S = 30.0
THREADS_ENV = "HPSEARCH_TORCH_THREADS"


@dataclass
class WorkerResult:
    worker: int  # 0-based index; messages say `worker {index + 1}`
    device: str
    exit_code: int  # 0, the HpsearchError's code, or 130 when interrupted
    message: str  # the error line, or "" on success
    new_trials: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)  # trials an interrupt marked FAIL
    died: bool = False  # killed (or crashed) before it could report


def run_workers(
    study: str,
    *,
    jobs: int,
    devices: list[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    observer: RunObserver | None = None,
    **run_kwargs: Any,
) -> RunSummary:
    """Run `jobs` workers on study `study` until its budget is spent; return the summary."""
    if jobs < 1:
        raise UsageError(f"--jobs: must be at least 1, got {jobs}; fix: pass --jobs 2 or more")
    overrides = dict(overrides or {})
    devices = devices or [str(overrides.get("device", "auto"))]
    # Validate and create the study once, here: bad input fails with one line, no process.
    first = run_study(study, **{**run_kwargs, "trials": 0}, overrides=overrides)
    budget = trial_budget(first.spec, run_kwargs.get("trials"))  # a grid: its size at most
    processes, results = _run_processes(study, jobs, devices, overrides, run_kwargs, observer,
                                        first, budget)
    stopped = any(r.exit_code == interrupt.EXIT_INTERRUPTED for r in results)
    if interrupt.requested() or stopped:
        raise _interrupted(first.study_name, run_kwargs.get("storage"), processes, results)
    dead = _dead(processes, results)
    _fail_trials_of(first.study_name, run_kwargs.get("storage"), dead, budget)
    if dead:  # the others may have stopped before the dead one's trial was queued again
        _finish_budget(study, run_kwargs, overrides, next(r.device for r in results if r.died))
    summary = _summary(study, run_kwargs, overrides, results, budget)
    summary.finished_before = first.finished_before
    summary.budget = budget or summary.budget
    return summary


def _run_processes(study, jobs, devices, overrides, run_kwargs, observer, first, budget):
    """Start the workers, show progress, stop them on a stop request; (processes, results)."""
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    queue = context.Queue()
    processes = [
        context.Process(
            target=_worker,
            args=(index, study, devices[index % len(devices)], overrides, run_kwargs, queue,
                  cpu_threads(jobs)),
        )
        for index in range(jobs)
    ]
    for process in processes:
        process.start()
    try:
        _watch(processes, first, observer, run_kwargs.get("storage"), budget)
    except KeyboardInterrupt:  # a second Ctrl-C while the progress was being read
        interrupt.request_stop()
    if interrupt.requested():
        _stop(processes)
    return processes, _collect(processes, devices, queue)


def _watch(processes, first: RunSummary, observer, storage, budget) -> None:
    """Show the shared progress (read from storage) until every worker has exited or a stop
    is requested. A worker seen dead (killed) has its trial failed and queued again at once,
    so the others run it instead of waiting out its heartbeat."""
    study, seen_dead = None, set()
    while any(p.is_alive() for p in processes) and not interrupt.requested():
        time.sleep(POLL_S)
        dead = [p for p in processes if p.exitcode not in (None, 0) and p.pid not in seen_dead]
        if dead:
            seen_dead.update(p.pid for p in dead)
            _fail_trials_of(first.study_name, storage, dead, budget)
        if observer is None:
            continue
        if study is None:
            study = load_study(storage, first.study_name)
            observer.on_start(study, budget, first.finished_before)
        observer.on_trial(study, None)


def _stop(processes) -> None:
    """One SIGTERM per worker: each fails its trial at its next batch and exits. One still
    alive after STOP_GRACE_S gets a second SIGTERM (it raises wherever it is), then SIGKILL
    (its heartbeat goes stale, and the next run fails and queues its trial)."""
    for signal_them in ("terminate", "terminate", "kill"):
        alive = [p for p in processes if p.is_alive()]
        for process in alive:
            getattr(process, signal_them)()
        deadline = time.monotonic() + STOP_GRACE_S
        for process in alive:
            process.join(max(0.0, deadline - time.monotonic()))


def _collect(processes, devices, results) -> list[WorkerResult]:
    """Each worker's result, once all have exited; one that died without reporting is named
    with the signal or exit code it died of."""
    for process in processes:
        process.join()
    reported: dict[int, WorkerResult] = {}
    while True:
        try:
            result = results.get(timeout=1)
        except queue_module.Empty:
            break
        reported[result.worker] = result
    return [reported.get(index) or _died(index, devices[index % len(devices)], process)
            for index, process in enumerate(processes)]


def _died(index: int, device: str, process) -> WorkerResult:
    code = process.exitcode
    how = (f"was killed by {signal.Signals(-code).name}" if code is not None and code < 0
           else f"exited with code {code}")
    return WorkerResult(index, device, 1, f"{how} before it reported", died=True)


def cpu_threads(jobs: int) -> int:
    """Torch threads per worker: the machine's cores shared out (`$HPSEARCH_TORCH_THREADS`
    overrides). Each torch process otherwise takes every core, and N workers then fight over
    them: on 2 cores under load, 5 digits epochs took 2.0 s with torch's default threads and
    0.29 s with one thread each (issue 8)."""
    explicit = os.environ.get(THREADS_ENV)
    if explicit:
        return max(1, int(explicit))
    return max(1, len(os.sched_getaffinity(0)) // jobs)


def _worker(index, study, device, overrides, run_kwargs, results, threads: int) -> None:
    """One worker process: the ordinary study loop, its outcome sent back to the parent."""
    interrupt.install_in_worker()
    if not device.startswith("cuda"):  # a GPU worker's threads only feed the device
        torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        summary = run_study(study, **run_kwargs, overrides={**overrides, "device": device},
                            worker=index + 1)
        results.put(WorkerResult(index, device, 0, "", summary.new_trials))
    except HpsearchError as err:
        results.put(WorkerResult(index, device, err.exit_code, str(err), []))
    except interrupt.Interrupted as err:
        results.put(WorkerResult(index, device, interrupt.EXIT_INTERRUPTED, "interrupted",
                                 failed=err.failed))
    except (KeyboardInterrupt, interrupt.StopRequested):
        results.put(WorkerResult(index, device, interrupt.EXIT_INTERRUPTED, "interrupted"))


def _summary(study, run_kwargs, overrides, results: list[WorkerResult], budget) -> RunSummary:
    errors = [r for r in results if r.exit_code != 0 and not r.died]
    if errors:
        worst = errors[0]
        raise TrainingError(f"worker {worst.worker + 1} ({worst.device}): {worst.message}")
    # A last pass in this process: counts and the phase's choice over every worker's trials.
    summary = run_study(study, **{**run_kwargs, "trials": 0}, overrides=overrides)
    summary.new_trials = sorted(n for r in results for n in r.new_trials)
    for dead in (r for r in results if r.died):
        line = f"worker {dead.worker + 1} ({dead.device}) {dead.message}"
        if summary.finished_before < budget:
            raise TrainingError(f"{line}; the budget is not met; fix: rerun the same command "
                                "(the next run fails the trial it left and queues it again)")
        summary.warnings.append(f"{line}; the budget was still met")
    return summary


def _interrupted(name: str, storage, processes, results) -> interrupt.Interrupted:
    """The workers' accounts checked against storage: a worker killed mid-trial reported
    nothing, so what its trial was left as is read back (and failed: it is dead)."""
    failed = [n for r in results for n in r.failed]
    failed += _fail_trials_of(name, storage, _dead(processes, results))
    running = [t.number for t in _trials_of(load_study(storage, name), processes)
               if t.state == TrialState.RUNNING]
    return interrupt.Interrupted(name, failed=sorted(failed), running=running)


def _fail_trials_of(name: str, storage, dead, budget: int | None = None) -> list[int]:
    """The trials left RUNNING by the `dead` worker processes, failed now (their process is
    gone, so no heartbeat wait) and queued again once unless the budget is met without
    them. The numbers failed."""
    if not dead:
        return []
    study = load_study(storage, name)
    left = [t.number for t in _trials_of(study, dead) if t.state == TrialState.RUNNING]
    finished = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
    return fail_trials_of_dead_workers(study, left, retry=budget is None or finished < budget)


def _dead(processes, results) -> list:
    return [p for p, r in zip(processes, results) if r.died]


def _finish_budget(study, run_kwargs, overrides, device: str) -> None:
    """Run, in this process, what a killed worker left of the budget (its trial, queued
    again): the other workers stop as soon as every slot is claimed, and the dead worker's
    slot was still claimed, RUNNING, when they looked."""
    run_study(study, **run_kwargs, overrides={**overrides, "device": device})


def _trials_of(study: optuna.Study, processes) -> list:
    """The trials these worker processes ran (their `worker` attribute: host:pid device)."""
    ours = tuple(f"{socket.gethostname()}:{p.pid} " for p in processes)
    return [t for t in study.get_trials(deepcopy=False)
            if str(records.TrialFacts.of(t).worker or "").startswith(ours)]
