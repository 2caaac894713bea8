"""What optuna-dashboard shows of the protocol: each phase study's note, its chosen and
baseline trials marked, and its learning curves.

optuna-dashboard shows a study's note (Markdown) at the top of its page, each trial's note on
the trial, and plotly figures saved on the study. Its "Best Trial" badge is Optuna's best
objective value, which may not be the protocol's choice (criteria with tolerances, the
baseline rule): the note says which trial the protocol chose and why, and that trial's own
note says it was chosen. Written when a phase chooses or is tested, from the stored records
(records.py) only, and again by `hpsearch dashboard` for studies stored before.

Every run's end annotates its study again (each worker's run, each `hpsearch dashboard`
pass), and most find nothing new: what is written is compared with what is stored first.
A note is rewritten only when its text changed. The curves are redrawn only when the trials
they show changed: they show finished trials, which never change, so the figure is named by
the study, its trials and their order (the figure's `layout.meta`, stored with it), and a
stored figure with the same name is the same figure. On PostgreSQL, annotating an unchanged
study took 35 ms and 30 statements (the figure is stored in 2 KB pieces, a write each), then
10 ms and 13, and 7-8 ms and 8 since a study's attributes are one statement a read
(lean_study_attrs.py; an 8-trial study annotated 5 times, statements counted by SQLAlchemy's
events).
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch import records
from hpsearch.records import PhaseChoice, StudyFacts, TestResult

CURVES_ID = "learning-curves"  # one figure per study, overwritten when its trials change
CURVES_FORMAT = 1  # part of the figure's name: a change to the drawing below raises it
CURVE_METRICS = (("train_loss", "train loss"), ("val_acc", "validation accuracy"))
TOP = 8  # curves drawn: the choice and its runners-up (the dashboard's own chart has all)


def annotate(study: optuna.Study) -> None:
    """Write the study's note, mark its chosen and baseline trials, save its curves."""
    choice = records.read_choice(study)
    if choice is None:
        return
    stored = study._storage.get_study_system_attrs(study._study_id)  # the notes, the figure
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning on system attributes
        _save_note(study, stored, None, study_note(study, choice, records.read_test(study)))
        _mark_trials(study, choice, stored)
        _save_curves(study, choice, stored)


def study_note(study: optuna.Study, choice: PhaseChoice, test: TestResult | None) -> str:
    """The study's note in Markdown: the choice and why, what it started from, runners-up
    with their parameters, eliminated trials, the checkpoint and the test result."""
    facts = StudyFacts.of(study)
    lines = [f"## {study.study_name}: {facts.description or facts.phase or 'study'}", ""]
    if choice.skipped:
        return "\n".join([*lines, f"**Skipped** — {choice.reason.removeprefix('skipped: ')}",
                          "", *_started_from(facts)])
    lines += [_choice_line(choice), "", f"> {choice.why or choice.reason}", "",
              "The dashboard's *Best Trial* is the best objective value alone; the protocol's "
              "choice above is what the next phases inherit.", ""]
    lines += _started_from(facts)
    lines += _runners_up(choice) + _eliminated(choice) + _checkpoint(study, choice)
    if test is not None:
        lines += ["", "### Test set (used once)", "", f"{test.text()} — trial {test.trial}'s "
                  f"configuration, {test.epochs} epochs, on {test.when}."]
    return "\n".join(lines)


def _choice_line(choice: PhaseChoice) -> str:
    params = ", ".join(f"{k}={_short(v)}" for k, v in choice.params.items()) or "no parameter"
    kept = " (the inherited baseline, kept)" if choice.kept_baseline else ""
    value = choice.main_value()
    main = f" — {choice.main_criterion} {_short(value)}" if value is not None else ""
    return f"**Chosen: trial {choice.trial}**{kept} ({params}){main}"


def _started_from(facts: StudyFacts) -> list[str]:
    lines = []
    sources = facts.inherited.get("from") or []
    if sources:
        parents = ", ".join(f"{s['study']} (trial {s.get('trial')})" for s in sources)
        lines.append(f"- Started from the choice of {parents}.")
    if facts.train_longer:
        lines.append(f"- Trained longer: epochs {facts.train_longer.get('from')} -> "
                     f"{facts.train_longer.get('to')} ({facts.train_longer.get('reason')}).")
    if facts.augmentation:
        lines.append(f"- {facts.augmentation[0].upper()}{facts.augmentation[1:]}.")
    if facts.not_searched:
        lines.append(f"- Not searched (the model does not read them): "
                     f"{', '.join(facts.not_searched)}.")
    return lines + ([""] if lines else [])


def _runners_up(choice: PhaseChoice) -> list[str]:
    if not choice.runners_up:
        return []
    criteria = [k for k in choice.runners_up[0] if k not in ("trial", "params")]
    head = ["trial", *criteria, "parameters"]
    lines = ["### Runners-up", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]
    for row in choice.runners_up:
        params = ", ".join(f"{k}={_short(v)}" for k, v in (row.get("params") or {}).items())
        cells = [str(row["trial"]), *(_short(row.get(c)) for c in criteria), params or "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def _eliminated(choice: PhaseChoice) -> list[str]:
    if not choice.eliminated:
        return []
    lines = ["### Eliminated", ""]
    for gone in choice.eliminated:
        params = ", ".join(f"{k}={_short(v)}" for k, v in (gone.get("params") or {}).items())
        lines.append(f"- trial {gone['trial']}: {gone['reason']}" + (f" ({params})" if params
                                                                     else ""))
    return lines + [""]


def _checkpoint(study: optuna.Study, choice: PhaseChoice) -> list[str]:
    if not choice.checkpoint:
        return []
    name = study.study_name
    base, _, tag = name.partition("@")
    tagged = f" --tag {tag}" if tag else ""
    return ["### Model", "", f"`{choice.checkpoint['file']}` in this study's artifacts "
            f"({choice.checkpoint['bytes']:,} bytes); `hpsearch export --study {base}{tagged} "
            "--out model.pt`, or `hpsearch.load_model(...)` in a notebook.", ""]


def _mark_trials(study: optuna.Study, choice: PhaseChoice, stored: dict[str, Any]) -> None:
    """Notes on the chosen trial and the baseline, where a person opening a trial looks."""
    for trial in study.get_trials(deepcopy=False):
        note = _trial_note(trial, choice)
        if note is not None:
            _save_note(study, stored, trial._trial_id, note)


def _trial_note(trial: FrozenTrial, choice: PhaseChoice) -> str | None:
    baseline = records.TrialFacts.of(trial).baseline
    lines = []
    if trial.number == choice.trial:
        lines.append(f"**Chosen by the protocol** for this phase: {choice.why or choice.reason}")
    if baseline:
        lines.append("**Baseline**: the configuration this phase inherited, unchanged; a "
                     "technique is kept only if it beats it.")
    return "\n\n".join(lines) or None


def _save_note(study: optuna.Study, stored: dict[str, Any], trial_id: int | None,
               body: str) -> None:
    """optuna-dashboard's note of the study (`trial_id` None) or of a finished trial (its
    notes live on the study, keyed by the trial's id), written when its text changed.
    `stored`: the study's system attributes, where the notes are."""
    from optuna_dashboard._note import (
        get_note_from_system_attrs,
        save_note_with_version,
    )

    current = get_note_from_system_attrs(stored, trial_id)
    if current["body"] != body:
        save_note_with_version(study._storage, study._study_id, trial_id,
                               current["version"] + 1, body)


def _save_curves(study: optuna.Study, choice: PhaseChoice, stored: dict[str, Any]) -> None:
    """Train loss and validation accuracy per epoch of the choice and its runners-up, drawn
    and stored when the trials shown changed (the module's docstring)."""
    shown = _shown_trials(study, choice)
    if not shown or _stored_curves_name(stored) == _curves_name(study, choice, shown):
        return
    from optuna_dashboard._custom_plot_data import SYSTEM_ATTR_PLOT_DATA, save_graph_object_json

    # What optuna_dashboard.save_plotly_graph_object stores (the figure's JSON, in pieces),
    # from the JSON itself: no plotly Figure to build and validate (below).
    save_graph_object_json(study._storage, study._study_id,
                           f"{SYSTEM_ATTR_PLOT_DATA}{CURVES_ID}:",
                           json.dumps(curves_figure(study, choice, shown)))


def _curves_name(study: optuna.Study, choice: PhaseChoice, shown: list[FrozenTrial]
                 ) -> list[Any]:
    """What the curves figure is a drawing of: the study, its trials in order, the chosen one
    (as JSON reads it back: a list)."""
    return [CURVES_FORMAT, study.study_name, [t._trial_id for t in shown], choice.trial]


def _stored_curves_name(stored: dict[str, Any]) -> list[Any] | None:
    from optuna_dashboard._custom_plot_data import get_plotly_graph_objects

    figure = get_plotly_graph_objects(stored).get(CURVES_ID)
    if not figure:
        return None
    try:
        return (json.loads(figure).get("layout") or {}).get("meta", {}).get("hpsearch_curves")
    except (ValueError, AttributeError):  # not ours, or cut short: drawn again
        return None


def curves_figure(study: optuna.Study, choice: PhaseChoice, shown: list[FrozenTrial]
                  ) -> dict[str, Any]:
    """The `shown` trials' curves (_shown_trials) as plotly's figure JSON: one panel per
    metric side by side, the chosen trial thick and named.

    Written as JSON, not built with plotly's Figure and make_subplots: plotly validates every
    property as it is set and loads its validators at its first figure in a process. The
    figure and its JSON took 13 ms through plotly, 70 ms the first time in a process, and take
    0.3 ms here (an 8-trial study's curves, timed in one process each way); every worker's
    run ends with this drawing. The JSON is the one plotly wrote for this figure (template
    "none", its two-column subplot layout), compared key by key."""
    from plotly.colors import qualitative

    palette = qualitative.D3  # one colour per trial, the same in both panels
    traces = []
    for index, trial in enumerate(shown):
        history = records.read_history(trial)
        chosen = trial.number == choice.trial
        name = f"trial {trial.number}" + (" (chosen)" if chosen else "")
        line = {"width": 4 if chosen else 1.5, "color": palette[index % len(palette)]}
        for panel, (metric, _) in enumerate(CURVE_METRICS, start=1):
            points = [(r.epoch, getattr(r, metric)) for r in history  # None: not finite
                      if getattr(r, metric) is not None]
            if points:
                axes = _axes(panel)
                traces.append({"type": "scatter", "mode": "lines", "name": name,
                               "legendgroup": name, "showlegend": panel == 1, "line": line,
                               "x": [p[0] for p in points], "y": [p[1] for p in points],
                               "xaxis": f"x{axes}", "yaxis": f"y{axes}"})
    return {"data": traces, "layout": _curves_layout(study, choice, shown)}


def _axes(panel: int) -> str:
    """The suffix of a panel's axes in plotly's JSON: x and y, then x2 and y2, ..."""
    return "" if panel == 1 else str(panel)


def _curves_layout(study: optuna.Study, choice: PhaseChoice, shown: list[FrozenTrial]
                   ) -> dict[str, Any]:
    """Two panels side by side with their titles above, as plotly's make_subplots(1, 2)
    places them (0.1 of the width between them)."""
    layout: dict[str, Any] = {
        "template": {"data": {"scatter": [{"type": "scatter"}]}},  # plotly's "none"
        "title": {"text": f"Learning curves of {study.study_name}: the choice and its "
                          "runners-up"},
        "height": 420, "annotations": [],
        "meta": {"hpsearch_curves": _curves_name(study, choice, shown)}}
    width = (1 - 0.1 * (len(CURVE_METRICS) - 1)) / len(CURVE_METRICS)
    for panel, (_, title) in enumerate(CURVE_METRICS, start=1):
        left = (panel - 1) * (width + 0.1)
        axes = _axes(panel)
        layout[f"xaxis{axes}"] = {"anchor": f"y{axes}", "domain": [left, left + width],
                                  "title": {"text": "epoch"}}
        layout[f"yaxis{axes}"] = {"anchor": f"x{axes}", "domain": [0.0, 1.0]}
        layout["annotations"].append({
            "text": title, "font": {"size": 16}, "showarrow": False, "x": left + width / 2,
            "xanchor": "center", "xref": "paper", "y": 1.0, "yanchor": "bottom",
            "yref": "paper"})
    return layout


def _shown_trials(study: optuna.Study, choice: PhaseChoice) -> list[FrozenTrial]:
    order = [choice.trial, *(r["trial"] for r in choice.runners_up)]
    by_number = {t.number: t for t in study.get_trials(deepcopy=False)
                 if t.state == TrialState.COMPLETE and records.epochs_run(t)}
    return [by_number[n] for n in order if n in by_number][:TOP]


def _short(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
