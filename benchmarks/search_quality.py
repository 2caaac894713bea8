"""Search quality: the phase-by-phase protocol vs flat Optuna searches, for the same epochs.

The claim: tuning one phase at a time (PROTOCOL.md) finds a better configuration than a flat
search over the same knobs given the same compute. Measured on the reference setting [001]:
MNIST, 5% of the official train split for training, the other 95% for validation, the
official test set held out and used once per arm. Five arms per seed:

  untuned        the setup phase's configuration (MLP 3x100, Adam 1e-3, batch 300, 20
                 epochs [001, 000]), trained once; its test accuracy is that same model's.
  protocol       every phase with its file's trial budget (times --trials-scale), then the
                 test phase; epochs = every epoch of every trial of every phase (pruned trials
                 count what they ran; the setup checks' few steps do not) + the test retraining.
  tpe_median     ONE TPE study over the joint space of the phases, median pruner with 5
                 startup trials and no verdict before epoch 5 (the phase files' own pruner line,
                 e.g. studies/architecture.yaml).
  tpe_hyperband  the same TPE study with Optuna's HyperbandPruner: min_resource 1 epoch,
                 max_resource the epochs of one trial, reduction_factor 3 (Optuna 5.0's
                 default): the strongest off-the-shelf Optuna setting.
  random         RandomSampler over the same space, no pruner: the floor any search must beat.

The three flat arms (tpe_median, tpe_hyperband, random) search the same joint space and stop
when their trials have spent the protocol's search epochs (to within half a trial; --flat-budget
when the protocol arm is not run), then test their choice once, like the protocol.

Spaces (--space):
  mlp      the MLP family only (FLAT_SPACES["mlp"]). The protocol runs with `--set model=mlp`,
           which pins the family: its architecture phase then does not choose MLP or CNN.
  mlp_cnn  the flat space also chooses `model` (mlp or cnn), each with its own knobs (those of
           studies/architecture.yaml and batchnorm.yaml); the protocol's architecture phase
           chooses the family (`families: [mlp, cnn]`). The flat arms are checked by hpsearch
           before anything trains, so a space it refuses stops at once.

Anytime curve: an arm's trials in the order they finished (for the protocol, every phase's
trials), each adding the epochs it ran; after each, the best validation accuracy of any
completed trial so far. The tables give it at 25%, 50% and 100% of the protocol's search
epochs, so an arm that only catches up at the end reads differently from one that is ahead
all along; the JSON holds the whole curve and --plot draws it (mean over seeds).

The seed is the training seed (`seed=N`) of every arm and the flat studies' sampler seed.
Everything is written under a fresh work folder (SQLite storage, the data cache).

    python benchmarks/search_quality.py --data-dir ../shared/data --space mlp [--seeds 0 1 2]
    python benchmarks/search_quality.py --data-dir ../shared/data --space mlp_cnn --device cuda
    python benchmarks/search_quality.py --dataset digits --seeds 0 --trials-scale 0.1 --epochs 4
    python benchmarks/search_quality.py --merge a.json b.json --plot both.png   # seeds run apart

The third line is the quick smoke run (digits keeps its own splits: 5% of it is under one
batch); the last prints and draws the results of runs made apart as one table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch
from optuna.trial import TrialState

from hpsearch import records
from hpsearch.adapt import adapt
from hpsearch.config import resolve_config
from hpsearch.errors import UsageError
from hpsearch.metrics import metric_value
from hpsearch.phases.protocol import run_protocol
from hpsearch.phases.test_set import run_test
from hpsearch.runner import run_study
from hpsearch.spec import load_study_spec, parse_study_spec
from hpsearch.storage import load_study, study_name
from hpsearch.train import evaluate, fit, load_data, resolve_device
from hpsearch.train.contract import contract_for
from hpsearch.train.sources import BUILTIN_DATASETS

REPO = Path(__file__).resolve().parents[1]
STUDIES = REPO / "studies"
ARMS = ("untuned", "protocol", "tpe_median", "tpe_hyperband", "random")
FLAT_ARMS = ("tpe_median", "tpe_hyperband", "random")
SPACES = ("mlp", "mlp_cnn")
FRACTIONS = (0.25, 0.5, 1.0)  # of the protocol's search epochs: early, midway, the end
REFERENCE = {"train_fraction": 0.05, "val_fraction": 0.95}  # [001]: 5% train, 95% validation
LOG_RANGE = {"type": "float", "log": True}

# The flat arms' space: the main knobs of every phase file, searched jointly. Ranges as in
# studies/optimizer.yaml, architecture.yaml, regularization.yaml, batchnorm.yaml and
# scheduler.yaml, with "none" added where a phase may keep the inherited setting. A setting
# is searched in one place only, so weight decay is the `l2` regularizer's (1e-5..1e-2, which
# covers AdamW's 1e-4..1e-2; decoupled when the optimizer is AdamW). The optimizer_options
# phase's fine knobs (betas, Nesterov, RMSprop) are left out: they only widen the space.
REGULARIZERS = {
    "l1": {"l1": {**LOG_RANGE, "low": 1.0e-6, "high": 1.0e-3}},
    "l2": {"weight_decay": {**LOG_RANGE, "low": 1.0e-5, "high": 1.0e-2}},
    "dropout": {"dropout": {"type": "float", "low": 0.1, "high": 0.5}},
    "label_smoothing": {"label_smoothing": {"type": "float", "low": 0.01, "high": 0.2}},
}
# The augmentation the setup phase tries with few images per class (crop, studies/setup.yaml)
# and the regularization phase's noise: one setting, so one categorical here.
AUGMENTS = {"choices": ["none", "crop", "noise"], "when": {
    "noise": {"noise_std": {"type": "float", "low": 0.05, "high": 0.5}},
}}
SCHEDULERS = {
    "step": {"step_size": {"type": "int", "low": 5, "high": 15},
             "gamma": {"type": "float", "low": 0.1, "high": 0.5}},
    "exponential": {"gamma": {"type": "float", "low": 0.8, "high": 0.99}},
    "polynomial": {"power": {"type": "float", "low": 0.5, "high": 2.0}},
}
OPTIMIZERS = {"choices": ["sgd", "adam", "adamw"], "when": {
    "sgd": {"lr": {**LOG_RANGE, "low": 3.0e-3, "high": 1.0e-1},
            "momentum": {"type": "float", "low": 0.8, "high": 0.99}},
    "adam": {"lr": {**LOG_RANGE, "low": 1.0e-4, "high": 3.0e-3}},
    "adamw": {"lr": {**LOG_RANGE, "low": 1.0e-4, "high": 3.0e-3}},
}}
# studies/architecture.yaml (mlp) and batchnorm.yaml (mlp: BatchNorm1d or LayerNorm [001])
MLP_KNOBS = {
    "depth": {"type": "int", "low": 1, "high": 4},
    "width": {"choices": [50, 100, 200, 400]},
    "norm": {"choices": ["none", "batch", "layer"]},
}
# studies/architecture.yaml (cnn: 2-4 blocks, widths 32/48/64 doubled per block, the first
# pool dropped or not, linear or FC-128 head [000]) and batchnorm.yaml (cnn: Conv-BN-ReLU)
CNN_KNOBS = {
    "conv_blocks": {"choices": [2, 3, 4]},
    "conv_width": {"choices": [32, 48, 64]},
    "first_pool": {"choices": [True, False]},
    "head": {"choices": ["linear", "mlp"]},
    "conv_norm": {"choices": ["none", "batch"]},
}
TRAINING_KNOBS = {
    "augment": AUGMENTS,
    "regularizer": {"choices": ["none", *REGULARIZERS], "when": REGULARIZERS},
    "scheduler": {"choices": ["none", "cosine", *SCHEDULERS], "when": SCHEDULERS},
    "warmup_epochs": {"type": "float", "low": 0.0, "high": 3.0},
}
FLAT_SPACES = {
    "mlp": {"optimizer": OPTIMIZERS, **MLP_KNOBS, **TRAINING_KNOBS},
    "mlp_cnn": {"optimizer": OPTIMIZERS,
                "model": {"choices": ["mlp", "cnn"], "when": {"mlp": MLP_KNOBS, "cnn": CNN_KNOBS}},
                **TRAINING_KNOBS},
}
# Arm -> (sampler, pruner). TPE keeps hpsearch's defaults (10 startup trials, grouped
# multivariate). Median: the phase files' pruner line (5 startup trials, no verdict before
# epoch 5). Hyperband: every epoch a rung candidate (min_resource 1), reduction factor 3
# (Optuna's default); max_resource (one trial's epochs) is filled in by flat_spec.
SEARCHES: dict[str, tuple[dict, dict]] = {
    "tpe_median": ({"name": "tpe"}, {"name": "median", "n_startup_trials": 5,
                                     "n_warmup_steps": 5}),
    "tpe_hyperband": ({"name": "tpe"}, {"name": "hyperband", "min_resource": 1,
                                        "reduction_factor": 3}),
    "random": ({"name": "random"}, {"name": "none"}),
}


def space_settings(space: Mapping[str, Any]) -> set[str]:
    """Every name the space sets, at the top or inside a `when` branch."""
    names = set(space)
    for node in space.values():
        if isinstance(node, Mapping):
            for branch in node.get("when", {}).values():
                names |= space_settings(branch)
    return names


def flat_spec(arm: str = "tpe_median", seed: int = 0, space: str = "mlp",
              epochs: int | None = None):
    """A flat arm's study: the setup phase's base, the joint space, the arm's sampler and
    pruner; `epochs` per trial (default: the setup phase's) is Hyperband's max_resource."""
    setup = load_study_spec(STUDIES / "setup.yaml").base
    joint = FLAT_SPACES[space]
    sampler, pruner = SEARCHES[arm]
    if pruner["name"] == "hyperband":
        pruner = {**pruner, "max_resource": int(epochs or setup["epochs"])}
    searched = space_settings(joint)
    data = {
        "description": f"Flat {arm} over every phase's knobs, space {space} "
                       "(benchmarks/search_quality.py)",
        "base": {k: v for k, v in setup.items() if k not in searched},
        "objective": {"metric": "best_val_acc", "direction": "maximize"},
        "sampler": {**sampler, "seed": seed},
        "pruner": pruner,
        "space": joint,
    }
    return parse_study_spec(data, f"<{arm} search>", name=arm)


def protocol_overrides(space: str, overrides: dict) -> dict:
    """The protocol arm's settings: for the MLP space, `model=mlp` pins the family (the
    architecture phase then searches the MLP's knobs only)."""
    return {**overrides, "model": "mlp"} if space == "mlp" else overrides


def trial_epochs(study) -> int:
    """Epochs every trial of `study` ran (pruned and failed trials: the epochs they ran)."""
    return sum(records.epochs_run(t) for t in study.get_trials(deepcopy=False))


def trial_val_acc(trial) -> float | None:
    """The trial's best validation accuracy: its stored criterion, else its history's peak."""
    value = records.read_criteria(trial).best_val_acc
    if value is None:
        accs = [r.val_acc for r in records.read_history(trial)
                if r.val_acc is not None]
        value = max(accs) if accs else None
    return value


def anytime_curve(studies: Iterable) -> list[dict]:
    """After each finished trial of `studies`, in the order they finished: the epochs spent so
    far (every trial counts what it ran) and the best validation accuracy of the completed
    trials so far (None until one completes)."""
    trials = [t for s in studies for t in s.get_trials(deepcopy=False)
              if t.datetime_complete is not None]
    trials.sort(key=lambda t: (t.datetime_complete, t.number))
    curve, spent, best = [], 0, None
    for trial in trials:
        spent += records.epochs_run(trial)
        value = trial_val_acc(trial) if trial.state == TrialState.COMPLETE else None
        if value is not None and (best is None or value > best):
            best = value
        curve.append({"epochs": spent, "best_val_acc": best})
    return curve


def best_within(curve: list[dict], epochs: float) -> float | None:
    """The best validation accuracy so far once `epochs` are spent (held after the last
    trial); None if no completed trial fits."""
    within = [p["best_val_acc"] for p in curve if p["epochs"] <= epochs]
    return within[-1] if within else None


def anytime_columns(curve: list[dict], budget: int) -> dict[str, float | None]:
    return {f"best_val_{round(f * 100)}": best_within(curve, f * budget) for f in FRACTIONS}


class EpochBudget:
    """A run_study observer: stop once the trials have spent about `budget` epochs, i.e.
    when less than half a trial's epochs are left (the overshoot is under one trial)."""

    def __init__(self, budget: int, epochs_per_trial: int):
        self.budget, self.margin = budget, epochs_per_trial / 2

    def on_start(self, study, budget, finished) -> None:
        pass

    def on_trial(self, study, trial) -> None:
        if trial_epochs(study) > self.budget - self.margin:
            study.stop()


def warm_up(overrides: dict) -> None:
    """Read the data set once before any clock starts (the process caches it), so the first
    arm is not charged for unpacking the archives; a missing data set fails here, early."""
    config = resolve_config(("benchmark", overrides))
    load_data(config, resolve_device(config.device))


def run_untuned(overrides: dict) -> dict:
    """Train the setup phase's configuration once; validate and test that same model."""
    spec = load_study_spec(STUDIES / "setup.yaml")
    config = resolve_config(("studies/setup.yaml: base", spec.base), ("benchmark", overrides))
    device = resolve_device(config.device)
    data = load_data(config, device)
    model, history = fit(config, data, device)
    _, test_acc = evaluate(model, data.test, config, device)
    val_acc = metric_value("best_val_acc", history)
    return {"val_acc": val_acc, "test_acc": test_acc,
            "epochs": len(history), "search_epochs": len(history), "trials": 1,
            "curve": [{"epochs": len(history), "best_val_acc": val_acc}],
            "config": config.to_dict()}


def run_protocol_arm(url: str, overrides: dict, seed: int, trials_scale: float,
                     space: str, studies_dir: Path | None = None) -> dict:
    """Every phase, then the test phase, all stored under the tag `s<seed>`; the phase files
    of `studies_dir` override the installed ones by name (a variant of the protocol)."""
    tag = f"s{seed}"
    outcomes = run_protocol(studies_dir=studies_dir or STUDIES, storage=url,
                            overrides=protocol_overrides(space, overrides),
                            trials_scale=trials_scale, tag=tag)
    ran = [o for o in outcomes if o.status not in ("tested", "blocked")]  # blocked: not stored
    studies = [load_study(url, o.study) for o in ran]
    search = sum(trial_epochs(study) for study in studies)
    choice = records.read_choice(load_study(url, study_name("final", tag)))
    test = outcomes[-1].test
    return {"val_acc": choice.criteria["best_val_acc"], "test_acc": test.test_acc,
            "epochs": search + test.epochs, "search_epochs": search,
            "trials": sum(len(s.trials) for s in studies), "curve": anytime_curve(studies),
            "config": choice.config, "phases": [_phase_row(o, url) for o in ran]}


def _phase_row(outcome, url: str) -> dict:
    """What one phase did and the validation accuracy of the choice it passed on: the
    difference a phase made is read between consecutive rows."""
    choice = records.read_choice(load_study(url, outcome.study)) or records.PhaseChoice(None)
    return {"phase": outcome.phase, "status": outcome.status,
            "kept_baseline": choice.kept_baseline,
            "val_acc": choice.criteria.get("best_val_acc")}


def run_flat_arm(arm: str, url: str, overrides: dict, seed: int, budget: int,
                 space: str) -> dict:
    """One flat study over the joint space until it has spent `budget` epochs; test once."""
    name = f"{arm}@s{seed}"
    epochs_per_trial = overrides.get("epochs")
    spec = flat_spec(arm, seed, space, epochs_per_trial)
    epochs_per_trial = int(epochs_per_trial or spec.base["epochs"])
    run_study(spec, trials=10**6, storage=url, overrides=overrides, name=name,
              observer=EpochBudget(budget, epochs_per_trial))
    study = load_study(url, name)
    choice = records.read_choice(study)
    runtime = {k: v for k, v in overrides.items() if k in ("device", "data_dir")}
    test = run_test(name, url, overrides=runtime)
    search = trial_epochs(study)
    return {"val_acc": choice.criteria["best_val_acc"], "test_acc": test.test_acc,
            "epochs": search + test.epochs, "search_epochs": search,
            "trials": len(study.trials), "curve": anytime_curve([study]),
            "config": choice.config}


def arm_overrides(args, seed: int) -> dict:
    """The settings every arm of one seed runs with: data set, splits, device, seed."""
    # 5% of digits' 1,437 training images is under one batch: the smoke run keeps its splits.
    splits = {} if args.dataset == "digits" else REFERENCE
    overrides = {**splits, "dataset": args.dataset, "data_dir": str(args.data_dir),
                 "device": args.device, "seed": seed}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    return overrides


def check_flat_arms(args) -> None:
    """hpsearch's own check of each flat arm's study (every searched knob must reach the
    model: hpsearch/adapt.py), before anything trains: a refusal after the protocol's hours
    of training would waste them."""
    overrides = arm_overrides(args, args.seeds[0])
    for arm in (a for a in FLAT_ARMS if a in args.arms):
        spec = flat_spec(arm, args.seeds[0], args.space, args.epochs)
        config = resolve_config((f"{spec.file}: base", spec.base), ("benchmark", overrides))
        adapt(spec, config, contract_for(config, f"{spec.file}: base.model"), lambda _: None)


def run_seed(args, url: str, seed: int, on_arm=lambda rows: None) -> list[dict]:
    """The requested arms for one seed; the flat arms' budget is the protocol's epochs.
    `on_arm(rows)` is called after each arm with this seed's rows so far (saved as it goes:
    a run cut short by a time limit keeps the arms it finished)."""
    overrides = arm_overrides(args, seed)
    warm_up(overrides)
    rows, budget = [], args.flat_budget
    for arm in (a for a in ARMS if a in args.arms):
        start = time.perf_counter()
        if arm == "untuned":
            result = run_untuned(overrides)
        elif arm == "protocol":
            result = run_protocol_arm(url, overrides, seed, args.trials_scale, args.space,
                                      args.studies_dir)
            budget = result["search_epochs"]
        else:
            result = run_flat_arm(arm, url, overrides, seed, budget, args.space)
        rows.append({"arm": arm_label(arm, args.studies_dir), "seed": seed,
                     "space": args.space, **result,
                     "wall_s": time.perf_counter() - start})
        print(f"seed {seed} {arm}: " + _row_text(rows[-1]), file=sys.stderr, flush=True)
        # Every arm is read against the same budget, known once the protocol has run.
        for row in rows:
            row.update(budget_epochs=budget, **anytime_columns(row["curve"], budget))
        on_arm(rows)
    return rows


def arm_label(arm: str, studies_dir: Path | None) -> str:
    """`protocol[DIR]` for the protocol run with the phase files of DIR: it is another arm."""
    return f"{arm}[{studies_dir.name}]" if arm == "protocol" and studies_dir else arm


def arms_in(rows: list[dict]) -> list[str]:
    """The arms of `rows`: ARMS' order, then variants in the order they first appear."""
    seen = list(dict.fromkeys(r["arm"] for r in rows))
    return [a for a in ARMS if a in seen] + [a for a in seen if a not in ARMS]


def _row_text(row: dict) -> str:
    return (f"val {row['val_acc']:.4f}, test {row['test_acc']:.4f}, {row['epochs']} epochs "
            f"({row['trials']} trials), {row['wall_s']:.1f} s")


def _mean_std(values: list[float | None], digits: int) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


ANYTIME_KEYS = tuple(f"best_val_{round(f * 100)}" for f in FRACTIONS)
COLUMNS = (("val_acc", 4), ("test_acc", 4), ("epochs", 0), ("wall_s", 0),
           *((key, 4) for key in ANYTIME_KEYS))


def markdown_tables(rows: list[dict], seeds: list[int]) -> str:
    """The summary (mean ± std over seeds) and the per-seed values, as markdown."""
    head = ("| arm | val acc of choice | test acc | epochs | wall (s) | best val @25% | @50% "
            "| @100% |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    summary, per_seed = [head], [head.replace("| arm |", "| arm | seed |").replace(
        "| --- |", "| --- | ---: |", 1)]
    for arm in arms_in(rows):
        mine = [r for r in rows if r["arm"] == arm]
        summary.append(f"| {arm} | " + " | ".join(
            _mean_std([r[k] for r in mine], d) for k, d in COLUMNS) + " |")
        for r in mine:
            per_seed.append(f"| {arm} | {r['seed']} | " + " | ".join(
                _mean_std([r[k]], d) for k, d in COLUMNS) + " |")
    title = f"Mean ± std over seeds {' '.join(map(str, seeds))}:" if len(seeds) > 1 else ""
    return "\n".join([*([title] if title else []), *summary, "", "Per seed:", *per_seed])


def mean_curve(curves: list[list[dict]]) -> tuple[list[int], list[float]]:
    """The seeds' best-so-far curves averaged at every epoch count where one of them moves,
    from the first count at which every seed has a completed trial."""
    xs, ys = [], []
    for x in sorted({p["epochs"] for curve in curves for p in curve}):
        values = [best_within(curve, x) for curve in curves]
        if None not in values:
            xs.append(x)
            ys.append(statistics.fmean(values))
    return xs, ys


# Arms that sample the same first trials (both TPE arms share a seed) overlap at first: the
# wider, paler line stays visible under the narrower one.
LINE_STYLES = {
    "protocol": {"linewidth": 2.2},
    "tpe_median": {"linewidth": 3.2, "alpha": 0.55},
    "tpe_hyperband": {"linewidth": 1.5},
    "random": {"linewidth": 1.5, "linestyle": (0, (5, 2))},
}


def plot_curves(rows: list[dict], path: Path, title: str) -> None:
    """Best validation accuracy so far vs epochs spent, one line per arm (mean over seeds);
    the untuned arm, a single training run, as a dashed horizontal line."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    arms = arms_in(rows)
    all_seeds = {r["seed"] for r in rows}
    lows = []
    for arm in arms:
        mine = [r for r in rows if r["arm"] == arm]
        if arm == "untuned":
            level = statistics.fmean(r["val_acc"] for r in mine)
            ax.axhline(level, color="gray", linestyle="--", label=f"untuned ({level:.4f})")
            lows.append(level)
            continue
        xs, ys = mean_curve([r["curve"] for r in mine])
        if xs:  # an arm some seeds lack (a run cut short) says which seeds it averages
            seeds = sorted(r["seed"] for r in mine)
            label = arm if len(seeds) == len(all_seeds) else (
                f"{arm} (seed{'s' if len(seeds) > 1 else ''} {' '.join(map(str, seeds))})")
            ax.step(xs, ys, where="post", label=label, **LINE_STYLES.get(arm, {}))
            first = [r["best_val_25"] for r in mine if r["best_val_25"] is not None]
            lows.append(statistics.fmean(first) if first else min(ys))
    budget = statistics.fmean(r["budget_epochs"] for r in rows)
    for fraction in FRACTIONS:
        ax.axvline(fraction * budget, color="lightgray", linestyle=":", linewidth=1)
        ax.annotate(f"{fraction:.0%}", (fraction * budget, 1), xycoords=("data", "axes fraction"),
                    xytext=(-3, -12), textcoords="offset points", ha="right", color="gray",
                    fontsize=8)
    if lows:  # the first trials' poor scores would squash the part that matters
        ax.set_ylim(bottom=max(0.0, min(lows) - 0.02))
    ax.set_xlabel("epochs spent (pruned trials count what they ran)\n"
                  "dotted: 25%, 50%, 100% of the protocol's search epochs")
    ax.set_ylabel("best validation accuracy so far")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def device_name(device: str) -> str:
    chosen = resolve_device(device)
    if chosen.type == "cuda":
        return f"{chosen} ({torch.cuda.get_device_name(chosen)})"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials-scale", type=float, default=1.0,
                        help="scale every phase's trial budget (grids keep their size)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="override every arm's epochs per trial (a quick smoke run)")
    parser.add_argument("--dataset", default="mnist",
                        help=f"any data set hpsearch loads ({', '.join(BUILTIN_DATASETS)}); "
                             "digits for a smoke run")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--space", choices=SPACES, default="mlp",
                        help="mlp: the MLP family only; mlp_cnn: the searches also choose "
                             "the family (mlp or cnn)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="a new or empty folder for storage and the data cache (default: "
                             "a fresh temporary folder)")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--studies-dir", type=Path, default=None,
                        help="phase files overriding the installed ones by name (as for "
                             "hpsearch protocol): a variant, reported as protocol[DIR]")
    parser.add_argument("--flat-budget", type=int, default=200,
                        help="the flat arms' epochs when the protocol arm is not run")
    parser.add_argument("--out", type=Path, default=None,
                        help="raw results as JSON (default: benchmark_search_quality.json "
                             "in the work folder)")
    parser.add_argument("--plot", type=Path, default=None,
                        help="the anytime curves as PNG (default: search_quality.png in the "
                             "work folder)")
    parser.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                        help="run nothing: print the tables and draw the plot of earlier runs' "
                             "JSON files together (seeds run in separate processes)")
    return parser.parse_args(argv)


def merge(files: list[Path], plot: Path | None) -> list[dict]:
    """The tables and the plot of several runs' results, as if they had run as one."""
    runs = [json.loads(path.read_text()) for path in files]
    rows = [row for run in runs for row in run["results"]]
    seeds = sorted({row["seed"] for row in rows})
    print(markdown_tables(rows, seeds) + "\n\n" + "; ".join(
        f"`{run['command']}` — {run['device']}, {run['date']}" for run in runs))
    plot = plot or files[0].with_suffix(".png")
    plot_curves(rows, plot, f"Anytime search quality: {runs[0]['dataset']}, space "
                            f"{runs[0]['space']} (mean over seeds {' '.join(map(str, seeds))})")
    print(f"plot: {plot}", file=sys.stderr)
    return rows


def _workdir(given: Path | None) -> Path:
    """A fresh folder: results from an earlier run would be resumed, not measured."""
    if given is None:
        return Path(tempfile.mkdtemp(prefix="hpsearch-search-quality-"))
    given.mkdir(parents=True, exist_ok=True)
    if any(given.iterdir()):
        raise UsageError(f"--workdir {given}: is not empty; fix: name a new or empty folder")
    return given


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark, print the markdown tables, write the JSON and the plot; return the
    raw rows."""
    args = parse_args(argv)
    plot = args.plot.resolve() if args.plot else None
    if args.merge:
        return merge(args.merge, plot)
    args.data_dir = args.data_dir.resolve()
    args.studies_dir = args.studies_dir.resolve() if args.studies_dir else None
    out = args.out.resolve() if args.out else None
    workdir = _workdir(args.workdir).resolve()
    url = f"sqlite:///{workdir / 'benchmark.db'}"
    given = sys.argv[1:] if argv is None else argv
    command = "python benchmarks/search_quality.py " + shlex.join(given)
    started, t0 = dt.datetime.now().astimezone(), time.perf_counter()
    check_flat_arms(args)
    out = out or workdir / "benchmark_search_quality.json"

    def save(rows: list[dict]) -> None:
        out.write_text(json.dumps({"command": command, "device": device_name(args.device),
                                   "dataset": args.dataset, "space": args.space,
                                   "date": started.isoformat(timespec="seconds"),
                                   "workdir": str(workdir), "results": rows}, indent=2))

    cwd = os.getcwd()
    os.chdir(workdir)  # hpsearch caches data sets under ./storage/data
    rows: list[dict] = []
    try:
        for seed in args.seeds:
            done = list(rows)
            rows = done + run_seed(args, url, seed, lambda seed_rows: save(done + seed_rows))
    finally:
        os.chdir(cwd)
    footer = (f"`{command}` — {args.dataset}, space {args.space}, device "
              f"{device_name(args.device)}, {started:%Y-%m-%d %H:%M %Z}, "
              f"total {time.perf_counter() - t0:.0f} s")
    print(markdown_tables(rows, args.seeds) + "\n\n" + footer)
    save(rows)
    plot = plot or workdir / "search_quality.png"
    seeds = " ".join(map(str, args.seeds))
    plot_curves(rows, plot, f"Anytime search quality: {args.dataset}, space {args.space} "
                            f"(mean over seed{'s' if len(args.seeds) > 1 else ''} {seeds})")
    print(f"raw results: {out}\nplot: {plot}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
