"""The benchmark scripts run end to end in their quick modes (digits, tiny budgets)."""

from __future__ import annotations

import importlib.util
import json

from tests.conftest import REPO

EPOCHS = 4  # per trial: the fewest at which the LR phases' digits curves are not all "underfitting"


def load_benchmark(name: str):
    path = REPO / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def per_seed_epochs(table: str) -> dict[str, int]:
    """arm -> epochs, read from the per-seed rows `| arm | seed | val | test | epochs | wall |`."""
    rows = table.split("Per seed:")[1].splitlines()[3:]  # after the header and the rule
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows if row.startswith("| ")]
    return {c[0]: int(c[4]) for c in cells}


def test_search_quality_quick_run_compares_three_arms_at_equal_epochs(tmp_path, capsys):
    out = tmp_path / "results.json"
    search_quality = load_benchmark("search_quality")
    search_quality.main([
        "--dataset", "digits", "--seeds", "0", "--trials-scale", "0.1", "--epochs", str(EPOCHS),
        "--device", "cpu", "--workdir", str(tmp_path / "work"), "--out", str(out),
    ])
    printed = capsys.readouterr().out
    epochs = per_seed_epochs(printed)
    assert list(epochs) == ["untuned", "protocol", "flat"]
    assert epochs["untuned"] == EPOCHS
    assert abs(epochs["flat"] - epochs["protocol"]) <= EPOCHS
    summary = printed.split("Per seed:")[0]
    for arm in ("untuned", "protocol", "flat"):
        assert f"| {arm} | " in summary
    results = json.loads(out.read_text())["results"]
    assert {r["arm"] for r in results} == {"untuned", "protocol", "flat"}
    assert all(0.0 < r["test_acc"] <= 1.0 and r["wall_s"] > 0 for r in results)


def test_trial_overhead_prints_both_arms_and_the_ratio(capsys):
    load_benchmark("trial_overhead").main(["--epochs", "2", "--trials", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("train() alone") and lines[1].endswith("s/trial")
    assert lines[2].startswith("run_study (Optuna, storage)")
    assert lines[3].startswith("overhead: ")
