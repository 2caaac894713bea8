"""Per-trial overhead of running through Optuna storage vs calling the training loop alone.

Same configuration, same process, side by side: N bare `train()` calls, then N trials of a
study run by `run_study` into a fresh SQLite file (median pruner: a report and a pruning
check every epoch, the history and criteria stored with each trial), the two arms
alternating over a few rounds. Prints seconds per trial for both and the overhead: the
median of the rounds' ratios (each round's two arms ran back to back, so a machine that
slows down for a while moves both; the mean of all rounds moved by 5 points from run to run
on this shared 2-core machine), and their mean with its standard error, which says whether
a difference of a few points is inside the rounds' noise.

    python benchmarks/trial_overhead.py [--epochs 20] [--trials 10] [--rounds 10]
    python benchmarks/trial_overhead.py --device cuda      # where a GPU epoch is milliseconds
    python benchmarks/trial_overhead.py --postgres postgresql+psycopg://USER:PASSWORD@HOST/postgres
    python benchmarks/trial_overhead.py --stored 1000      # a long study's cost a trial

With --postgres the study lives in a fresh database on that server (dropped afterwards)
instead of a SQLite file. With --stored N the study holds N finished trials before the
rounds (copies of the warm-up trial under other seeds, written directly, not trained): what
a trial costs once a study is long, where work done for every stored trial at each new
trial shows.

The side-by-side ratio carries the machine's drift between the two arms: on a shared 2-core
VM one round's ratio ranged from -16% to +36% within a run (2026-12-08). So the same trials
are also split by part: the time inside `train()` minus the epoch hook hpsearch gives it
(the training's own work, what the bare arm times), and the rest of each trial's stored
window (Optuna's ask and tell, the storage, the epoch reports and pruning checks, the
configuration checks): both parts of one trial run seconds apart, so drift moves them
together. It leaves out what would slow the training itself (a thread competing for the
core) and counts as training the peak epoch's weights kept for the checkpoint, which the
bare arm does not keep: only the side-by-side ratio shows those.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import optuna
import sqlalchemy
import torch
from sqlalchemy.engine import Engine

import hpsearch.objective
from hpsearch import records
from hpsearch.config import resolve_config
from hpsearch.runner import run_study
from hpsearch.train import load_data, resolve_device, train

sys.path.insert(0, str(Path(__file__).parent))
from storage_overhead import _postgres_database  # noqa: E402 - the benchmarks' own helper

STUDY = """\
base: {{dataset: {dataset}, epochs: {epochs}, data_dir: {data_dir}, device: {device}}}
objective: {{metric: val_acc}}
sampler: {{name: random, seed: 0}}
pruner: {{name: median, n_startup_trials: 1000000000}}   # checks every epoch, never prunes
space:   # a new seed each trial: every trial trains (the same configuration twice is a repeat)
  seed: {{type: int, low: 0, high: 1000000000}}
"""


def bare_seconds(settings: dict, trials: int) -> float:
    config = resolve_config(("benchmark", settings))
    device = resolve_device(config.device)
    data = load_data(config, device)
    train(config, data, device)  # warm-up: torch's first optimizer step
    start = time.perf_counter()
    for _ in range(trials):
        train(config, data, device)
    return (time.perf_counter() - start) / trials


class StatementCount:
    """SQL statements sent to the database while it is entered: a count that does not move
    with the machine's load, unlike the milliseconds."""

    def __init__(self) -> None:
        self.statements = 0

    def _count(self, *args) -> None:
        self.statements += 1

    def __enter__(self) -> "StatementCount":
        sqlalchemy.event.listen(Engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc) -> None:
        sqlalchemy.event.remove(Engine, "before_cursor_execute", self._count)


class TrainingClock:
    """Seconds spent in the objective's `train()` calls minus the epoch hook the objective
    gives it, while entered: the training's own work inside the study's trials. The
    objective imports `train` by name, so that name is wrapped for the while."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def __enter__(self) -> "TrainingClock":
        self._train = train_in_objective = hpsearch.objective.train

        def timed_train(*args, on_epoch=None, **kwargs):
            in_hook = 0.0

            def timed_hook(record: dict) -> None:
                nonlocal in_hook
                start = time.perf_counter()
                try:
                    on_epoch(record)
                finally:
                    in_hook += time.perf_counter() - start

            start = time.perf_counter()
            try:
                return train_in_objective(*args, on_epoch=timed_hook if on_epoch else None,
                                          **kwargs)
            finally:
                self.seconds += time.perf_counter() - start - in_hook

        hpsearch.objective.train = timed_train
        return self

    def __exit__(self, *exc) -> None:
        hpsearch.objective.train = self._train


def study_seconds(settings: dict, trials: int, folder: Path,
                  counter: StatementCount | None = None, url: str | None = None,
                  clock: TrainingClock | None = None) -> float:
    """Seconds per trial of `trials` more trials of the study, from the first one's start to
    the last one's end as stored: the command's own start (reading the study file, loading
    the data, the check before storage) is not a trial's cost. With `counter`, the SQL
    statements of those trials' run are counted, with `clock` their training's own work
    timed. `url`: the storage (default: a SQLite file in `folder`)."""
    path = folder / "overhead.yaml"
    path.write_text(STUDY.format(**settings))
    url = url or f"sqlite:///{folder / 'overhead.db'}"
    run_study(path, trials=0, storage=url)  # creates the study the first time
    before = len(optuna.load_study(study_name="overhead", storage=url).trials)
    with counter or contextlib.nullcontext(), clock or contextlib.nullcontext():
        run_study(path, trials=before + trials, storage=url)
    timed = optuna.load_study(study_name="overhead", storage=url).trials[before:]
    return (timed[-1].datetime_complete - timed[0].datetime_start).total_seconds() / trials


def store_copies(url: str, count: int) -> None:
    """`count` finished trials like the study's last one, each under its own seed (so none
    repeats another), added in one write: a long study without training it."""
    study = optuna.load_study(study_name="overhead", storage=url)
    template = study.trials[-1]
    copies = []
    for offset in range(1, count + 1):
        seed = template.params["seed"] + offset
        copies.append(optuna.trial.create_trial(
            state=template.state, value=template.value, params={"seed": seed},
            distributions=template.distributions,
            intermediate_values=template.intermediate_values,
            user_attrs={**template.user_attrs,
                        records.CONFIG: {**records.read_config(template), "seed": seed}},
            system_attrs=template.system_attrs))
    study.add_trials(copies)


def _mean_and_error(ratios: list[float]) -> str:
    """The rounds' mean overhead with its standard error (points): whether a target such as
    10% is inside the rounds' noise (two standard errors) or clear of it."""
    mean = statistics.fmean(ratios)
    if len(ratios) < 2:
        return f"{mean:+.1%}"
    error = statistics.stdev(ratios) / len(ratios) ** 0.5
    return f"{mean:+.1%} +/- {error * 100:.1f} points"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--trials", type=int, default=10, help="per arm and round")
    parser.add_argument("--rounds", type=int, default=10, help="the arms alternate")
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--postgres", default=None,
                        help="a PostgreSQL URL whose user may create databases")
    parser.add_argument("--stored", type=int, default=0,
                        help="finished trials the study holds before the rounds")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    torch.set_num_threads(1)  # both arms alike, and steadier on a shared machine
    settings = {"dataset": args.dataset, "epochs": args.epochs, "data_dir": args.data_dir,
                "device": args.device}
    rounds: list[tuple[float, float]] = []  # (train() alone, run_study) s/trial
    inside: list[tuple[float, float]] = []  # (training's own work, the rest) s/trial
    counter = StatementCount()
    url, drop = _postgres_database(args.postgres) if args.postgres else (None, None)
    try:
        with tempfile.TemporaryDirectory() as folder:
            study_seconds(settings, 1, Path(folder), url=url)  # warm-up
            if args.stored:
                store_copies(url or f"sqlite:///{Path(folder) / 'overhead.db'}", args.stored)
            for _ in range(args.rounds):  # alternating: a machine that slows down slows both
                alone, clock = bare_seconds(settings, args.trials), TrainingClock()
                study = study_seconds(settings, args.trials, Path(folder), counter, url, clock)
                rounds.append((alone, study))
                work = clock.seconds / args.trials
                inside.append((work, study - work))
    finally:
        if drop is not None:
            drop()
    bare, hpsearch = (statistics.fmean(arm) for arm in zip(*rounds))
    ratios = [study / alone - 1 for alone, study in rounds]
    print(f"{args.dataset}, {args.epochs} epochs a trial, {args.rounds} rounds of "
          f"{args.trials} trials an arm, {resolve_device(args.device)}, "
          f"{'PostgreSQL' if url else 'SQLite'}"
          + (f", {args.stored} trials stored before" if args.stored else ""))
    print(f"{'train() alone':<28}{bare:>8.3f} s/trial")
    print(f"{'run_study (Optuna, storage)':<28}{hpsearch:>8.3f} s/trial")
    print(f"overhead: {statistics.median(ratios):+.0%} (median of the rounds; "
          f"{min(ratios):+.0%} to {max(ratios):+.0%}; mean {_mean_and_error(ratios)}), "
          f"{(hpsearch - bare) / args.epochs * 1000:.2f} ms an epoch")
    print(f"SQL statements: {counter.statements / (args.rounds * args.trials):.1f} a trial "
          "(the run's own start and end included)")
    work, rest = (statistics.fmean(part) for part in zip(*inside))
    parts = [rest_s / work_s for work_s, rest_s in inside]
    print(f"inside the same trials: training's own work {work:.3f} s/trial, the rest "
          f"{rest * 1000:.1f} ms: {statistics.median(parts):+.0%} (median of the rounds; "
          f"{min(parts):+.0%} to {max(parts):+.0%}; mean {_mean_and_error(parts)}), "
          f"{rest / args.epochs * 1000:.2f} ms an epoch")


if __name__ == "__main__":
    main()
