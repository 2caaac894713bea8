"""Is one arm's test accuracy above another's, or inside the test set's noise? A paired look.

search_quality.py tests each arm's choice once per seed on the same test split (MNIST and
Fashion-MNIST: 10,000 images). At 84% accuracy one model's accuracy has a standard error of
0.37 points on 10,000 images, but two models scored on the same images share most of that
noise: they differ only on the images one gets right and the other wrong. So the difference
is read image by image (a paired comparison, as McNemar's test reads it): both arms' chosen
configurations are trained again as the test phase trains them (same code, same seed), each
test image scored right or wrong by each, and for d_i = right_A(i) - right_B(i) in {-1, 0, 1}

    difference = mean(d),   its standard error = std(d) / sqrt(n)

(n images). Over k seeds the mean difference has standard error sqrt(sum of the seeds'
squared errors) / k: the seeds are independent runs. This is the test set's sampling noise
only: what another seed of the search would have chosen is read from the per-seed rows.

The retrained accuracy is printed beside the stored one: on the machine that ran the search
they agree to the image; another CPU's floating point moves them (README, "Does the
protocol pay off?"), and then the retrained pair is what the comparison reads.

    python benchmarks/paired_test.py --data-dir ../shared/data \\
        --a docs/results/fashion_mlp_third_machine_s*.json \\
        --b docs/results/fashion_mlp_tpe_third_machine_s*.json [--seeds 0 1] [--out F.json]

--a-arm and --b-arm pick the row of each file (default: the protocol, with or without a
variant, against tpe_median). The data sets are hpsearch's built-in ones, whose test split is
held as tensors (the ones search_quality.py runs on).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import torch

from hpsearch.config import resolve_config
from hpsearch.train import evaluate, fit, load_data, resolve_device

# Test images scored in one forward pass: bounds the memory, changes no result.
IMAGES_AT_ONCE = 1000


def chosen_rows(files: list[Path], arm: str) -> dict[int, dict]:
    """seed -> the result row of `arm` (a variant's `protocol[NAME]` counts as `protocol`)."""
    rows: dict[int, dict] = {}
    for path in files:
        for row in json.loads(path.read_text())["results"]:
            if row["arm"].split("[")[0] == arm:
                rows[row["seed"]] = row
    return rows


def right_or_wrong(row: dict, data_dir: str, device: str) -> tuple[torch.Tensor, float]:
    """The row's chosen configuration trained again; (per test image: 1 right / 0 wrong, the
    test accuracy as the test phase computes it)."""
    runtime = {"data_dir": data_dir, "device": device}
    config = resolve_config(("chosen configuration", row["config"]), ("--set", runtime))
    where = resolve_device(config.device)
    data = load_data(config, where)
    model, _ = fit(config, data, where)
    _, accuracy = evaluate(model, data.test, config, where)
    model.eval()
    x, y = data.test.x.to(where), data.test.y.to(where)
    with torch.no_grad():
        right = torch.cat([model(x[i:i + IMAGES_AT_ONCE]).argmax(1) == y[i:i + IMAGES_AT_ONCE]
                           for i in range(0, len(y), IMAGES_AT_ONCE)])
    return right.float().cpu(), accuracy


def paired(right_a: torch.Tensor, right_b: torch.Tensor) -> dict[str, Any]:
    """The paired difference A - B on the same images and its standard error."""
    d = right_a - right_b
    n = len(d)
    return {"difference": d.mean().item(), "se": d.std(unbiased=False).item() / math.sqrt(n),
            "only_a_right": int((d > 0).sum()), "only_b_right": int((d < 0).sum()),
            "images": n}


def compare_seed(a: dict, b: dict, data_dir: str, device: str) -> dict[str, Any]:
    right_a, retrained_a = right_or_wrong(a, data_dir, device)
    right_b, retrained_b = right_or_wrong(b, data_dir, device)
    for right, accuracy in ((right_a, retrained_a), (right_b, retrained_b)):
        if int(right.sum()) != round(accuracy * len(right)):  # as the test phase scores
            raise RuntimeError("image-by-image scoring disagrees with evaluate()")
    return {"seed": a["seed"], "a_stored": a["test_acc"], "a_retrained": retrained_a,
            "b_stored": b["test_acc"], "b_retrained": retrained_b,
            **paired(right_a, right_b)}


def mean_of_seeds(rows: list[dict]) -> dict[str, float]:
    """The mean difference over seeds; the seeds are independent runs, so the variances
    add: its standard error is sqrt(sum of the seeds' squared errors) / k."""
    k = len(rows)
    return {"difference": sum(r["difference"] for r in rows) / k,
            "se": math.sqrt(sum(r["se"] ** 2 for r in rows)) / k}


def table(rows: list[dict], a: str, b: str) -> str:
    lines = [f"| seed | {a} test (stored / retrained) | {b} test (stored / retrained) "
             f"| {a} - {b} | standard error | only {a} right | only {b} right |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['seed']} | {r['a_stored']:.4f} / {r['a_retrained']:.4f} "
                     f"| {r['b_stored']:.4f} / {r['b_retrained']:.4f} "
                     f"| {100 * r['difference']:+.2f} pts | {100 * r['se']:.2f} pts "
                     f"| {r['only_a_right']} | {r['only_b_right']} |")
    mean = mean_of_seeds(rows)
    lines.append(f"| mean of {len(rows)} | | | {100 * mean['difference']:+.2f} pts "
                 f"| {100 * mean['se']:.2f} pts | | |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", nargs="+", type=Path, required=True, help="result JSON files")
    parser.add_argument("--b", nargs="+", type=Path, required=True, help="result JSON files")
    parser.add_argument("--a-arm", default="protocol")
    parser.add_argument("--b-arm", default="tpe_median")
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="default: every seed both sides have")
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    parser.add_argument("--out", type=Path, default=None, help="the rows as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> list[dict]:
    args = parse_args(argv)
    side_a, side_b = chosen_rows(args.a, args.a_arm), chosen_rows(args.b, args.b_arm)
    seeds = sorted(set(side_a) & set(side_b) & set(args.seeds or side_a))
    if not seeds:
        sys.exit(f"error: no seed has both a `{args.a_arm}` row in --a and a `{args.b_arm}` "
                 "row in --b; fix: name the result files of the same seeds")
    rows = []
    for seed in seeds:
        rows.append(compare_seed(side_a[seed], side_b[seed], str(args.data_dir), args.device))
        print(f"seed {seed}: {100 * rows[-1]['difference']:+.2f} points "
              f"(standard error {100 * rows[-1]['se']:.2f})", flush=True)
    print(table(rows, args.a_arm, args.b_arm))
    if args.out:
        args.out.write_text(json.dumps({"a": [str(p) for p in args.a],
                                        "b": [str(p) for p in args.b], "rows": rows}, indent=1))
    return rows


if __name__ == "__main__":
    main()
