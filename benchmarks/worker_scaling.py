"""Trials per second at 1 and 2 (or more) `--jobs` on this machine, side by side in one run.

Each row is a fresh SQLite study run by the plain command a user types,
`hpsearch run --study FILE --jobs N --trials T`, on digits (20 epochs a trial, a new seed
each trial, so every trial trains). Throughput is read back from storage: finished trials
over the time from the first trial's start to the last one's end, so process start-up
(importing torch) is not counted. On CPU, the last row gives each of the N workers every
core (`HPSEARCH_TORCH_THREADS` = cores): what `--jobs` did before it split the cores.
With `--devices cuda:0` every worker shares the one GPU: whether several workers per GPU pay
for a model too small to fill it (README, "Storage: from one machine to many").

    python benchmarks/worker_scaling.py [--jobs 1 2] [--trials 40] [--epochs 20]
        [--postgres postgresql+psycopg://user:password@127.0.0.1:5432/db]
    python benchmarks/worker_scaling.py --devices cuda:0 --jobs 1 4 8 --trials 64
    python benchmarks/worker_scaling.py --devices cuda:0 --dataset mnist --data-dir DIR
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import optuna

STUDY = """\
base: {{dataset: {dataset}, data_dir: {data_dir}, epochs: {epochs}}}
objective: {{metric: val_acc}}
sampler: {{name: random}}
pruner: {{name: none}}
space:   # a new seed each trial: every trial trains
  seed: {{type: int, low: 0, high: 1000000000}}
"""


def trials_per_second(folder: Path, jobs: int, trials: int, epochs: int,
                      threads: int | None = None, server: str | None = None,
                      devices: str = "cpu", dataset: str = "digits",
                      data_dir: str = "../shared/data") -> float:
    """Trials/s of one row; on SQLite in `folder`, or on the PostgreSQL URL `server`."""
    name = f"scaling_{jobs}_{threads or 'split'}_{uuid.uuid4().hex[:6]}"
    path = folder / f"{name}.yaml"
    path.write_text(STUDY.format(epochs=epochs, dataset=dataset,
                                 data_dir=Path(data_dir).resolve()))
    url = server or f"sqlite:///{folder / name}.db"
    env = {**os.environ}
    if threads is not None:
        env["HPSEARCH_TORCH_THREADS"] = str(threads)
    else:
        env.pop("HPSEARCH_TORCH_THREADS", None)  # hpsearch's default: cores / jobs
    subprocess.run([sys.executable, "-m", "hpsearch", "run", "--study", str(path), "--storage",
                    url, "--jobs", str(jobs), "--trials", str(trials), "--devices", devices],
                   check=True, capture_output=True, env=env, cwd=folder)
    done = [t for t in optuna.load_study(study_name=name, storage=url).get_trials()
            if t.state == optuna.trial.TrialState.COMPLETE]
    began = min(t.datetime_start for t in done)
    ended = max(t.datetime_complete for t in done)
    return len(done) / (ended - began).total_seconds()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--postgres", help="also on this PostgreSQL URL (a database to use)")
    parser.add_argument("--no-every-core", action="store_true",
                        help="leave out the rows where each worker takes every core")
    parser.add_argument("--devices", default="cpu",
                        help="as `hpsearch run --devices`: cpu, or cuda:0 for every worker "
                             "on one GPU")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default="../shared/data")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    cores = os.cpu_count() or 1
    on_cpu = args.devices == "cpu"
    print(f"{args.dataset}, {args.epochs} epochs a trial, {args.trials} trials a row, "
          f"{cores} CPU cores, devices {args.devices}")
    print(f"{'storage':<12}{'jobs':>5}{'torch threads/worker':>22}{'trials/s':>10}"
          f"{'vs 1 job':>10}")
    storages = [("SQLite", None)] + ([("PostgreSQL", args.postgres)] if args.postgres else [])
    with tempfile.TemporaryDirectory() as tmp:
        for label, server in storages:
            rows = [(jobs, None) for jobs in args.jobs]
            every_core = on_cpu and not args.no_every_core  # a GPU worker's threads idle
            rows += [(max(args.jobs), cores)] if every_core else []
            single = None
            for jobs, threads in rows:
                rate = trials_per_second(Path(tmp), jobs, args.trials, args.epochs, threads,
                                         server, args.devices, args.dataset, args.data_dir)
                single = rate if single is None else single
                shown = f"{threads} (every core)" if threads else f"{max(1, cores // jobs)}"
                print(f"{label:<12}{jobs:>5}{shown:>22}{rate:>10.2f}{rate / single:>9.2f}x",
                      flush=True)


if __name__ == "__main__":
    main()
