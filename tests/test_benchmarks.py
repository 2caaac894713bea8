"""The benchmark scripts run end to end in their quick modes (digits, tiny budgets)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from tests.conftest import REPO

EPOCHS = 4  # per trial: the fewest at which the LR phases' digits curves are not all "underfitting"


def load_benchmark(name: str):
    path = REPO / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ARMS = ["untuned", "protocol", "tpe_median", "tpe_hyperband", "random"]


def per_seed_rows(table: str) -> dict[str, list[str]]:
    """arm -> its cells after the arm, read from the per-seed rows
    `| arm | seed | val | test | epochs | wall | @25% | @50% | @100% |`."""
    rows = table.split("Per seed:")[1].splitlines()[3:]  # after the header and the rule
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows if row.startswith("| ")]
    return {c[0]: c[1:] for c in cells}


def quick_run(tmp_path, capsys, *arms_and_budget: str) -> tuple[dict, list[dict], Path]:
    """The smoke run of search_quality.py: (per-seed table cells, JSON rows, the PNG)."""
    out, plot = tmp_path / "results.json", tmp_path / "curves.png"
    load_benchmark("search_quality").main([
        "--dataset", "digits", "--seeds", "0", "--trials-scale", "0.1", "--epochs", str(EPOCHS),
        "--device", "cpu", "--workdir", str(tmp_path / "work"), "--out", str(out),
        "--plot", str(plot), *arms_and_budget,
    ])
    printed = capsys.readouterr().out
    assert "| best val @25% | @50% | @100% |" in printed
    rows = per_seed_rows(printed)
    summary = printed.split("Per seed:")[0]
    for arm, cells in rows.items():
        assert f"| {arm} | " in summary
        early, midway, end = (float(c) for c in cells[5:8])  # every arm finished a trial early
        assert 0.0 < early <= midway <= end <= 1.0, arm
    results = json.loads(out.read_text())["results"]
    assert [r["arm"] for r in results] == list(rows)
    for r in results:
        assert 0.0 < r["test_acc"] <= 1.0 and r["wall_s"] > 0
        assert r["best_val_100"] == max(p["best_val_acc"] or 0 for p in r["curve"]
                                        if p["epochs"] <= r["budget_epochs"])
    assert plot.read_bytes()[:8] == PNG_MAGIC
    return rows, results, plot


# Five arms in one run take about a minute on 2 shared CPU cores: the protocol and one
# flat arm run at equal epochs here, the other two flat arms against --flat-budget next.
def test_search_quality_quick_run_compares_the_protocol_at_equal_epochs(tmp_path, capsys):
    rows, results, _ = quick_run(tmp_path, capsys, "--arms", "untuned", "protocol", "tpe_median")
    assert list(rows) == ARMS[:3]
    assert int(rows["untuned"][3]) == EPOCHS
    # Equal search epochs, to within one trial (the test retraining runs the chosen
    # configuration's epochs, which a protocol phase may have lengthened).
    search = {r["arm"]: r["search_epochs"] for r in results}
    assert abs(search["tpe_median"] - search["protocol"]) <= EPOCHS, search
    protocol = results[1]
    assert protocol["curve"][-1]["epochs"] == protocol["search_epochs"] == protocol["budget_epochs"]
    assert all(r["budget_epochs"] == protocol["search_epochs"] for r in results)


def test_search_quality_quick_run_hyperband_and_random_spend_the_flat_budget(tmp_path, capsys):
    budget = 6 * EPOCHS
    rows, results, _ = quick_run(tmp_path, capsys, "--arms", "tpe_hyperband", "random",
                                 "--flat-budget", str(budget))
    assert list(rows) == ARMS[3:]
    for r in results:
        assert r["budget_epochs"] == budget
        assert abs(r["search_epochs"] - budget) <= EPOCHS, r["arm"]


def test_search_quality_merges_runs_made_apart(tmp_path, capsys):
    search_quality = load_benchmark("search_quality")
    files = []
    for seed in (0, 1):  # two tiny runs, as two processes would leave them
        rows = [{"arm": "random", "seed": seed, "space": "mlp", "val_acc": 0.9 + seed / 100,
                 "test_acc": 0.8, "epochs": 10, "search_epochs": 8, "trials": 2, "wall_s": 1.0,
                 "budget_epochs": 8, "best_val_25": 0.5, "best_val_50": 0.6, "best_val_100": 0.9,
                 "curve": [{"epochs": 4, "best_val_acc": 0.6}, {"epochs": 8, "best_val_acc": 0.9}]}]
        files.append(tmp_path / f"s{seed}.json")
        files[-1].write_text(json.dumps({"command": f"run {seed}", "device": "cpu",
                                         "date": "today", "dataset": "digits", "space": "mlp",
                                         "results": rows}))
    merged = search_quality.main(["--merge", *map(str, files), "--plot", str(tmp_path / "m.png")])
    printed = capsys.readouterr().out
    assert [r["seed"] for r in merged] == [0, 1]
    assert "Mean ± std over seeds 0 1:" in printed and "| random | 0.9050 ± 0.0071 |" in printed
    assert (tmp_path / "m.png").read_bytes()[:8] == PNG_MAGIC


def test_search_quality_keeps_the_arms_it_finished_when_a_later_arm_is_cut_short(
        tmp_path, monkeypatch):
    """A run under a time limit (a lent GPU's minutes) keeps what it measured: the JSON is
    written after every arm, not only at the end."""
    search_quality = load_benchmark("search_quality")

    def cut_short(*args, **kwargs):
        raise KeyboardInterrupt  # what `timeout` or Ctrl-C does to the flat arm

    monkeypatch.setattr(search_quality, "run_flat_arm", cut_short)
    out = tmp_path / "partial.json"
    with pytest.raises(KeyboardInterrupt):
        search_quality.main(["--dataset", "digits", "--seeds", "0", "--epochs", "2",
                             "--device", "cpu", "--arms", "untuned", "tpe_median",
                             "--workdir", str(tmp_path / "work"), "--out", str(out)])
    (row,) = json.loads(out.read_text())["results"]
    assert row["arm"] == "untuned" and 0.0 < row["test_acc"] <= 1.0
    assert row["best_val_100"] == row["val_acc"]  # read against the budget known so far


def test_search_quality_reads_a_trials_validation_peak_from_its_history_without_criteria():
    """A trial cut short before its criteria were stored still has its epochs' records."""
    import optuna

    from hpsearch import records

    search_quality = load_benchmark("search_quality")
    trial = optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED, value=None,
                                      intermediate_values={0: 0.5, 1: 0.7})
    trial.set_user_attr(records.HISTORY, [{"epoch": 1, "val_acc": 0.5},
                                          {"epoch": 2, "val_acc": 0.7},
                                          {"epoch": 3, "val_acc": None}])
    assert search_quality.trial_val_acc(trial) == 0.7


def test_search_quality_mlp_cnn_space_lets_the_flat_search_choose_the_family():
    search_quality = load_benchmark("search_quality")
    spec = search_quality.flat_spec("tpe_hyperband", seed=0, space="mlp_cnn", epochs=7)
    space = spec.space.distributions()
    assert set(space["model"].choices) == {"mlp", "cnn"}
    for knob in ("conv_blocks", "conv_width", "first_pool", "head", "conv_norm"):
        assert f"{knob}[cnn]" in space
    for knob in ("depth", "width", "norm"):
        assert f"{knob}[mlp]" in space
    assert "model" not in spec.base and "depth" not in spec.base
    assert spec.pruner.name == "hyperband"
    assert spec.pruner.args == {"min_resource": 1, "max_resource": 7, "reduction_factor": 3}
    mlp_only = search_quality.flat_spec("random", seed=0, space="mlp").space.distributions()
    assert "model" not in mlp_only and not any(k.startswith("conv_") for k in mlp_only)


def quick_args(search_quality, space: str):
    return search_quality.parse_args(["--dataset", "digits", "--seeds", "0", "--epochs", "2",
                                      "--device", "cpu", "--space", space])


def test_search_quality_mlp_flat_arms_pass_hpsearchs_checks():
    search_quality = load_benchmark("search_quality")
    search_quality.check_flat_arms(quick_args(search_quality, "mlp"))


def test_search_quality_mlp_cnn_flat_arms_pass_hpsearchs_checks():
    search_quality = load_benchmark("search_quality")
    search_quality.check_flat_arms(quick_args(search_quality, "mlp_cnn"))


def test_search_quality_mlp_space_pins_the_protocols_family():
    search_quality = load_benchmark("search_quality")
    assert search_quality.protocol_overrides("mlp", {"seed": 1}) == {"seed": 1, "model": "mlp"}
    assert search_quality.protocol_overrides("mlp_cnn", {"seed": 1}) == {"seed": 1}


VARIANTS = sorted((REPO / "benchmarks" / "variants").glob("*/*.yaml"))


@pytest.mark.parametrize("path", VARIANTS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_benchmark_variants_are_valid_phase_files_overriding_an_installed_phase(path):
    """A variant (`--studies-dir benchmarks/variants/NAME`) the README reports on must still
    load, and override a phase of the protocol by name, as it did when it was measured."""
    from hpsearch.phases.protocol import PHASES
    from hpsearch.spec import load_study_spec

    spec = load_study_spec(path)
    installed = load_study_spec(REPO / "studies" / path.name)
    assert path.stem in PHASES and spec.phase == installed.phase


def test_the_seed_noise_study_loads_and_varies_only_the_seed():
    from hpsearch.spec import load_study_spec

    spec = load_study_spec(REPO / "benchmarks" / "seed_noise.yaml")
    assert [p.name for p in spec.space.params] == ["seed"] and spec.space.grid_size() == 6


def test_benchmark_variants_exist():
    assert {p.parent.name for p in VARIANTS} >= {"optimizer_lr_redo", "tolerance_noise",
                                                 "architecture_lr", "regularization_always"}


def test_trial_overhead_prints_both_arms_and_the_ratio(capsys):
    load_benchmark("trial_overhead").main(["--epochs", "2", "--trials", "2", "--rounds", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("train() alone") and lines[1].endswith("s/trial")
    assert lines[2].startswith("run_study (Optuna, storage)")
    assert lines[3].startswith("overhead: ")
    mean = re.search(r"mean ([+-][\d.]+)% \+/- ([\d.]+) points", lines[3])  # 2 rounds: an error
    assert mean is not None and float(mean.group(2)) >= 0
    statements = float(lines[4].split()[2])  # counted by SQLAlchemy, not timed
    assert lines[4].startswith("SQL statements: ") and 20 < statements < 500
    assert lines[5].startswith("inside the same trials: training's own work ")


def test_trial_overhead_splits_each_trial_into_the_trainings_own_work_and_the_rest(
        tmp_path, monkeypatch):
    """The same trials timed by part: the time inside the objective's train() minus its
    epoch hook (the reports and pruning checks, hpsearch's cost) and the rest of the stored
    window. An epoch report made slow on purpose lands in the rest, not in the training;
    the objective's train is its own again after."""
    import hpsearch.objective
    import hpsearch.reports

    benchmark = load_benchmark("trial_overhead")
    report, train = hpsearch.reports.EpochReports.report, hpsearch.objective.train
    slow = 0.05  # seconds added to each epoch's report: 2 epochs, 2 trials

    def slow_report(self, step, value):
        time.sleep(slow)
        report(self, step, value)

    train_seconds = []  # each train() call whole, its epoch hook included

    def timed_train(*args, **kwargs):
        start = time.perf_counter()
        try:
            return train(*args, **kwargs)
        finally:
            train_seconds.append(time.perf_counter() - start)

    monkeypatch.setattr(hpsearch.reports.EpochReports, "report", slow_report)
    monkeypatch.setattr(hpsearch.objective, "train", timed_train)
    settings = {"dataset": "digits", "epochs": 2, "data_dir": str(tmp_path), "device": "cpu"}
    benchmark.study_seconds(settings, 1, tmp_path)  # creates the study
    train_seconds.clear()
    clock = benchmark.TrainingClock()
    per_trial = benchmark.study_seconds(settings, 2, tmp_path, clock=clock)
    assert hpsearch.objective.train is timed_train  # the clock's own wrapper is gone
    assert len(train_seconds) == 2
    slept = 2 * 2 * slow
    assert 0 < clock.seconds <= sum(train_seconds) - slept + 0.01
    assert per_trial * 2 - clock.seconds >= slept  # the rest holds the slow reports


def test_trial_overhead_on_a_long_study_adds_finished_copies_that_no_trial_repeats(
        capsys, monkeypatch):
    """--stored N: the study holds N finished trials before the rounds, each under its own
    seed, so the timed trials train (none is a repeat) and are never pruned."""
    benchmark = load_benchmark("trial_overhead")
    timed = []
    study_seconds = benchmark.study_seconds

    def spy(settings, trials, folder, counter=None, url=None, clock=None):
        seconds = study_seconds(settings, trials, folder, counter, url, clock)
        timed.append(optuna.load_study(study_name="overhead",
                                       storage=url or f"sqlite:///{folder / 'overhead.db'}"))
        return seconds

    monkeypatch.setattr(benchmark, "study_seconds", spy)
    benchmark.main(["--epochs", "2", "--trials", "2", "--rounds", "1", "--stored", "5"])
    assert capsys.readouterr().out.splitlines()[0].endswith(", 5 trials stored before")
    trials = timed[-1].trials
    assert len(trials) == 1 + 5 + 2  # the warm-up, its copies, the round's trials
    seeds = [t.user_attrs["config"]["seed"] for t in trials]
    assert len(set(seeds)) == len(seeds)
    assert [t.state for t in trials[-2:]] == [optuna.trial.TrialState.COMPLETE] * 2
    assert all("repeats" not in t.user_attrs and len(t.intermediate_values) == 2
               for t in trials[-2:])  # trained, every epoch reported


@pytest.mark.postgres
def test_trial_overhead_runs_on_postgresql_and_drops_its_database(capsys):
    import sqlalchemy

    from tests.conftest import postgres_admin_url

    admin = postgres_admin_url()
    load_benchmark("trial_overhead").main(["--epochs", "2", "--trials", "2", "--rounds", "1",
                                           "--postgres", admin])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("PostgreSQL") and lines[3].startswith("overhead: ")
    engine = sqlalchemy.create_engine(admin)
    with engine.connect() as connection:
        left = connection.exec_driver_sql(
            "SELECT count(*) FROM pg_database WHERE starts_with(datname, 'hpsearch_bench_')").scalar()
    engine.dispose()
    assert left == 0


def _storage_rows(*args: str) -> list[list[str]]:
    """The benchmark run as a script: its workers are spawned processes that import it."""
    printed = subprocess.run([sys.executable, str(REPO / "benchmarks" / "storage_overhead.py"),
                              *args], capture_output=True, text=True, check=True,
                             timeout=600).stdout
    return [line.split() for line in printed.splitlines()[2:] if line.strip()]


@pytest.mark.postgres
def test_storage_overhead_prints_both_arms_side_by_side_and_drops_its_databases():
    import sqlalchemy

    from tests.conftest import postgres_admin_url

    admin = postgres_admin_url()
    rows = _storage_rows("--trials-per-worker", "2", "--epochs", "2", "--workers", "1",
                         "--postgres-workers", "2", "--postgres", admin, "--durable")
    assert [(r[0], r[1], r[2]) for r in rows] == [
        ("SQLite", "1", "plain"), ("SQLite", "1", "hpsearch"),
        ("PostgreSQL", "2", "plain"), ("PostgreSQL", "2", "hpsearch"),
        ("PostgreSQL", "2", "durable")]
    for row in rows:
        assert float(row[3]) > 0 and float(row[5]) > 0  # ms/trial and trials/s measured
    assert all(float(r[6]) > 0 for r in rows if r[2] != "plain")  # the ratio
    engine = sqlalchemy.create_engine(admin)
    with engine.connect() as connection:  # each row's database was dropped
        left = connection.exec_driver_sql(
            "SELECT count(*) FROM pg_database WHERE starts_with(datname, 'hpsearch_bench_')").scalar()
    engine.dispose()
    assert left == 0


def test_storage_overhead_repeats_a_row_and_prints_its_median_with_the_range():
    rows = _storage_rows("--trials-per-worker", "2", "--epochs", "2", "--workers", "1",
                         "--repeats", "3", "--postgres", "")  # SQLite's rows alone
    assert [(r[0], r[1], r[2]) for r in rows] == [("SQLite", "1", "plain"),
                                                  ("SQLite", "1", "hpsearch")]
    for row in rows:
        low, high = (float(x) for x in row[-1].split("-"))
        assert low <= float(row[4]) <= high  # the median run's ms/epoch, within the runs'


def test_worker_scaling_prints_trials_per_second_against_one_job(capsys):
    load_benchmark("worker_scaling").main(["--jobs", "1", "--trials", "2", "--epochs", "1",
                                           "--no-every-core"])
    (row,) = [line.split() for line in capsys.readouterr().out.splitlines()[2:]]
    assert row[:2] == ["SQLite", "1"] and row[-1] == "1.00x"
    assert float(row[-2]) > 0  # trials/s measured from storage


def test_heartbeat_overhead_prints_both_heartbeats_side_by_side(capsys):
    load_benchmark("heartbeat_overhead").main(["--trials", "3", "--rounds", "2",
                                               "--trial-ms", "5", "--busy", "1"])
    lines = capsys.readouterr().out.splitlines()
    assert "1 other processes busy" in lines[0]
    assert lines[1].startswith("Optuna's thread a trial") and "ms a trial" in lines[1]
    assert lines[2].startswith("hpsearch's thread a process") and "ms a trial" in lines[2]
    for line in lines[1:3]:  # a median and its range, in ms
        median, low, high = (float(x) for x in re.findall(r"\d+\.\d+", line))
        assert 0 <= low <= median <= high


def test_paired_test_reads_the_difference_from_the_images_the_two_models_disagree_on():
    paired_test = load_benchmark("paired_test")
    import torch

    right_a = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 0.0])
    right_b = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 1.0])  # A alone right on 2, B alone on 1
    result = paired_test.paired(right_a, right_b)
    assert result["difference"] == pytest.approx(1 / 6)
    # d = (0, 1, 1, 0, 0, -1): std sqrt(1/2 - 1/36), over sqrt(6) images
    assert result["se"] == pytest.approx((0.5 - 1 / 36) ** 0.5 / 6 ** 0.5)
    assert (result["only_a_right"], result["only_b_right"], result["images"]) == (2, 1, 6)
    mean = paired_test.mean_of_seeds([{"difference": 0.01, "se": 0.003},
                                      {"difference": -0.002, "se": 0.004}])
    assert mean == pytest.approx({"difference": 0.004, "se": 0.0025})


def test_paired_test_retrains_both_choices_and_finds_one_configuration_equal_to_itself(
        tmp_path, capsys):
    """End to end on digits: a variant's protocol row against a flat row of the same
    configuration: retrained alike, image for image, so the difference is zero."""
    paired_test = load_benchmark("paired_test")
    config = {"dataset": "digits", "epochs": 2, "seed": 0, "device": "cpu"}
    protocol, flat = tmp_path / "protocol.json", tmp_path / "flat.json"
    protocol.write_text(json.dumps({"results": [
        {"arm": "untuned", "seed": 0, "config": config, "test_acc": 0.5},
        {"arm": "protocol[joint_final]", "seed": 0, "config": config, "test_acc": 0.9}]}))
    flat.write_text(json.dumps({"results": [
        {"arm": "tpe_median", "seed": 0, "config": config, "test_acc": 0.8}]}))
    rows = paired_test.main(["--a", str(protocol), "--b", str(flat), "--out",
                             str(tmp_path / "paired.json")])
    assert [row["seed"] for row in rows] == [0]
    row = rows[0]
    assert (row["a_stored"], row["b_stored"]) == (0.9, 0.8)  # the variant's row, not untuned
    assert row["a_retrained"] == row["b_retrained"] > 0.5
    assert (row["difference"], row["se"], row["only_a_right"]) == (0, 0, 0)
    assert "| mean of 1 | | | +0.00 pts | 0.00 pts |" in capsys.readouterr().out
    assert json.loads((tmp_path / "paired.json").read_text())["rows"] == rows


def test_paired_test_refuses_files_without_a_common_seed(tmp_path):
    paired_test = load_benchmark("paired_test")
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"results": [{"arm": "protocol", "seed": 0, "config": {},
                                            "test_acc": 0.9}]}))
    with pytest.raises(SystemExit, match="no seed has both"):
        paired_test.main(["--a", str(one), "--b", str(one)])
