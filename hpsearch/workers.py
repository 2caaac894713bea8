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
import queue as queue_module
import signal
import time
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import optuna

from hpsearch.errors import HpsearchError, TrainingError, UsageError
from hpsearch.results import load_study
from hpsearch.runner import RunObserver, RunSummary, resolve_spec, run_study

POLL_S = 1.0  # how often (s) the parent reads the study's progress from storage


@dataclass
class WorkerResult:
    worker: int
    device: str
    exit_code: int  # 0, the HpsearchError's code, or 130 when interrupted
    message: str  # the error line, or "" on success
    new_trials: list[int]


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
    budget = run_kwargs.get("trials") or resolve_spec(study, run_kwargs.get("studies_dir")).trials
    results = _run_processes(study, jobs, devices, overrides, run_kwargs, observer, first, budget)
    summary = _summary(study, run_kwargs, overrides, results)
    summary.finished_before = first.finished_before
    summary.budget = budget or summary.budget
    return summary


def _run_processes(study, jobs, devices, overrides, run_kwargs, observer, first, budget) -> list:
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    results = context.Queue()
    processes = [
        context.Process(
            target=_worker,
            args=(index, study, devices[index % len(devices)], overrides, run_kwargs, results),
        )
        for index in range(jobs)
    ]
    for process in processes:
        process.start()
    try:
        _watch(processes, first, observer, run_kwargs.get("storage"), budget)
    except KeyboardInterrupt:
        for process in processes:
            process.terminate()  # SIGTERM: each worker fails its running trial, then exits
        for process in processes:
            process.join()
        raise
    return [_drain(results) for _ in processes]


def _watch(processes, first: RunSummary, observer, storage, budget) -> None:
    """Show the shared progress (read from storage) until every worker has exited."""
    study = None
    while any(p.is_alive() for p in processes):
        time.sleep(POLL_S)
        if observer is None:
            continue
        if study is None:
            study = load_study(first.study_name, storage)
            observer.on_start(study, budget, first.finished_before)
        observer.on_trial(study, None)


def _drain(results) -> WorkerResult:
    try:
        return results.get(timeout=30)
    except queue_module.Empty:  # a worker killed before it could report
        return WorkerResult(-1, "?", 1, "a worker exited without reporting", [])


def _worker(index, study, device, overrides, run_kwargs, results) -> None:
    """One worker process: the ordinary study loop, its outcome sent back to the parent."""
    signal.signal(signal.SIGTERM, _raise_interrupt)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    try:
        summary = run_study(study, **run_kwargs, overrides={**overrides, "device": device},
                            worker=index + 1)
        results.put(WorkerResult(index, device, 0, "", summary.new_trials))
    except HpsearchError as err:
        results.put(WorkerResult(index, device, err.exit_code, str(err), []))
    except KeyboardInterrupt:
        results.put(WorkerResult(index, device, 130, "interrupted", []))


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _summary(study, run_kwargs, overrides, results: list[WorkerResult]) -> RunSummary:
    failed = [r for r in results if r.exit_code != 0]
    if any(r.exit_code == 130 for r in failed):
        raise KeyboardInterrupt
    if failed:
        worst = failed[0]
        raise TrainingError(f"worker {worst.worker} ({worst.device}): {worst.message}")
    # A last pass in this process: counts and the phase's choice over every worker's trials.
    summary = run_study(study, **{**run_kwargs, "trials": 0}, overrides=overrides)
    summary.new_trials = sorted(n for r in results for n in r.new_trials)
    return summary

