"""Learning curves and Optuna's plots of a study: real files, the chosen trial named, a
self-contained HTML, and one-line errors for what cannot be drawn."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import matplotlib.figure
import matplotlib.image
import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution

from hpsearch import records
from hpsearch.errors import UsageError
from hpsearch.records import PhaseChoice
from hpsearch.results.frames import open_study
from hpsearch.results.plots import DPI, FIGSIZE, curve_set, plot_curves, plot_optuna
from tests.conftest import REPO

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TAG = "t"


def history(values: list[float]) -> list[dict]:
    """Epoch records whose train loss falls and validation accuracy rises with `values`."""
    return [{"epoch": i + 1, "train_loss": 2.0 - v, "val_acc": v, "lr": 0.1}
            for i, v in enumerate(values)]


def make_study(url: str, name: str, trials: list[dict], chosen: int | None = None,
               runners_up: tuple[int, ...] = ()) -> optuna.Study:
    """A stored study of finished trials: each {params, value, curve, baseline?, config?},
    with the protocol's choice when `chosen` is given."""
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    for spec in trials:
        params = spec.get("params", {})
        distributions = {k: (FloatDistribution(1e-5, 1.0, log=True) if isinstance(v, float)
                             else CategoricalDistribution(["none", "batch", "layer"]))
                         for k, v in params.items()}
        attrs = {records.HISTORY: history(spec["curve"]), records.CONFIG: spec.get("config", {})}
        if spec.get("baseline"):
            attrs[records.BASELINE] = True
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=distributions, value=spec["value"], user_attrs=attrs))
    if chosen is not None:
        records.write_choice(study, PhaseChoice(
            trial=chosen, params=study.trials[chosen].params,
            runners_up=[{"trial": n, "params": study.trials[n].params} for n in runners_up]))
    return study


@pytest.fixture
def lr_study(tmp_path):
    """Five learning rates over three decades; the protocol chose trial 2, then 4 and 0."""
    lrs = [1e-4, 1e-3, 1e-2, 3e-2, 1e-1]
    trials = [{"params": {"lr": lr}, "value": 0.5 + 0.1 * i, "curve": [0.3, 0.5 + 0.05 * i]}
              for i, lr in enumerate(lrs)]
    return make_study(f"sqlite:///{tmp_path / 's.db'}", "lr@t", trials, chosen=2,
                      runners_up=(4, 0))


@pytest.fixture
def norm_study(tmp_path):
    """The baseline (norm none, in its config only) and two norms; batch chosen."""
    trials = [{"params": {}, "value": 0.8, "curve": [0.5, 0.8], "baseline": True,
               "config": {"norm": "none"}},
              {"params": {"norm": "batch"}, "value": 0.9, "curve": [0.6, 0.9]},
              {"params": {"norm": "layer"}, "value": 0.7, "curve": [0.4, 0.7]}]
    return make_study(f"sqlite:///{tmp_path / 's.db'}", "norm@t", trials, chosen=1)


@pytest.fixture
def drawn(monkeypatch):
    """The matplotlib figures plot_curves saves, kept for inspection."""
    figures = []
    save = matplotlib.figure.Figure.savefig

    def keep(self, *args, **kwargs):
        figures.append(self)
        return save(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", keep)
    return figures


def legend_texts(figure) -> list[str]:
    return [t.get_text() for legend in figure.legends for t in legend.get_texts()]


def trace_names(page: str) -> list[str]:
    """The trace names in the plotly figure JSON written into an HTML file."""
    call = re.search(r"Plotly\.newPlot\(\s*\"[^\"]+\",\s*(\[.*?\])\s*,\s*\{", page, re.DOTALL)
    assert call, "no Plotly.newPlot call with the figure's traces"
    return [t.get("name") for t in json.loads(call.group(1)) if t.get("name")]


# --- the curves ----------------------------------------------------------------------------------
def test_curves_png_is_a_real_image_of_the_figure_size(tiny_protocol, tmp_path):
    study = open_study("architecture", tiny_protocol, TAG)
    out = plot_curves(study, tmp_path / "curves.png")
    data = out.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 10_000
    height, width, _ = matplotlib.image.imread(out).shape
    assert width == round(FIGSIZE[0] * DPI)
    assert height >= round(FIGSIZE[1] * DPI)  # plus the legend's rows below the axes


def test_curves_legend_names_the_chosen_trial_first(tiny_protocol, tmp_path, drawn):
    study = open_study("architecture", tiny_protocol, TAG)
    chosen = records.read_choice(study).trial
    plot_curves(study, tmp_path / "curves.png", metric="train_loss")
    assert legend_texts(drawn[-1])[0].startswith(f"trial {chosen} (chosen)")


def test_curves_html_is_self_contained_and_names_the_chosen_trial(tiny_protocol, tmp_path):
    study = open_study("lr_adam_refine", tiny_protocol, TAG)
    chosen = records.read_choice(study).trial
    page = plot_curves(study, tmp_path / "curves.html").read_text()
    assert "plotly.js v" in page and len(page) > 1_000_000  # the library itself, inline
    assert '<script src="http' not in page
    assert any(name.startswith(f"trial {chosen} (chosen)") for name in trace_names(page))


def test_curves_follow_the_protocols_ranking_then_the_objective(lr_study):
    assert [c.trial for c in curve_set(lr_study, top=4).curves] == [2, 4, 0, 3]


def test_numeric_parameter_over_decades_gets_a_log_colour_bar(lr_study, tmp_path, drawn):
    found = curve_set(lr_study)
    assert found.param == "lr" and found.numeric and found.log
    plot_curves(lr_study, tmp_path / "lr.png")
    assert len(drawn[-1].axes) == 2  # the curves and the colour bar
    assert "colour: lr (log scale)" in drawn[-1].axes[0].get_title()


def test_categorical_parameter_gets_one_colour_per_value(norm_study):
    found = curve_set(norm_study)
    colours = {c.value: c.colour for c in found.curves}
    assert found.param == "norm" and not found.numeric
    assert set(colours) == {"none", "batch", "layer"}  # the baseline's from its config
    assert len(set(colours.values())) == 3


def test_chosen_is_thick_and_the_baseline_dashed(norm_study, tmp_path, drawn):
    plot_curves(norm_study, tmp_path / "norm.png")
    lines = {line.get_label(): line for line in drawn[-1].axes[0].get_lines()}
    chosen = lines["trial 1 (chosen), norm=batch"]
    baseline = lines["trial 0 (baseline), norm=none"]
    other = lines["trial 2, norm=layer"]
    assert chosen.get_linewidth() > other.get_linewidth()
    assert baseline.get_linestyle() == "--" and other.get_linestyle() == "-"


def test_a_metric_no_trial_recorded_is_a_usage_error(lr_study, tmp_path):
    with pytest.raises(UsageError, match="no trial of study `lr@t` recorded `val_loss`"):
        plot_curves(lr_study, tmp_path / "x.png", metric="val_loss")


def test_unknown_suffix_says_which_to_use(lr_study, tmp_path):
    with pytest.raises(UsageError) as err:
        plot_curves(lr_study, tmp_path / "curves.svg")
    assert str(err.value) == ("cannot draw into `curves.svg`: unknown suffix `.svg`; fix: end "
                              "--out with .png (an image) or .html (interactive, opens offline)")


def test_study_without_completed_trial_says_how_to_run_it(tmp_path):
    study = optuna.create_study(study_name="empty@t", storage=f"sqlite:///{tmp_path / 'e.db'}")
    with pytest.raises(UsageError) as err:
        plot_curves(study, tmp_path / "curves.png")
    assert str(err.value) == ("study `empty@t` has no completed trial to plot; fix: run "
                              "`hpsearch run --study empty --tag t` (or `hpsearch protocol "
                              "--tag t`) first")
    assert not (tmp_path / "curves.png").exists()


# --- Optuna's views -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["importance", "history", "parallel"])
@pytest.mark.parametrize("suffix", [".png", ".html"])
def test_optuna_kinds_write_their_file(lr_study, tmp_path, kind, suffix):
    out = plot_optuna(lr_study, kind, tmp_path / f"{kind}{suffix}")
    data = out.read_bytes()
    if suffix == ".png":
        assert data[:8] == PNG_MAGIC and matplotlib.image.imread(out).shape[1] > 300
    else:
        assert b"plotly.js v" in data and b'<script src="http' not in data


def test_optuna_png_leaves_the_global_style_alone(lr_study, tmp_path):
    import matplotlib as mpl

    before = mpl.rcParams["axes.facecolor"]
    plot_optuna(lr_study, "history", tmp_path / "h.png")  # Optuna switches to ggplot inside
    assert mpl.rcParams["axes.facecolor"] == before


def test_importance_of_a_single_searched_trial_is_one_usage_error(tmp_path):
    study = make_study(f"sqlite:///{tmp_path / 's.db'}", "one@t",
                       [{"params": {"lr": 0.01}, "value": 0.5, "curve": [0.5]}])
    with pytest.raises(UsageError) as err:
        plot_optuna(study, "importance", tmp_path / "i.png")
    assert str(err.value) == (
        "parameter importance of study `one@t` needs at least 2 completed trials that "
        "searched the same parameter (it has only 1 completed trial(s) with parameters); "
        "fix: run more trials, or use --kind history or parallel")


def test_importance_leaves_out_the_baseline_that_sampled_nothing(norm_study, tmp_path):
    assert plot_optuna(norm_study, "importance", tmp_path / "i.html").exists()


def test_unknown_kind_names_the_kinds(lr_study, tmp_path):
    with pytest.raises(UsageError, match="unknown plot kind `pie`; fix: use one of curves, "
                                         "importance, history, parallel"):
        plot_optuna(lr_study, "pie", tmp_path / "x.png")


def test_plots_and_report_import_no_torch():
    code = ("import sys, hpsearch.results.plots, hpsearch.results.report; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, check=False).returncode == 0
