"""Pictures of a study: learning curves of its best trials, and Optuna's own views.

A phase is judged on curves (PROTOCOL.md: the loss/train curve that falls fastest, the peak
validation accuracy), so the curves are drawn the way the protocol ranks trials: the chosen
trial first and thickest, then its runners-up, each coloured by the parameter the phase
searched. A `.png` is drawn with matplotlib (for files and the HTML report), an `.html` with
plotly (zoom and hover in a browser, and no network needed: plotly.js is written inside).

This module reads storage only and never imports torch: `hpsearch plot` answers at once.
matplotlib and plotly are imported inside the functions that draw, for the same reason.
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpsearch import records
from hpsearch.errors import UsageError

SUFFIXES = (".png", ".html")
KINDS = ("importance", "history", "parallel")
METRIC_NAMES = {"train_loss": "train loss", "train_acc": "train accuracy",
                "val_loss": "validation loss", "val_acc": "validation accuracy",
                "lr": "learning rate"}
# Viridis from 0 to 0.8: its last, pale-yellow fifth is hard to see on a white background.
SCALE = ("#440154", "#482878", "#3e4989", "#31688e", "#26828e", "#1f9e89", "#35b779",
         "#6ece58", "#b5de2b")
# matplotlib's tab10: distinct, readable on white; one per categorical value (cycled past 10).
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
TICK_GAP = 0.06  # of the colour bar's height: about 20 pixels on a 429-pixel figure
LOG_SPAN = 10.0  # values spanning more than this factor get a log colour scale
FIGSIZE = (6.6, 3.9)  # inches; at DPI, 726 x 429 pixels: two fit side by side on a laptop
DPI = 110
LEGEND_ROW = 0.19  # inches of figure height per legend row (8.5-point text)
LABEL_MAX = 80  # characters of a legend label that fit in the figure's width
LABEL_HALF = 48  # characters of a legend label that fit in half the figure's width


# --- what to draw ------------------------------------------------------------------------------
@dataclass
class Curve:
    """One trial's metric per epoch, and how it is drawn."""

    trial: int
    epochs: list[int]
    values: list[float]
    value: Any  # the colouring parameter's value (None when nothing varies)
    chosen: bool = False
    baseline: bool = False
    colour: str = ""
    settings: dict[str, Any] = field(default_factory=dict)  # the varying parameters' values

    def label(self) -> str:
        """`trial 4 (chosen), lr=0.024`: the legend entry and the plotly trace name."""
        role = (" (chosen)" + (", the baseline" if self.baseline else "") if self.chosen
                else " (baseline)" if self.baseline else "")
        shown = "".join(f", {k}={_short(v)}" for k, v in self.settings.items())
        return f"trial {self.trial}{role}{shown}"


@dataclass
class CurveSet:
    """The curves of a study's top trials, coloured by one parameter."""

    study: str
    metric: str
    curves: list[Curve]
    param: str | None = None  # the parameter the colour shows (None: one colour per trial)
    numeric: bool = False
    log: bool = False
    low: float = 0.0
    high: float = 1.0
    categories: list[Any] = field(default_factory=list)

    def title(self) -> str:
        name = METRIC_NAMES.get(self.metric, self.metric)
        colour = ("colour: trial" if self.param is None else
                  f"colour: {self.param}" + (" (log scale)" if self.log else ""))
        count = len(self.curves)
        if count == 1:
            return f"{self.study}: {name} per epoch, its one completed trial"
        return f"{self.study}: {name} per epoch, top {count} trials; {colour}"

    def fraction(self, value: float) -> float:
        """Where `value` lies on the colour scale, 0 to 1 (log10 when `log`)."""
        low, high, value = (math.log10(v) for v in (self.low, self.high, value)) if self.log \
            else (self.low, self.high, value)
        return 0.5 if high == low else (value - low) / (high - low)


def curve_set(study: optuna.Study, metric: str = "val_acc", top: int = 8) -> CurveSet:
    """The `top` trials the protocol ranks first, their `metric` curves and colours."""
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        raise _no_completed(study.study_name)
    ranked = rank_trials(study, completed)[:max(top, 1)]
    choice = records.read_choice(study)
    chosen = choice.trial if choice and not choice.skipped else None
    varied = varied_params(ranked)
    param = varied[0] if varied else None
    curves = [c for c in (_curve(t, metric, varied, chosen) for t in ranked) if c.values]
    while len(varied) > 1 and max((len(c.label()) for c in curves), default=0) > LABEL_MAX:
        dropped = varied.pop()  # a legend wider than the figure is cut at its edge
        for curve in curves:
            curve.settings.pop(dropped, None)
    if not curves:
        raise UsageError(
            f"no trial of study `{study.study_name}` recorded `{metric}`; fix: pass --metric "
            f"with one of {', '.join(sorted(metrics_recorded(study))) or 'train_loss, val_acc'}")
    found = CurveSet(study.study_name, metric, curves, param)
    _colour(found)
    return found


def rank_trials(study: optuna.Study, completed: list[FrozenTrial]) -> list[FrozenTrial]:
    """The protocol's order: its choice, its runners-up in order, then the rest by the
    study's (first) objective, best first."""
    choice = records.read_choice(study)
    first = [] if choice is None or choice.skipped else [choice.trial] + [
        r.get("trial") for r in choice.runners_up]
    by_number = {t.number: t for t in completed}
    front = [by_number[n] for n in dict.fromkeys(first) if n in by_number]
    sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
    rest = sorted((t for t in completed if t not in front), key=lambda t: (
        _objective(t, sign), t.number))
    return front + rest


def _objective(trial: FrozenTrial, sign: float) -> float:
    value = trial.values[0] if trial.values else None
    return math.inf if value is None or math.isnan(value) else sign * value


def setting_value(trial: FrozenTrial, name: str) -> Any:
    """The trial's value of parameter `name`, else of the setting it sets: a baseline trial
    samples nothing, its value is in its config (`beta1[adam]` sets `beta1`)."""
    if name in trial.params:
        return trial.params[name]
    return records.read_config(trial).get(name.split("[", 1)[0])


def varied_params(trials: list[FrozenTrial], most: int = 3) -> list[str]:
    """The searched parameters that vary among `trials`, at most `most`: the first is the
    colour, all are named in the legend. Most distinct values first; at a tie a categorical
    parameter (a scheduler, a norm: the phase's subject) before a numeric one, and among
    numeric ones the widest ratio (a width of 50 vs 200 before a depth of 3 vs 4)."""
    names = list(dict.fromkeys(name for t in trials for name in t.params))
    values = {n: [setting_value(t, n) for t in trials] for n in names}
    counts = {n: len({repr(v) for v in values[n]}) for n in names}
    varying = sorted((n for n in names if counts[n] > 1),
                     key=lambda n: (-counts[n], -_spread(values[n])))
    return varying[:most]


def _spread(values: list[Any]) -> float:
    """How far apart the values are: max/min for positive numbers, 1 + range for other
    numbers, infinite for categories (None, a library default, counts as a category)."""
    if not all(_is_number(v) for v in values):
        return math.inf
    low, high = min(values), max(values)
    return high / low if low > 0 else 1.0 + high - low


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def metrics_recorded(study: optuna.Study) -> set[str]:
    """The per-epoch metrics some completed trial of the study has in its history."""
    found: set[str] = set()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        for record in trial.user_attrs.get(records.HISTORY, []):
            found.update(k for k, v in record.items() if k != "epoch" and v is not None)
    return found


def _curve(trial: FrozenTrial, metric: str, varied: list[str], chosen: int | None) -> Curve:
    points = [(r.get("epoch"), r.get(metric)) for r in trial.user_attrs.get(records.HISTORY, [])]
    points = [(e, v) for e, v in points if e is not None and isinstance(v, (int, float))]
    settings = {name: setting_value(trial, name) for name in varied}
    return Curve(trial.number, [e for e, _ in points], [float(v) for _, v in points],
                 settings[varied[0]] if varied else None, trial.number == chosen,
                 records.TrialFacts.of(trial).baseline, settings=settings)


def _colour(found: CurveSet) -> None:
    """Each curve's colour: on SCALE for a numeric parameter, from PALETTE otherwise."""
    values = [c.value for c in found.curves]
    numeric = found.param is not None and all(_is_number(v) for v in values)
    if numeric:
        found.numeric, found.low, found.high = True, min(values), max(values)
        found.log = found.low > 0 and found.high / found.low > LOG_SPAN
        for curve in found.curves:
            curve.colour = _on_scale(found.fraction(curve.value))
        return
    keys = values if found.param is not None else [c.trial for c in found.curves]
    found.categories = list(dict.fromkeys(repr(k) for k in keys))
    for curve, key in zip(found.curves, keys):
        curve.colour = PALETTE[found.categories.index(repr(key)) % len(PALETTE)]


def _on_scale(fraction: float) -> str:
    """The colour at `fraction` (0 to 1) of SCALE, interpolated between its stops."""
    position = min(max(fraction, 0.0), 1.0) * (len(SCALE) - 1)
    i = min(int(position), len(SCALE) - 2)
    a, b = (tuple(int(s[k:k + 2], 16) for k in (1, 3, 5)) for s in SCALE[i:i + 2])
    t = position - i
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b))


def _short(value: Any) -> str:
    """4 significant digits; None (a setting left to its library's default) as `default`."""
    if value is None:
        return "default"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# --- the curves ----------------------------------------------------------------------------------
def plot_curves(study: optuna.Study, out: str | Path, metric: str = "val_acc",
                top: int = 8) -> Path:
    """Draw `metric` per epoch for the study's `top` trials into `out` (.png or .html)."""
    out = _output(out)
    found = curve_set(study, metric, top)
    out.parent.mkdir(parents=True, exist_ok=True)
    (_curves_png if out.suffix.lower() == ".png" else _curves_html)(found, out)
    return out


def _curves_png(found: CurveSet, out: Path) -> None:
    """A Figure of its own, not pyplot's: no global backend or figure list is touched, so
    drawing from a notebook or a server thread changes nothing there."""
    from matplotlib import style
    from matplotlib.figure import Figure

    with style.context("default"):  # Optuna's PNG plots switch the global style to ggplot
        rows = _legend_shape(found)[1]
        fig = Figure(figsize=(FIGSIZE[0], FIGSIZE[1] + LEGEND_ROW * rows), dpi=DPI,
                     layout="constrained")
        _draw_curves(found, fig, fig.add_subplot())
        fig.savefig(out)  # Agg, from the suffix


def _draw_curves(found: CurveSet, fig, ax) -> None:
    """The curves, axes, legend and (numeric parameter) colour bar on `ax`."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LinearSegmentedColormap, LogNorm, Normalize
    from matplotlib.ticker import MaxNLocator, NullLocator

    for curve in reversed(found.curves):  # the chosen trial is drawn last, on top
        ax.plot(curve.epochs, curve.values, color=curve.colour, label=curve.label(),
                linewidth=3.2 if curve.chosen else 1.5, linestyle="--" if curve.baseline else "-",
                marker="o" if len(curve.epochs) == 1 else None, zorder=3 if curve.chosen else 2)
    ax.set_xlabel("epoch")
    ax.set_ylabel(METRIC_NAMES.get(found.metric, found.metric))
    ax.grid(alpha=0.3)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    ax.set_title(found.title().replace("; ", "\n", 1), fontsize=10)
    # Below the axes, never over a curve; the chosen trial first.
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles[::-1], labels[::-1], fontsize=8.5, loc="outside lower center",
               ncols=_legend_shape(found)[0], frameon=False)
    if not found.numeric:
        return
    cmap = LinearSegmentedColormap.from_list("hpsearch", SCALE)
    norm = (LogNorm if found.log else Normalize)(found.low, found.high)
    bar = fig.colorbar(ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=found.param,
                       pad=0.01)
    bar.set_ticks(_ticks(found), labels=[_short(t) for t in _ticks(found)])
    bar.ax.yaxis.set_minor_locator(NullLocator())  # the values tried, nothing between


def _legend_shape(found: CurveSet) -> tuple[int, int]:
    """Columns and rows of the legend: two columns unless a label is too long for half
    the figure's width."""
    longest = max(len(c.label()) for c in found.curves)
    columns = 2 if longest <= LABEL_HALF and len(found.curves) > 1 else 1
    return columns, math.ceil(len(found.curves) / columns)


def _curves_html(found: CurveSet, out: Path) -> None:
    import plotly.graph_objects as go

    fig = go.Figure()
    for curve in reversed(found.curves):  # the chosen trial last, on top; legend reversed
        fig.add_trace(go.Scatter(
            x=curve.epochs, y=curve.values, mode="lines", name=curve.label(),
            line={"color": curve.colour, "width": 4 if curve.chosen else 2,
                  "dash": "dash" if curve.baseline else "solid"}))
    if found.numeric:
        fig.add_trace(_colorbar_trace(found, go))
    fig.update_layout(title=found.title(), xaxis_title="epoch", template="plotly_white",
                      yaxis_title=METRIC_NAMES.get(found.metric, found.metric),
                      legend={"x": 0, "y": -0.2, "orientation": "h", "traceorder": "reversed"})
    last = max(max(c.epochs) for c in found.curves)
    fig.update_xaxes(dtick=max(1, math.ceil(last / 10)))  # whole epochs, at most ~10 ticks
    fig.write_html(out, include_plotlyjs=True, full_html=True)


def _colorbar_trace(found: CurveSet, go) -> Any:
    """An invisible trace whose only purpose is the colour bar of the numeric parameter."""
    ends = [found.fraction(found.low), found.fraction(found.high)]
    ticks = _ticks(found)
    scale = [[i / (len(SCALE) - 1), c] for i, c in enumerate(SCALE)]
    return go.Scatter(x=[None], y=[None], mode="markers", showlegend=False, hoverinfo="skip",
                      marker={"color": ends, "cmin": 0, "cmax": 1, "colorscale": scale,
                              "showscale": True,
                              "colorbar": {"title": {"text": found.param},
                                           "tickvals": [found.fraction(t) for t in ticks],
                                           "ticktext": [_short(t) for t in ticks]}})


def _ticks(found: CurveSet) -> list[float]:
    """Colour-bar ticks: the values the curves show, the lowest first, each at least
    TICK_GAP of the bar above the last one kept so that no labels overlap."""
    kept: list[float] = []
    for value in sorted({c.value for c in found.curves}):
        if not kept or found.fraction(value) - found.fraction(kept[-1]) >= TICK_GAP:
            kept.append(value)
    return kept


# --- Optuna's views ------------------------------------------------------------------------------
def plot_optuna(study: optuna.Study, kind: str, out: str | Path) -> Path:
    """Optuna's parameter importances, optimization history or parallel coordinates of the
    study, as plotly HTML or a matplotlib PNG."""
    if kind not in KINDS:
        raise UsageError(f"unknown plot kind `{kind}`; fix: use one of curves, "
                         f"{', '.join(KINDS)}")
    out = _output(out)
    completed = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not completed:
        raise _no_completed(study.study_name)
    options = _target(study)
    if kind == "importance":
        options["params"] = importance_params(study, completed)
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Optuna's parallel PNG sets equal limits for a parameter with one value: harmless.
        warnings.filterwarnings("ignore", "Attempting to set identical", UserWarning)
        draw = _optuna_html if out.suffix.lower() == ".html" else _optuna_png
        draw(study, kind, out, options)
    return out


def importance_params(study: optuna.Study, completed: list[FrozenTrial]) -> list[str]:
    """The parameters fANOVA can weigh: those every trial that sampled anything sampled (a
    baseline trial samples nothing), over at least 2 trials; else one UsageError."""
    from optuna.search_space import intersection_search_space

    sampled = [t for t in completed if t.params]
    space = list(intersection_search_space(sampled)) if len(sampled) >= 2 else []
    if not space:
        has = (f"only {len(sampled)} completed trial(s) with parameters" if len(sampled) < 2
               else f"{len(sampled)} completed trials with no parameter in common")
        raise UsageError(
            f"parameter importance of study `{study.study_name}` needs at least 2 completed "
            f"trials that searched the same parameter (it has {has}); fix: run more trials, "
            "or use --kind history or parallel")
    return space


def _target(study: optuna.Study) -> dict[str, Any]:
    """Optuna plots one objective: a multi-objective study's first (the main criterion)."""
    if len(study.directions) == 1:
        return {}
    name = (study.metric_names or ["objective 0"])[0]
    return {"target": lambda t: t.values[0], "target_name": name}


def _optuna_html(study: optuna.Study, kind: str, out: Path, options: dict[str, Any]) -> None:
    from optuna import visualization as vis

    draw = {"importance": vis.plot_param_importances, "history": vis.plot_optimization_history,
            "parallel": vis.plot_parallel_coordinate}[kind]
    fig = draw(study, **options)
    fig.update_layout(title=f"{study.study_name}: {fig.layout.title.text or kind}")
    fig.write_html(out, include_plotlyjs=True, full_html=True)


def _optuna_png(study: optuna.Study, kind: str, out: Path, options: dict[str, Any]) -> None:
    """Optuna draws through pyplot: Agg unless the caller chose a backend (a notebook's), and
    its global style change (ggplot) is undone when done."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # no display needed
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as vis

    draw = {"importance": vis.plot_param_importances, "history": vis.plot_optimization_history,
            "parallel": vis.plot_parallel_coordinate}[kind]
    with matplotlib.rc_context():
        ax = draw(study, **options)
        fig = ax.figure
        try:
            fig.set_size_inches(*FIGSIZE)
            text = ax.get_title() or ax.get_title(loc="left") or kind  # importance: left
            ax.set_title("", loc="left")
            ax.set_title(f"{study.study_name}: {text}", fontsize=10)
            fig.savefig(out, dpi=DPI, bbox_inches="tight")
        finally:
            plt.close(fig)


# --- checks shared by both ---------------------------------------------------------------------
def _output(out: str | Path) -> Path:
    out = Path(out)
    if out.suffix.lower() not in SUFFIXES:
        raise UsageError(f"cannot draw into `{out.name}`: unknown suffix "
                         f"`{out.suffix or '(none)'}`; fix: end --out with .png (an image) "
                         "or .html (interactive, opens offline)")
    return out


def _no_completed(name: str) -> UsageError:
    base, _, tag = name.partition("@")
    tagged = f" --tag {tag}" if tag else ""
    return UsageError(f"study `{name}` has no completed trial to plot; fix: run `hpsearch run "
                      f"--study {base}{tagged}` (or `hpsearch protocol{tagged}`) first")
