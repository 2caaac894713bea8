"""Search quality: the phase-by-phase protocol vs one flat TPE search, for the same epochs.

The claim: tuning one phase at a time (PROTOCOL.md) finds a better configuration than a flat
search over the same knobs given the same compute. Measured on the reference setting [001]:
MNIST, 5% of the official train split for training, the other 95% for validation, the
official test set held out and used once per arm. Three arms per seed:

  untuned   the setup phase's configuration (MLP 3x100, Adam 1e-3, batch 300, 20 epochs),
            trained once; its test accuracy is that same model's.
  protocol  every phase with its file's trial budget (times --trials-scale), then the test
            phase; epochs = every epoch of every trial of every phase (pruned trials count
            what they ran; the setup checks' few steps do not) + the test retraining.
  flat      ONE TPE study over the joint space of the phases (median pruner, 5 startup
            trials, no verdict before epoch 5), stopped when its trials have spent the
            protocol's search epochs (to within half a trial), then tested the same way.

The seed is the training seed (`seed=N`) of every arm and the flat study's sampler seed.
Everything is written under a fresh work folder (SQLite storage, the data cache).

    python benchmarks/search_quality.py --data-dir ../shared/data [--seeds 0 1 2] [--device cuda]
    python benchmarks/search_quality.py --dataset digits --seeds 0 --trials-scale 0.1 --epochs 4

The second line is the quick smoke run (digits keeps its own splits: 5% of it is under one
batch; at 3 epochs every SGD learning rate reads as underfitting and the protocol stops).
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

import torch

from hpsearch.config import resolve_config
from hpsearch.errors import UsageError
from hpsearch.metrics import metric_value
from hpsearch.preparation import stored_name_function
from hpsearch.protocol.run import PHASES, run_protocol
from hpsearch.protocol.test_phase import run_test
from hpsearch.results import load_study
from hpsearch.runner import run_study
from hpsearch.spec import load_study_spec, parse_study_spec
from hpsearch.train import evaluate, fit, load_data, resolve_device

REPO = Path(__file__).resolve().parents[1]
STUDIES = REPO / "studies"
ARMS = ("untuned", "protocol", "flat")
REFERENCE = {"train_fraction": 0.05, "val_fraction": 0.95}  # [001]: 5% train, 95% validation
LOG_RANGE = {"type": "float", "log": True}

# The flat arm's space: the main knobs of every phase file, searched jointly. Ranges as in
# studies/optimizer.yaml, architecture.yaml (mlp), regularization.yaml, batchnorm.yaml and
# scheduler.yaml, with "none" added where a phase may keep the inherited setting. A setting
# is searched in one place only, so weight decay is the `l2` regularizer's (1e-5..1e-2, which
# covers AdamW's 1e-4..1e-2; decoupled when the optimizer is AdamW). The optimizer_options
# phase's fine knobs (betas, Nesterov, RMSprop) are left out: they only widen the space.
REGULARIZERS = {
    "l1": {"l1": {**LOG_RANGE, "low": 1.0e-6, "high": 1.0e-3}},
    "l2": {"weight_decay": {**LOG_RANGE, "low": 1.0e-5, "high": 1.0e-2}},
    "dropout": {"dropout": {"type": "float", "low": 0.1, "high": 0.5}},
    "label_smoothing": {"label_smoothing": {"type": "float", "low": 0.01, "high": 0.2}},
    "noise": {"augment": "noise", "noise_std": {"type": "float", "low": 0.05, "high": 0.5}},
}
SCHEDULERS = {
    "step": {"step_size": {"type": "int", "low": 5, "high": 15},
             "gamma": {"type": "float", "low": 0.1, "high": 0.5}},
    "exponential": {"gamma": {"type": "float", "low": 0.8, "high": 0.99}},
    "polynomial": {"power": {"type": "float", "low": 0.5, "high": 2.0}},
}
FLAT_SPACE = {
    "optimizer": {"choices": ["sgd", "adam", "adamw"], "when": {
        "sgd": {"lr": {**LOG_RANGE, "low": 3.0e-3, "high": 1.0e-1},
                "momentum": {"type": "float", "low": 0.8, "high": 0.99}},
        "adam": {"lr": {**LOG_RANGE, "low": 1.0e-4, "high": 3.0e-3}},
        "adamw": {"lr": {**LOG_RANGE, "low": 1.0e-4, "high": 3.0e-3}},
    }},
    "depth": {"type": "int", "low": 1, "high": 4},
    "width": {"choices": [50, 100, 200, 400]},
    "regularizer": {"choices": ["none", *REGULARIZERS], "when": REGULARIZERS},
    "norm": {"choices": ["none", "batch", "layer"]},
    "scheduler": {"choices": ["none", "cosine", *SCHEDULERS], "when": SCHEDULERS},
    "warmup_epochs": {"type": "float", "low": 0.0, "high": 3.0},
}


def flat_spec(seed: int):
    """The flat arm's study: the setup phase's base, the joint space, TPE, median pruner."""
    setup = load_study_spec(STUDIES / "setup.yaml").base
    data = {
        "description": "Flat TPE over every phase's knobs (benchmarks/search_quality.py)",
        "base": {k: v for k, v in setup.items() if k not in FLAT_SPACE},
        "objective": {"metric": "best_val_acc", "direction": "maximize"},
        "sampler": {"name": "tpe", "seed": seed},
        "pruner": {"name": "median", "n_startup_trials": 5, "n_warmup_steps": 5},
        "space": FLAT_SPACE,
    }
    return parse_study_spec(data, "<flat search>", name="flat")


def trial_epochs(study) -> int:
    """Epochs every trial of `study` ran (pruned and failed trials: the epochs they ran)."""
    return sum(len(t.user_attrs.get("history", [])) for t in study.get_trials(deepcopy=False))


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
    return {"val_acc": metric_value("best_val_acc", history), "test_acc": test_acc,
            "epochs": len(history), "search_epochs": len(history), "trials": 1,
            "config": config.to_dict()}


def run_protocol_arm(url: str, overrides: dict, seed: int, trials_scale: float) -> dict:
    """Every phase, then the test phase, all stored under the tag `s<seed>`."""
    tag = f"s{seed}"
    outcomes = run_protocol(studies_dir=STUDIES, storage=url, overrides=overrides,
                            trials_scale=trials_scale, tag=tag)
    named = stored_name_function(tag)
    studies = [load_study(named(phase), url) for phase in PHASES if phase != "test"]
    search = sum(trial_epochs(study) for study in studies)
    choice = load_study(named("scheduler"), url).user_attrs["selection"]
    test = outcomes[-1].test
    return {"val_acc": choice["criteria"]["best_val_acc"], "test_acc": test["test_acc"],
            "epochs": search + test["epochs"], "search_epochs": search,
            "trials": sum(len(s.trials) for s in studies), "config": choice["config"]}


def run_flat_arm(url: str, overrides: dict, seed: int, budget: int) -> dict:
    """One TPE study over the joint space until it has spent `budget` epochs; test once."""
    name = f"flat@s{seed}"
    spec = flat_spec(seed)
    epochs_per_trial = int(overrides.get("epochs", spec.base["epochs"]))
    run_study(spec, trials=10**6, storage=url, overrides=overrides, name=name,
              observer=EpochBudget(budget, epochs_per_trial))
    study = load_study(name, url)
    choice = study.user_attrs["selection"]
    runtime = {k: v for k, v in overrides.items() if k in ("device", "data_dir")}
    test = run_test(name, url, overrides=runtime)
    search = trial_epochs(study)
    return {"val_acc": choice["criteria"]["best_val_acc"], "test_acc": test["test_acc"],
            "epochs": search + test["epochs"], "search_epochs": search,
            "trials": len(study.trials), "config": choice["config"]}


def run_seed(args, url: str, seed: int) -> list[dict]:
    """The requested arms for one seed; the flat arm's budget is the protocol's epochs."""
    # 5% of digits' 1,437 training images is under one batch: the smoke run keeps its splits.
    splits = {} if args.dataset == "digits" else REFERENCE
    overrides = {**splits, "dataset": args.dataset, "data_dir": str(args.data_dir),
                 "device": args.device, "seed": seed}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    warm_up(overrides)
    rows, budget = [], None
    for arm in (a for a in ARMS if a in args.arms):
        start = time.perf_counter()
        if arm == "untuned":
            result = run_untuned(overrides)
        elif arm == "protocol":
            result = run_protocol_arm(url, overrides, seed, args.trials_scale)
            budget = result["search_epochs"]
        else:
            result = run_flat_arm(url, overrides, seed, budget or args.flat_budget)
        rows.append({"arm": arm, "seed": seed, **result, "wall_s": time.perf_counter() - start})
        print(f"seed {seed} {arm}: " + _row_text(rows[-1]), file=sys.stderr, flush=True)
    return rows


def _row_text(row: dict) -> str:
    return (f"val {row['val_acc']:.4f}, test {row['test_acc']:.4f}, {row['epochs']} epochs "
            f"({row['trials']} trials), {row['wall_s']:.1f} s")


def _mean_std(values: list[float], digits: int) -> str:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def markdown_tables(rows: list[dict], seeds: list[int]) -> str:
    """The summary (mean ± std over seeds) and the per-seed values, as markdown."""
    head = ("| arm | val acc of choice | test acc | epochs | wall (s) |\n"
            "| --- | ---: | ---: | ---: | ---: |")
    summary, per_seed = [head], [head.replace("| arm |", "| arm | seed |").replace(
        "| --- |", "| --- | ---: |", 1)]
    for arm in (a for a in ARMS if any(r["arm"] == a for r in rows)):
        mine = [r for r in rows if r["arm"] == arm]
        cells = [_mean_std([r[k] for r in mine], d) for k, d in
                 (("val_acc", 4), ("test_acc", 4), ("epochs", 0), ("wall_s", 0))]
        summary.append(f"| {arm} | " + " | ".join(cells) + " |")
        for r in mine:
            per_seed.append(f"| {arm} | {r['seed']} | {r['val_acc']:.4f} | {r['test_acc']:.4f} "
                            f"| {r['epochs']} | {r['wall_s']:.0f} |")
    title = f"Mean ± std over seeds {' '.join(map(str, seeds))}:" if len(seeds) > 1 else ""
    return "\n".join([*([title] if title else []), *summary, "", "Per seed:", *per_seed])


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
    parser.add_argument("--dataset", default="mnist", help="mnist, or digits for a smoke run")
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="a new or empty folder for storage and the data cache (default: "
                             "a fresh temporary folder)")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--flat-budget", type=int, default=200,
                        help="the flat arm's epochs when the protocol arm is not run")
    parser.add_argument("--out", type=Path, default=None,
                        help="raw results as JSON (default: benchmark_search_quality.json "
                             "in the work folder)")
    return parser.parse_args(argv)


def _workdir(given: Path | None) -> Path:
    """A fresh folder: results from an earlier run would be resumed, not measured."""
    if given is None:
        return Path(tempfile.mkdtemp(prefix="hpsearch-search-quality-"))
    given.mkdir(parents=True, exist_ok=True)
    if any(given.iterdir()):
        raise UsageError(f"--workdir {given}: is not empty; fix: name a new or empty folder")
    return given


def main(argv: list[str] | None = None) -> list[dict]:
    """Run the benchmark, print the markdown tables, write the JSON; return the raw rows."""
    args = parse_args(argv)
    args.data_dir = args.data_dir.resolve()
    out = args.out.resolve() if args.out else None
    workdir = _workdir(args.workdir).resolve()
    os.chdir(workdir)  # hpsearch caches data sets under ./storage/data
    url = f"sqlite:///{workdir / 'benchmark.db'}"
    given = sys.argv[1:] if argv is None else argv
    command = "python benchmarks/search_quality.py " + shlex.join(given)
    started, t0 = dt.datetime.now().astimezone(), time.perf_counter()
    rows = [row for seed in args.seeds for row in run_seed(args, url, seed)]
    footer = (f"`{command}` — {args.dataset}, device {device_name(args.device)}, "
              f"{started:%Y-%m-%d %H:%M %Z}, total {time.perf_counter() - t0:.0f} s")
    print(markdown_tables(rows, args.seeds) + "\n\n" + footer)
    out = out or workdir / "benchmark_search_quality.json"
    out.write_text(json.dumps({"command": command, "device": device_name(args.device),
                               "date": started.isoformat(timespec="seconds"),
                               "workdir": str(workdir), "results": rows}, indent=2))
    print(f"raw results: {out}", file=sys.stderr)
    return rows


if __name__ == "__main__":
    main()
