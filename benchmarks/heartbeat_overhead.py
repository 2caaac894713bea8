"""What a trial's heartbeat costs the worker: Optuna's thread a trial against hpsearch's one
thread a process (hpsearch/heartbeat.py), side by side in one run.

Each trial is asked for, held for `--trial-ms` of computation inside the heartbeat (a
stand-in for training), and told; what is timed is entering and leaving the heartbeat, the
part of the trial each way spends on it. The two arms alternate, a round of `--trials`
trials each. `--busy N` keeps N other processes spinning meanwhile, as the other workers of
`hpsearch run --jobs N` keep every core busy: a thread that starts or stops then waits for a
time slice.

    python benchmarks/heartbeat_overhead.py [--trials 20] [--rounds 5] [--busy 2]
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Callable, Iterator

import optuna
from optuna.storages._heartbeat import HeartbeatThread

from hpsearch.heartbeat import SharedHeartbeat
from hpsearch.storage import open_storage

ARMS: dict[str, Callable] = {
    "Optuna's thread a trial": HeartbeatThread,
    "hpsearch's thread a process": SharedHeartbeat,
}


def _spin() -> None:
    while True:
        pass


@contextlib.contextmanager
def busy_cores(processes: int) -> Iterator[None]:
    """`processes` others spinning on the CPU while the block runs."""
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(processes)]
    for spinner in spinners:
        spinner.start()
    try:
        yield
    finally:
        for spinner in spinners:  # SIGKILL: a fork keeps the parent's SIGTERM handler
            spinner.kill()  # (hpsearch's, which lets a trial end first), so it spins on
            spinner.join()


def _compute(seconds: float) -> None:
    end = time.perf_counter() + seconds
    total = 0
    while time.perf_counter() < end:
        total += sum(range(200))


def heartbeat_ms(study: optuna.Study, heartbeat: Callable, trials: int, trial_s: float) -> float:
    """Mean ms a trial spent entering and leaving `heartbeat`."""
    backend = study._storage._backend  # the storage a worker's heartbeat writes to
    spent = 0.0
    for _ in range(trials):
        trial = study.ask()
        beats = heartbeat(trial._trial_id, backend)
        start = time.perf_counter()
        beats.start()
        spent += time.perf_counter() - start
        _compute(trial_s)
        start = time.perf_counter()
        beats.join()
        spent += time.perf_counter() - start
        study.tell(trial, 0.0)
    return spent / trials * 1000


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="per arm and round")
    parser.add_argument("--rounds", type=int, default=5, help="the arms alternate")
    parser.add_argument("--trial-ms", type=float, default=50.0, help="computation a trial")
    parser.add_argument("--busy", type=int, default=0, help="other processes spinning")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")  # Optuna warns of a heartbeat used outside `optimize`
    results: dict[str, list[float]] = {name: [] for name in ARMS}
    with tempfile.TemporaryDirectory() as folder, busy_cores(args.busy):
        study = optuna.create_study(storage=open_storage(f"sqlite:///{Path(folder) / 'b.db'}"))
        for _ in range(args.rounds):
            for name, heartbeat in ARMS.items():
                results[name].append(heartbeat_ms(study, heartbeat, args.trials,
                                                  args.trial_ms / 1000))
    print(f"heartbeat, {args.rounds} rounds of {args.trials} trials an arm, "
          f"{args.trial_ms:g} ms of computation a trial, {args.busy} other processes busy, SQLite")
    for name, rounds in results.items():
        print(f"{name:<30}{statistics.median(rounds):>8.2f} ms a trial "
              f"(median of the rounds; {min(rounds):.2f} to {max(rounds):.2f})")


if __name__ == "__main__":
    main()
