"""Terminal rendering for the CLI: the run progress bar and the summary tables (rich)."""

from __future__ import annotations

import json
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hpsearch.runner import FINISHED, RunSummary

console = Console()


class ProgressObserver:
    """A progress bar over the study's budget: trials done, pruned, failed, best so far."""

    def __init__(self, transient: bool = False) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.fields[study]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(),
            console=console,
            transient=transient,  # the protocol replaces each bar by its phase's summary line
            disable=not console.is_terminal,  # piped or logged: the summary lines only
        )
        self._task = None

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
        self._task = self._progress.add_task(
            "run", total=budget, completed=finished, study=study.study_name, status=""
        )

    def on_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        trials = study.get_trials(deepcopy=False)
        count = lambda state: sum(t.state == state for t in trials)  # noqa: E731
        done = sum(t.state in FINISHED for t in trials)
        status = (
            f"pruned {count(TrialState.PRUNED)} · failed {count(TrialState.FAIL)} · "
            f"best {_best_text(study)}"
        )
        self._progress.update(self._task, completed=done, status=status)


def _best_text(study: optuna.Study) -> str:
    if len(study.directions) > 1:
        return f"{len(study.best_trials)} on the Pareto front"
    try:
        return f"{study.best_value:.4g}"
    except ValueError:
        return "-"


def print_run_summary(summary: RunSummary, study: optuna.Study, top: int = 10) -> None:
    """Counts, then the best `top` trials of the study."""
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
        console.print(f"choice: {summary.choice['reason']}", soft_wrap=True, highlight=False)
        if summary.choice.get("extended"):
            console.print(f"grid extended: {summary.choice['extended']['reason']}",
                          soft_wrap=True, highlight=False)


def trials_table(study: optuna.Study, top: int) -> Table:
    metrics = study.metric_names or ["value"]
    table = Table(title=f"best trials of {study.study_name}")
    for column in ["trial", "state", *metrics, "params", "epochs", "reason"]:
        table.add_column(column)
    for trial in _ranked(study)[:top]:
        values = trial.values or [None] * len(metrics)
        table.add_row(
            str(trial.number),
            trial.state.name,
            *(_fmt(v) for v in values),
            ", ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items()),
            str(len(trial.user_attrs.get("history", []))),
            str(trial.user_attrs.get("reason") or trial.user_attrs.get("error") or ""),
        )
    return table


def _ranked(study: optuna.Study) -> list[FrozenTrial]:
    sign = -1 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1
    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    rest = [t for t in study.get_trials(deepcopy=False) if t.state != TrialState.COMPLETE]
    return sorted(done, key=lambda t: sign * t.values[0]) + rest


def _fmt(value: Any) -> str:
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


def print_best(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, indent=2, default=str))
        return
    for entry in result["best"]:
        values = ", ".join(f"{k} = {_fmt(v)}" for k, v in entry["values"].items())
        console.print(f"[bold]{result['study']}[/]: best on the objective: trial {entry['trial']}: {values}")
    choice = result.get("choice")
    if not choice:
        for entry in result["best"]:
            console.print("parameters: " + json.dumps(entry["params"], default=str))
            console.print("configuration: " + json.dumps(entry["config"], default=str))
        return
    console.print(f"[bold]protocol choice[/]: {choice['reason']}", highlight=False)
    if choice.get("extended"):
        console.print(f"grid extended: {choice['extended']['reason']}", highlight=False,
                      soft_wrap=True)
    console.print("parameters: " + json.dumps(choice.get("params", {}), default=str), highlight=False)
    console.print("configuration: " + json.dumps(choice.get("config", {}), default=str), highlight=False)
    if choice.get("runners_up"):
        console.print(_runners_up_table(choice["runners_up"]))
    for gone in choice.get("eliminated", []):
        console.print(f"eliminated: trial {gone['trial']} ({gone['reason']}) {gone['params']}",
                      highlight=False, soft_wrap=True)


def _runners_up_table(rows: list[dict]) -> Table:
    table = Table(title="runners-up")
    columns = list(rows[0])
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(_fmt(row.get(c)) for c in columns))
    return table


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
