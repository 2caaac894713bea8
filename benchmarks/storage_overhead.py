"""What the storage costs a trial: hpsearch's path beside plain Optuna, SQLite and PostgreSQL,
1 to 16 workers, in one run.

Both arms run trials that train nothing, so the storage is all there is to measure: 20
steps a trial, and at each step a report and a pruning check (median pruner, which never
prunes here: 1000 startup trials).

- plain Optuna: `study.optimize` with an objective calling `trial.report` and
  `trial.should_prune` each step, on Optuna's RDBStorage;
- hpsearch: `run_study` on a study file whose `fit` hook reports 20 epochs and returns;
  everything a real trial stores goes to storage (configuration, worker, per-epoch history,
  criteria), with hpsearch's batching (hpsearch/reports.py) and exact budget.

Each worker is a process, started and imported before the clock starts; every worker of a
row shares one study. Printed per row: ms of storage per trial (wall time x workers /
trials: the cost one worker pays), per epoch, and trials/s over all workers.

    python benchmarks/storage_overhead.py [--trials-per-worker 30] [--epochs 20]
        [--postgres postgresql+psycopg://user:password@127.0.0.1:5432/postgres] [--durable]
        [--repeats 5]

--repeats N runs each row N times, its arms alternating, and prints the median run with
the range of ms/epoch: on a shared machine one run of a row moved by a quarter within the
hour (README, Storage).

--durable adds a third PostgreSQL arm: hpsearch with durable commits (the URL's
`options=-c synchronous_commit=on`, which hpsearch's sessions turn off; hpsearch/storage.py).

PostgreSQL rows run when --postgres (or $HPSEARCH_TEST_POSTGRES_URL) names a server where
the user may create databases; each row gets a database of its own, dropped afterwards.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import optuna
import sqlalchemy

FIT_HOOK = '''\
def fit(config, data, device, report):
    for epoch in range(1, config.epochs + 1):
        report(epoch, train_loss=1.0 / epoch, val_loss=1.0 / epoch, val_acc=0.5)
    return None
'''

STUDY = """\
base: {{dataset: digits, epochs: {epochs}, fit: "bench_fit:fit"}}
objective: {{metric: val_acc}}
sampler: {{name: random}}
pruner: {{name: median, n_startup_trials: 1000}}   # checks every epoch, never prunes
space:   # a new seed each trial: every trial runs (the same configuration twice is a repeat)
  seed: {{type: int, low: 0, high: 1000000000}}
"""


def _plain_worker(url, name, trials, epochs, start, done):
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=name, storage=url,
                              pruner=optuna.pruners.MedianPruner(n_startup_trials=1000))

    def objective(trial):
        seed = trial.suggest_int("seed", 0, 10**9)
        for step in range(1, epochs + 1):
            trial.report(0.5, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return seed * 0.0 + 0.5

    start.wait()
    study.optimize(objective, n_trials=trials)
    done.put(time.perf_counter())


def _hpsearch_worker(url, path, total, index, start, done):
    import warnings

    from hpsearch.runner import run_study

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")
    sys.path.insert(0, str(path.parent))  # the fit hook's module
    run_study(path, trials=0, storage=url)  # imports and the study's setup, before the clock
    # What a run's end imports to write the dashboard's note and curves (hpsearch/notes.py:
    # nothing to note after 0 trials), about 0.2 s once per process: before the clock too.
    import optuna_dashboard._custom_plot_data  # noqa: F401
    import plotly.colors  # noqa: F401
    start.wait()
    run_study(path, trials=total, storage=url, worker=index + 1)
    done.put(time.perf_counter())


def _row(arm: str, url: str, workers: int, trials: int, epochs: int, folder: Path) -> float:
    """Seconds of wall time for `workers` processes to run workers x trials trials."""
    context = multiprocessing.get_context("spawn")
    start, done = context.Barrier(workers + 1), context.Queue()
    name = f"bench-{uuid.uuid4().hex[:8]}"
    if arm == "plain":
        optuna.create_study(study_name=name, storage=url)
        targets = [(_plain_worker, (url, name, trials, epochs, start, done))] * workers
    else:
        path = folder / f"{name}.yaml"
        path.write_text(STUDY.format(epochs=epochs))
        targets = [(_hpsearch_worker, (url, path, workers * trials, i, start, done))
                   for i in range(workers)]
    processes = [context.Process(target=t, args=a) for t, a in targets]
    for process in processes:
        process.start()
    start.wait()
    began = time.perf_counter()
    ended = max(done.get(timeout=1800) for _ in processes)
    for process in processes:
        process.join()
    return ended - began


def _postgres_database(admin_url: str):
    """(url, drop) of a fresh database on the server of `admin_url`."""
    name = f"hpsearch_bench_{uuid.uuid4().hex[:8]}"
    engine = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")

    def drop():
        with engine.connect() as connection:
            connection.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        engine.dispose()

    return sqlalchemy.engine.make_url(admin_url).set(database=name).render_as_string(
        hide_password=False), drop


def _with_durable_commits(url: str) -> str:
    return sqlalchemy.engine.make_url(url).update_query_dict(
        {"options": "-c synchronous_commit=on"}).render_as_string(hide_password=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials-per-worker", type=int, default=30)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--postgres-workers", type=int, nargs="+", default=[1, 2, 4, 16])
    parser.add_argument("--postgres", default=os.environ.get("HPSEARCH_TEST_POSTGRES_URL"))
    parser.add_argument("--durable", action="store_true",
                        help="PostgreSQL: also hpsearch with commits that wait for the disk")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs of each row, its arms alternating; the median is printed")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    os.environ.setdefault("HPSEARCH_TORCH_THREADS", "1")
    backends = [("SQLite", args.workers)]
    if args.postgres:
        backends.append(("PostgreSQL", args.postgres_workers))
    print(f"{args.trials_per_worker} trials per worker, {args.epochs} epochs a trial, "
          f"{os.cpu_count()} CPU cores; ms/trial = wall x workers / trials"
          + (f"; the median of {args.repeats} runs, ms/epoch's range after it"
             if args.repeats > 1 else ""))
    print(f"{'storage':<12}{'workers':>8}{'arm':>10}{'ms/trial':>10}{'ms/epoch':>10}"
          f"{'trials/s':>10}{'hpsearch/plain':>16}" + (f"{'ms/epoch range':>18}"
                                                        if args.repeats > 1 else ""))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "bench_fit.py").write_text(FIT_HOOK)
        for backend, worker_counts in backends:
            for workers in worker_counts:
                durable = backend == "PostgreSQL" and args.durable
                arms = ("plain", "hpsearch") + (("durable",) if durable else ())
                runs = {arm: [] for arm in arms}
                for _ in range(args.repeats):  # the arms alternate: a slow spell hits both
                    for arm in arms:
                        runs[arm].append(_seconds(backend, arm, workers, args, folder))
                for arm in arms:
                    _print_row(backend, workers, arm, runs[arm], runs["plain"], args)


def _seconds(backend: str, arm: str, workers: int, args, folder: Path) -> float:
    """One run of one row's arm, in a storage of its own."""
    if backend == "SQLite":
        url, drop = f"sqlite:///{folder / uuid.uuid4().hex}.db", (lambda: None)
    else:
        url, drop = _postgres_database(args.postgres)
    if arm == "durable":
        url = _with_durable_commits(url)
    try:
        return _row("plain" if arm == "plain" else "hpsearch", url, workers,
                    args.trials_per_worker, args.epochs, folder)
    finally:
        drop()


def _print_row(backend: str, workers: int, arm: str, seconds: list[float],
               plain: list[float], args) -> None:
    trials = workers * args.trials_per_worker
    wall = statistics.median(seconds)
    per_trial = wall * workers / trials * 1000
    ratio = f"{wall / statistics.median(plain):.2f}" if arm != "plain" else ""
    spread = ""
    if len(seconds) > 1:
        per_epoch = sorted(s * workers / trials * 1000 / args.epochs for s in seconds)
        spread = f"{per_epoch[0]:.2f}-{per_epoch[-1]:.2f}".rjust(18)
    print(f"{backend:<12}{workers:>8}{arm:>10}{per_trial:>10.1f}"
          f"{per_trial / args.epochs:>10.2f}{trials / wall:>10.1f}{ratio:>16}{spread}",
          flush=True)


if __name__ == "__main__":
    main()
