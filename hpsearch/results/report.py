"""The protocol's report: one self-contained HTML file a person can read, keep and send.

One page answers what a protocol run did: what each phase (PROTOCOL.md) chose and why, what it
started from, the runners-up it weighed, the curves it judged, what it eliminated, the one
test result, and how to reproduce it and where the model is. Everything is inside the file
(inline CSS, curves as base64 PNG): it opens from a mail attachment or an offline laptop,
with no JavaScript and no network.

It reads storage only (through records.py and frames.py) and imports no torch.
"""

from __future__ import annotations

import base64
import html
import json
import math
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import optuna

from hpsearch import records
from hpsearch.config import TrainConfig
from hpsearch.errors import UsageError
from hpsearch.records import PhaseChoice, StudyFacts, TestResult
from hpsearch.results.frames import PHASE_ORDER, choice_word, summary
from hpsearch.results.plots import (
    METRIC_NAMES,
    metrics_recorded,
    plot_curves,
    setting_value,
)
from hpsearch.storage import Storage, connect, describe, find_study, study_name

DEFAULT_OUT = Path("storage") / "report.html"
CURVE_METRICS = ("train_loss", "val_acc")  # PROTOCOL.md: the LR phases read the train loss,
# the later phases the peak validation accuracy
TOP = 8  # trials drawn per phase


def write_report(storage: str | Storage | None = None, *, tag: str | None = None,
                 out: str | Path | None = None) -> Path:
    """Write the protocol run `tag`'s report to `out` (default storage/report.html)."""
    backend = connect(storage, create=False)
    studies = _phase_studies(backend, tag)
    if not any(studies.values()):
        raise _nothing_stored(storage, tag)
    page = _page(storage if backend is None else backend, studies, tag)
    out = Path(out) if out is not None else DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


def _phase_studies(backend: Storage | None, tag: str | None) -> dict[str, optuna.Study | None]:
    """Each phase's stored study (None when never run). `test` stores on `final`."""
    if backend is None:
        return {}
    return {phase: find_study(backend, study_name(phase, tag))
            for phase in PHASE_ORDER if phase != "test"}


def _nothing_stored(storage: str | Storage | None, tag: str | None) -> UsageError:
    named = f"tag `{tag}`" if tag else "no tag"
    tagged = f" --tag {tag}" if tag else ""
    return UsageError(f"no protocol study with {named} in {describe(storage)}; fix: run "
                      f"`hpsearch protocol{tagged}` first, or pass the --storage (and --tag) "
                      "that holds it")


# --- the page -----------------------------------------------------------------------------------
def _page(storage: str | Storage | None, studies: dict[str, optuna.Study | None],
          tag: str | None) -> str:
    final = studies.get("final")
    test = records.read_test(final) if final is not None else None
    with tempfile.TemporaryDirectory(prefix="hpsearch-report-") as folder:
        sections = [_phase_section(i, phase, studies.get(phase), Path(folder))
                    for i, phase in enumerate(PHASE_ORDER, 1) if phase != "test"]
    sections.append(_test_section(len(PHASE_ORDER), final, test, tag))
    title = f"hpsearch protocol report{f' - tag {tag}' if tag else ''}"
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{esc(title)}</title><style>{CSS}</style></head><body>",
        _header(title, storage, tag, test), *sections, "</body></html>"])


def _header(title: str, storage: str | Storage | None, tag: str | None,
            test: TestResult | None) -> str:
    written = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    facts = [("tag", tag or "(none)"), ("storage", describe(storage)), ("written", written)]
    if test is not None:
        facts.append(("test", test.text()))
    return (f"<header><h1>{esc(title)}</h1>{_facts(facts)}"
            f"<h2>Summary</h2>{_summary_table(storage, tag)}</header>")


def _summary_table(storage: str | Storage | None, tag: str | None) -> str:
    """frames.summary: one row per phase, linked to its section."""
    rows = []
    for row in summary(storage, tag=tag).to_dict("records"):
        phase, status = row["phase"], row["status"]
        choice = "" if status in ("not run", "skipped", "no choice") else _choice_cell(row)
        value = "" if _missing(row["value"]) or status == "skipped" else \
            f"{row['criterion']} {fmt(row['value'])}"
        rows.append([f'<a href="#phase-{esc(phase)}">{esc(phase)}</a>', _badge(status),
                     esc(choice), esc(value),
                     "-" if phase == "test" else esc(fmt(row["trials"]))])
    return _table(["phase", "status", "choice", "main criterion", "trials"], rows, raw=True)


def _choice_cell(row: dict[str, Any]) -> str:
    if row["phase"] == "test":
        return f"trial {fmt(row['trial'])} of {row['study']}"
    params = ", ".join(f"{k}={fmt(v)}" for k, v in (row["params"] or {}).items())
    baseline = "baseline " if row["status"] == "kept baseline" else ""
    return f"{baseline}trial {fmt(row['trial'])}" + (f" ({params})" if params else "")


# --- one phase ----------------------------------------------------------------------------------
def _phase_section(number: int, phase: str, study: optuna.Study | None, folder: Path) -> str:
    if study is None:
        return _section(number, phase, "not run", '<p class="muted">not run</p>')
    choice = records.read_choice(study)
    facts = StudyFacts.of(study)
    finished = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                         optuna.trial.TrialState.PRUNED))
    status = _status(choice, finished)
    parts = [f'<p class="desc">{esc(facts.description)}</p>' if facts.description else "",
             _facts(_phase_facts(study, choice, facts, len(finished)))]
    if choice is None or not choice.skipped:
        parts += [_runners_up(study, choice), _curves(study, folder),
                  _eliminated(study, choice) if choice else _stopped(finished),
                  _setup_checks(facts)]
    return _section(number, phase, status, "".join(parts))


def _status(choice: PhaseChoice | None, finished: list) -> str:
    if choice is None:
        return "no choice" if finished else "not run"
    return "skipped" if choice.skipped else "kept baseline" if choice.kept_baseline else "chose"


def _phase_facts(study: optuna.Study, choice: PhaseChoice | None, facts: StudyFacts,
                 trials: int) -> list[tuple[str, str]]:
    """The phase's story as label/text pairs: study, choice, why, start, adjustments."""
    plural = "" if trials == 1 else "s"
    lines = [("study", f"{study.study_name} ({trials} trial{plural} finished)")]
    if choice is not None and choice.skipped:
        lines.append(("skipped", choice.reason))
    elif choice is not None:
        lines.append(("choice", _choice_text(choice)))
        lines.append(("why", choice.why or choice.reason))
    for source in facts.inherited.get("from", []):
        trial = source.get("trial")
        where = f"{source.get('study')}, trial {trial}" if trial is not None else \
            f"{source.get('study')} (its inherited configuration)"
        lines.append(("started from", f"{where}: {source.get('reason', '')}"))
    if facts.train_longer:
        longer = facts.train_longer
        epochs = f"epochs {longer.get('from')} -> {longer.get('to')}"
        lines.append(("trained longer", f"{epochs}: {longer.get('reason', '')}"))
    if facts.augmentation:
        lines.append(("augmentation", facts.augmentation))
    if choice is not None and choice.extended:
        lines.append(("grid extended", choice.extended.get("reason", "")))
    return lines


def _choice_text(choice: PhaseChoice) -> str:
    params = ", ".join(f"{k}={fmt(v)}" for k, v in choice.params.items())
    main = choice.main_value()
    value = f": {choice.main_criterion} {fmt(main)}" if main is not None else ""
    return f"{choice_word(choice)}{f' ({params})' if params else ''}{value}"


def _runners_up(study: optuna.Study, choice: PhaseChoice | None) -> str:
    """The choice and its runners-up side by side: criteria, then parameters."""
    if choice is None or not choice.runners_up:
        return ""
    entries = [{"trial": choice.trial, **choice.criteria, "params": choice.params},
               *choice.runners_up]
    criteria = list(dict.fromkeys(k for r in choice.runners_up for k in r
                                  if k not in ("trial", "params")))
    params = list(dict.fromkeys(k for r in entries for k in (r.get("params") or {})))
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    rows = []
    for i, entry in enumerate(entries):
        trial = trials.get(entry.get("trial"))
        values = [_param_value(trial, entry, name) for name in params]
        label = f"{entry.get('trial')} (chosen)" if i == 0 else str(entry.get("trial"))
        rows.append([label, *(fmt(entry.get(k)) for k in criteria), *map(fmt, values)])
    return "<h3>Choice and runners-up</h3>" + _table(["trial", *criteria, *params], rows)


def _param_value(trial, entry: dict[str, Any], name: str) -> Any:
    """A parameter's value; a baseline trial sampled none, its config holds the value."""
    params = entry.get("params") or {}
    if name in params or trial is None:
        return params.get(name)
    return setting_value(trial, name)


def _curves(study: optuna.Study, folder: Path) -> str:
    """Train loss and validation accuracy of the top trials, side by side, as PNG data."""
    recorded = metrics_recorded(study)
    figures = []
    for metric in (m for m in CURVE_METRICS if m in recorded):
        png = plot_curves(study, folder / f"{study.study_name}-{metric}.png", metric, TOP)
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        alt = f"{METRIC_NAMES.get(metric, metric)} per epoch of {study.study_name}"
        figures.append(f'<figure><img src="data:image/png;base64,{data}" alt="{esc(alt)}">'
                       "</figure>")
    return f'<div class="curves">{"".join(figures)}</div>' if figures else ""


def _eliminated(study: optuna.Study, choice: PhaseChoice | None) -> str:
    if choice is None or not choice.eliminated:
        return ""
    rows = [[fmt(e.get("trial")), e.get("reason") or "",
             ", ".join(f"{k}={fmt(v)}" for k, v in (e.get("params") or {}).items())]
            for e in choice.eliminated]
    return "<h3>Eliminated</h3>" + _table(["trial", "reason", "parameters"], rows)


def _stopped(finished: list) -> str:
    """A phase without a choice: why each of its trials was pruned or failed."""
    rows = [[fmt(t.number), t.state.name.lower(), records.TrialFacts.of(t).why() or "",
             ", ".join(f"{k}={fmt(v)}" for k, v in t.params.items())]
            for t in finished if t.state != optuna.trial.TrialState.COMPLETE]
    if not rows:
        return ""
    return ("<h3>No choice: trials eliminated</h3>" +
            _table(["trial", "state", "reason", "parameters"], rows))


def _setup_checks(facts: StudyFacts) -> str:
    if not facts.setup_checks:
        return ""
    rows = [[c.get("name", ""), "passed" if c.get("passed") else "FAILED", c.get("detail", "")]
            for c in facts.setup_checks]
    return "<h3>Setup checks</h3>" + _table(["check", "result", "detail"], rows)


# --- the test -----------------------------------------------------------------------------------
def _test_section(number: int, final: optuna.Study | None, test: TestResult | None,
                  tag: str | None) -> str:
    """The one test evaluation, the configuration it tested, how to redo it, the model."""
    tagged = f" --tag {tag}" if tag else ""
    choice = records.read_choice(final) if final is not None else None
    if test is None:
        hint = (f"run <code>hpsearch test --study final{esc(tagged)}</code> once the final "
                "phase chose")
        body = f'<p class="muted">not run: {hint}</p>'
        if choice is not None and choice.config and not choice.skipped:
            body += "<h3>Chosen configuration (not tested yet)</h3>" + _config(choice.config)
        return _section(number, "test", "not run", body)
    when = f", evaluated {test.when}" if test.when else ""
    what = f"{final.study_name}, trial {fmt(test.trial)}, retrained {fmt(test.epochs)} epochs"
    body = [f'<p class="result">{esc(test.text())}</p>',
            f'<p class="muted">{esc(what + when)}</p>',
            "<h3>Tested configuration</h3>", _config(test.config),
            "<h3>Reproduce</h3>", _command(f"hpsearch test --study final{tagged} --force"),
            _checkpoint(test.checkpoint or (choice.checkpoint if choice else None), tagged)]
    return _section(number, "test", "tested", "".join(body))


def _config(config: dict[str, Any]) -> str:
    """The settings that differ from hpsearch's defaults, then the whole configuration."""
    defaults = TrainConfig().to_dict()
    changed = [[k, _value(v), _value(defaults[k]) if k in defaults else "(not an hpsearch "
                "setting)"] for k, v in config.items() if k not in defaults or defaults[k] != v]
    table = _table(["setting", "value", "default"], changed) if changed else \
        '<p class="muted">every setting is at its default</p>'
    whole = _table(["setting", "value"], [[k, _value(v)] for k, v in config.items()])
    return (f"{table}<details><summary>whole configuration ({len(config)} settings)</summary>"
            f"{whole}</details>")


def _checkpoint(checkpoint: dict[str, Any] | None, tagged: str) -> str:
    if not checkpoint:
        return '<h3>Model</h3><p class="muted">no checkpoint stored</p>'
    size = checkpoint.get("bytes")
    facts = [("store", str(checkpoint.get("store", ""))),
             ("artifact id", str(checkpoint.get("artifact_id", ""))),
             ("file", str(checkpoint.get("file", "")))]
    if isinstance(size, (int, float)):
        facts.append(("size", f"{fmt(size / 1e6)} MB"))
    return ("<h3>Model</h3>" + _facts(facts) +
            _command(f"hpsearch export --study final{tagged} --out model.pt"))


# --- HTML pieces --------------------------------------------------------------------------------
def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def fmt(value: Any) -> str:
    """4 significant digits for a float, `yes`/`no`, `-` for nothing, else the text."""
    if _missing(value):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e6 else f"{value:.4g}"
    return str(value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))  # pandas' None


def _value(value: Any) -> str:
    """A configuration value: numbers by fmt, mappings and lists as compact JSON."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(", ", ": "), default=str)
    return "none" if value is None else fmt(value)


def _section(number: int, phase: str, status: str, body: str) -> str:
    return (f'<section id="phase-{esc(phase)}"><h2>{number}. {esc(phase)} {_badge(status)}'
            f"</h2>{body}</section>")


def _badge(status: str) -> str:
    kind = status.replace(" ", "-")
    return f'<span class="badge {esc(kind)}">{esc(status)}</span>'


def _facts(pairs: Iterable[tuple[str, str]]) -> str:
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in pairs)
    return f'<dl class="facts">{items}</dl>'


def _command(text: str) -> str:
    return f"<pre><code>{esc(text)}</code></pre>"


def _table(header: list[str], rows: list[list[Any]], raw: bool = False) -> str:
    """A table in a scrolling box (never cut at the page's edge); cells escaped unless
    `raw` (the caller escaped them)."""
    cell = (lambda v: str(v)) if raw else esc
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f'<div class="table"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>' \
           "</table></div>"


CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d232b;
       max-width: 1440px; margin: 0 auto; padding: 16px 24px 48px; background: #fff; }
h1 { font-size: 1.6em; margin: 0.4em 0; }
h2 { font-size: 1.25em; margin: 0 0 0.4em; }
h3 { font-size: 1em; margin: 1em 0 0.3em; color: #39424e; }
header { border-bottom: 2px solid #d0d7de; padding-bottom: 8px; }
section { border-bottom: 1px solid #d0d7de; padding: 18px 0; }
.desc { margin: 0 0 0.5em; color: #39424e; font-style: italic; }
.muted { color: #5b6570; }
.result { font-size: 1.3em; font-weight: 600; margin: 0.2em 0; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 0.4em 0; }
dl.facts dt { font-weight: 600; color: #39424e; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.table { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.3em 0; font-size: 0.9em; }
th, td { border: 1px solid #d0d7de; padding: 3px 9px; text-align: left; vertical-align: top; }
th { background: #f3f5f7; }
td { font-variant-numeric: tabular-nums; max-width: 60em; overflow-wrap: anywhere; }
tbody tr:nth-child(even) { background: #fafbfc; }
.curves { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 0.6em; }
.curves figure { flex: 1 1 480px; max-width: 700px; margin: 0; }
.curves img { width: 100%; height: auto; border: 1px solid #e3e7eb; }
pre { background: #f3f5f7; padding: 8px 12px; border-radius: 4px; overflow-x: auto; }
details { margin: 0.4em 0; } summary { cursor: pointer; color: #0b5cad; }
a { color: #0b5cad; }
.badge { display: inline-block; font-size: 0.72em; font-weight: 600; padding: 1px 8px;
         border-radius: 10px; vertical-align: middle; background: #e7ebef; color: #39424e; }
.badge.chose, .badge.tested { background: #dcf2e3; color: #14632f; }
.badge.kept-baseline { background: #dde9f8; color: #0b4a8f; }
.badge.skipped { background: #fbefd5; color: #7a4d00; }
.badge.not-run, .badge.no-choice { background: #eceff2; color: #5b6570; }
"""
