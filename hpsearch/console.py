"""Terminal rendering for the CLI: the run progress bar and the tables (rich).

It renders what results/frames.py reads and the typed records (records.py); it computes
nothing of its own from raw attributes. No torch: the reading commands answer at once.
"""

from __future__ import annotations

import json
from typing import Any, Iterable

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from hpsearch.records import PhaseChoice
from hpsearch.results.frames import FINISHED, Best, runners_up, trials_frame

console = Console()


class ProgressObserver:
    """A progress bar over the study's budget: trials done, pruned, failed, best so far, and
    the running trial's epoch and latest metric."""

    def __init__(self, transient: bool = False) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.fields[study]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TextColumn("{task.fields[running]}"),
            TimeElapsedColumn(),
            console=console,
            transient=transient,  # the protocol replaces each bar by its phase's summary line
            disable=not console.is_terminal,  # piped or logged: the summary lines only
        )
        self._task = None
        self.metric = "value"

    def __enter__(self) -> "ProgressObserver":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._task is not None:
            self._progress.stop()
            self._task = None

    def on_start(self, study: optuna.Study, budget: int, finished: int) -> None:
        self._progress.start()  # only once there is work: errors before it stay one line
        self.metric = (study.metric_names or ["value"])[0]
        self._task = self._progress.add_task(
            "run", total=budget, completed=finished, study=study.study_name, status="",
            running="")

    def on_trial(self, study: optuna.Study, trial: FrozenTrial | None) -> None:
        trials = study.get_trials(deepcopy=False)
        count = lambda state: sum(t.state == state for t in trials)  # noqa: E731
        done = sum(t.state in FINISHED for t in trials)
        status = (
            f"pruned {count(TrialState.PRUNED)} · failed {count(TrialState.FAIL)} · "
            f"best {_best_text(study)}"
        )
        running = [t for t in trials if t.state == TrialState.RUNNING]
        self._update(completed=done, status=status, running=_running_text(running, self.metric))

    def on_epoch(self, trial: int, record: dict, planned: int) -> None:
        """The trial running in this process finished an epoch: its number and latest
        validation accuracy (or loss, without accuracy)."""
        key = "val_acc" if record.get("val_acc") is not None else "val_loss"
        value = record.get(key)
        shown = "-" if value is None else f"{value:.4g}"
        self._update(running=f"· trial {trial}: epoch {record.get('epoch')}/{planned} "
                             f"{key} {shown}")

    def _update(self, **fields: Any) -> None:
        if self._task is not None:
            self._progress.update(self._task, **fields)


def _running_text(running: list[FrozenTrial], metric: str) -> str:
    """Other processes' running trials as last flushed: `· trial 7: epoch 12 0.9512`."""
    parts = []
    for trial in running[:3]:
        if trial.intermediate_values:
            step = max(trial.intermediate_values)
            parts.append(f"trial {trial.number}: epoch {step} {metric} "
                         f"{trial.intermediate_values[step]:.4g}")
    return ("· " + "; ".join(parts)) if parts else ""


def _best_text(study: optuna.Study) -> str:
    if len(study.directions) > 1:
        return f"{len(study.best_trials)} on the Pareto front"
    try:
        return f"{study.best_value:.4g}"
    except ValueError:
        return "-"


def print_run_summary(summary, study: optuna.Study, top: int = 10) -> None:
    """Counts, then the best `top` trials of the study, then the choice."""
    if summary.skipped is not None:
        console.print(f"study [bold]{summary.study_name}[/] skipped: {summary.skipped}",
                      soft_wrap=True)
    elif summary.nothing_to_do:
        console.print(
            f"study [bold]{summary.study_name}[/] already has {summary.finished_before} of "
            f"{summary.budget} trials done; nothing to run (pass a larger --trials to run more)",
            soft_wrap=True,
        )
    for warning in summary.warnings:
        console.print(f"warning: {warning}", soft_wrap=True, highlight=False)
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(summary.counts.items()))
    console.print(f"{summary.study_name} in {summary.storage}: {counts or 'no trials'}",
                  soft_wrap=True, highlight=False)
    console.print(trials_table(study, top))
    if summary.choice:
        print_choice(summary.choice, heading="choice")


def trials_table(study: optuna.Study, top: int) -> Table:
    """The best `top` trials (completed first, best first), then the others."""
    frame = trials_frame(study)
    metrics = study.metric_names or ["value"]
    table = Table(title=f"best trials of {study.study_name}")
    for column in ["trial", "state", *metrics, "params", "epochs", "reason"]:
        table.add_column(column)
    for row in _ranked(frame, metrics[0], study.directions[0])[:top]:
        table.add_row(str(row["trial"]), row["state"], *(_fmt(row.get(m)) for m in metrics),
                      _params(row), str(row["epochs"]), str(row["reason"] or ""))
    return table


def _ranked(frame: pd.DataFrame, metric: str, direction) -> list[dict]:
    if frame.empty:
        return []
    rows = frame.to_dict("records")
    done = [r for r in rows if r["state"] == "COMPLETE"]
    sign = -1 if direction == optuna.study.StudyDirection.MAXIMIZE else 1
    done.sort(key=lambda r: sign * r[metric])
    return done + [r for r in rows if r["state"] != "COMPLETE"]


def _params(row: dict) -> str:
    return ", ".join(f"{k[6:]}={_fmt(v)}" for k, v in row.items()
                     if k.startswith("param:") and not _missing(v))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _fmt(value: Any) -> str:
    if _missing(value):
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def print_studies(rows: list[dict]) -> None:
    # The description only where it fits: on 80 columns the other six need the room.
    columns = ["study", "from", "phase", "done", "best", "choice"]
    if console.width >= 120:
        columns.insert(3, "description")
    table = Table(title="studies (from: your studies folder, or installed with hpsearch)")
    for column in columns:
        fixed = column in ("study", "done", "best")  # short: kept whole, the others fold
        table.add_column(column, no_wrap=fixed, overflow="ellipsis" if fixed else "fold")
    for row in rows:
        budget = "grid" if row["budget"] is None else row["budget"]  # a grid's size: per model
        cells = {**row, "done": f"{row['done']}/{budget}",
                 "best": "-" if row["best"] is None else _fmt(row["best"])}
        table.add_row(*(str(cells[column]) for column in columns))
    console.print(table)


def print_best(result: Best, as_json: bool) -> None:
    """The best trial on the objective, then the protocol's choice with its reason in words,
    its runners-up with their parameters, and the trials it eliminated."""
    if as_json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
        return
    for entry in result.best:
        values = ", ".join(f"{k} = {_fmt(v)}" for k, v in entry.values.items())
        console.print(f"[bold]{result.study}[/]: best on the objective: trial {entry.trial}: "
                      f"{values}", soft_wrap=True)
    if result.choice is None:
        for entry in result.best:
            console.print("parameters: " + json.dumps(entry.params, default=str))
            console.print("configuration: " + json.dumps(entry.config, default=str))
        return
    print_choice(result.choice)
    if result.test is not None:
        console.print(f"test: {result.test.text()} (evaluated {result.test.when})",
                      highlight=False)


def print_choice(choice: PhaseChoice, heading: str = "protocol choice") -> None:
    console.print(f"[bold]{heading}[/]: {choice_sentence(choice)}", highlight=False,
                  soft_wrap=True)
    if choice.extended:
        console.print(f"grid extended: {choice.extended['reason']}", highlight=False,
                      soft_wrap=True)
    console.print("parameters: " + json.dumps(choice.params, default=str), highlight=False)
    console.print("configuration: " + json.dumps(choice.config, default=str), highlight=False,
                  soft_wrap=True)
    if choice.runners_up:
        console.print(frame_table(runners_up(choice), "runners-up"))
    for gone in choice.eliminated:
        console.print(f"eliminated: trial {gone['trial']} ({gone['reason']}) {gone['params']}",
                      highlight=False, soft_wrap=True)


def choice_sentence(choice: PhaseChoice) -> str:
    """`trial 4: 3 of 7 trials within 0.5 points of the highest ...` (the stored steps for a
    choice stored before the words were)."""
    if choice.skipped:
        return choice.reason
    who = f"trial {choice.trial}" + (" (the baseline)" if choice.kept_baseline else "")
    return f"{who}: {choice.why}" if choice.why else choice.reason


def frame_table(frame: pd.DataFrame, title: str, columns: Iterable[str] | None = None) -> Table:
    """A DataFrame as a rich table, `param:` prefixes dropped from the headers."""
    table = Table(title=title)
    shown = list(columns) if columns is not None else list(frame.columns)
    for column in shown:
        table.add_column(column.removeprefix("param:"))
    for row in frame.to_dict("records"):
        table.add_row(*(_fmt(row.get(c)) for c in shown))
    return table


def print_trials(frame: pd.DataFrame, study: str) -> None:
    """The trials table of `hpsearch trials`: the main columns; --csv/--json give them all."""
    main = [c for c in ("trial", "state") if c in frame]
    values = [c for c in frame.columns if c not in main and not c.startswith("param:")
              and c in ("value", *_objective_columns(frame))]
    params = [c for c in frame.columns if c.startswith("param:")]
    tail = [c for c in ("epochs", "chosen", "baseline", "reason") if c in frame]
    console.print(frame_table(frame, f"trials of {study}", [*main, *values, *params, *tail]))


def _objective_columns(frame: pd.DataFrame) -> list[str]:
    """The objective's columns: those between `state` and the first parameter."""
    columns = list(frame.columns)
    start = columns.index("state") + 1 if "state" in columns else 0
    end = next((i for i, c in enumerate(columns) if c.startswith("param:") or c == "epochs"),
               len(columns))
    return columns[start:end]


class PhaseProgress:
    """Protocol display: a transient progress bar while a phase runs, then its line."""

    def __init__(self) -> None:
        self._current: ProgressObserver | None = None

    def observer(self, phase: str) -> ProgressObserver:
        self._current = ProgressObserver(transient=True)
        return self._current

    def on_phase(self, outcome) -> None:
        if self._current is not None:
            self._current.close()
        print_phase(outcome)

    def close(self) -> None:
        if self._current is not None:
            self._current.close()


def print_phase(outcome) -> None:
    """One line per protocol phase: status, study and its choice."""
    console.print(
        f"{outcome.phase:<18} {outcome.status:<8} {outcome.line}", highlight=False, soft_wrap=True
    )


def print_summary(frame: pd.DataFrame, tag: str | None = None) -> None:
    """`hpsearch summary`: one row per phase in protocol order, fitting 80 columns; the
    skipped phases' reasons under the table (sentences: a column would fold them)."""
    title = "protocol summary" + (f" (tag {tag})" if tag else "")
    table = Table(title=title)
    table.add_column("phase", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("trial", justify="right", no_wrap=True)
    table.add_column("decided on", no_wrap=True)
    table.add_column("trials", justify="right", no_wrap=True)
    for row in frame.to_dict("records"):
        table.add_row(row["phase"], row["status"], _choice_cell(row), _criterion_cell(row),
                      str(row["trials"]))
    console.print(table)
    for row in frame.to_dict("records"):
        if not _missing(row["skipped"]):
            console.print(f"{row['phase']}: {row['skipped']}", highlight=False, soft_wrap=True)


def _choice_cell(row: dict) -> str:
    """The chosen trial's number (its parameters: `hpsearch best`, or --json here)."""
    if _missing(row["trial"]) or row["status"] == "skipped":
        return "-"
    return str(int(row["trial"]))


def _criterion_cell(row: dict) -> str:
    if _missing(row["criterion"]) or row["status"] == "skipped":
        return "-"
    return f"{row['criterion']} {_fmt(row['value'])}"
