"""Reading results: `--tag` and a study file's path wherever a study is named, trials as
CSV/JSON with criteria and chosen/baseline flags, the protocol summary, `best` in words, and
commands that only read answer without importing torch."""

from __future__ import annotations

import json
import subprocess
import sys

import optuna
import pandas as pd
import pytest
from click.testing import CliRunner

import hpsearch
from hpsearch.cli import cli
from hpsearch.phases.protocol import PHASES
from tests.conftest import REPO


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


def selection(url, name):
    return optuna.load_study(study_name=name, storage=url).user_attrs["selection"]


@pytest.mark.parametrize("command", ["best", "trials"])
def test_tag_and_a_study_file_path_name_the_tagged_study(tiny_protocol, command):
    by_tag = invoke(command, "--study", "architecture", "--tag", "t", "--storage", tiny_protocol,
                    "--json")
    by_path = invoke(command, "--study", str(REPO / "studies" / "architecture.yaml"), "--tag",
                     "t", "--storage", tiny_protocol, "--json")
    by_name = invoke(command, "--study", "architecture@t", "--storage", tiny_protocol, "--json")
    assert by_tag.exit_code == 0, by_tag.output
    assert by_tag.output == by_path.output == by_name.output


def test_studies_with_a_tag_shows_the_tagged_run(tiny_protocol):
    rows = {r["study"]: r for r in hpsearch.overview(storage=tiny_protocol, tag="t")}
    assert rows["architecture"]["done"] > 0 and rows["architecture"]["choice"].startswith("trial")
    assert rows["lr_adam"]["done"] == 3 and rows["lr_adam"]["budget"] == 3  # its grid
    untagged = {r["study"]: r for r in hpsearch.overview(storage=tiny_protocol)}
    assert untagged["architecture"]["done"] == 0  # `architecture` itself was never run
    result = invoke("studies", "--tag", "t", "--storage", tiny_protocol)
    assert result.exit_code == 0 and "architecture" in result.output


def test_a_tag_on_a_tagged_name_is_refused(tiny_protocol):
    result = invoke("best", "--study", "architecture@t", "--tag", "other", "--storage",
                    tiny_protocol)
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: study `architecture@t` already names a tag; fix: drop --tag other, or "
        "pass `architecture` with --tag other")


def test_trials_csv_holds_criteria_and_the_chosen_and_baseline_flags(tiny_protocol, tmp_path):
    out = tmp_path / "trials.csv"
    result = invoke("trials", "--study", "batchnorm", "--tag", "t", "--storage", tiny_protocol,
                    "--csv", str(out))
    assert result.exit_code == 0 and result.output.strip() == f"3 trials written to {out}"
    frame = pd.read_csv(out)
    choice = selection(tiny_protocol, "batchnorm@t")
    assert frame.loc[frame.chosen, "trial"].tolist() == [choice["trial"]]
    assert frame.baseline.sum() == 1
    assert {"best_val_acc", "stability", "convergence_epochs", "overfitting_gap",
            "param:norm", "epochs", "reason"} <= set(frame.columns)


def test_trials_json_and_table(tiny_protocol):
    records = json.loads(invoke("trials", "--study", "architecture@t", "--storage", tiny_protocol,
                                "--json").output)
    assert {r["trial"] for r in records} == set(range(len(records)))
    table = invoke("trials", "--study", "architecture@t", "--storage", tiny_protocol).output
    assert "trials of architecture@t" in table and "chosen" in table


def test_summary_has_one_row_per_phase_in_protocol_order(tiny_protocol):
    frame = hpsearch.summary(tiny_protocol, tag="t")
    assert frame.phase.tolist() == list(PHASES)
    by_phase = frame.set_index("phase")
    assert by_phase.loc["architecture", "status"] == "chose"
    assert by_phase.loc["architecture", "trial"] == selection(tiny_protocol, "architecture@t")[
        "trial"]
    assert set(frame.status) <= {"chose", "kept baseline", "skipped", "tested", "no choice",
                                 "not run"}  # 3 epochs: the SGD branch may be eliminated
    assert by_phase.loc["test", "status"] == "tested" and by_phase.loc["test", "test_acc"] > 0.5
    assert by_phase.loc["setup", "trials"] == 2  # the reference, and it augmented
    result = invoke("summary", "--tag", "t", "--storage", tiny_protocol)
    assert result.exit_code == 0 and "protocol summary" in result.output


def test_best_says_its_reason_in_words_and_lists_runners_up_with_parameters(tiny_protocol):
    result = invoke("best", "--study", "architecture", "--tag", "t", "--storage", tiny_protocol)
    choice = selection(tiny_protocol, "architecture@t")
    assert f"protocol choice: trial {choice['trial']}: {choice['why']}" in " ".join(
        result.output.split())
    assert "within 0.5 points of the highest peak validation accuracy" in choice["why"] or (
        choice["why"].startswith("the highest peak validation accuracy decided"))
    assert "runners-up" in result.output and "width" in result.output  # their parameters


def test_the_notebook_api_takes_a_tag_too(tiny_protocol):
    assert hpsearch.best("architecture", tiny_protocol, tag="t").study == "architecture@t"
    assert not hpsearch.trials("architecture", tiny_protocol, tag="t").empty
    assert not hpsearch.curves("architecture", tiny_protocol, tag="t").empty


@pytest.mark.parametrize("command", [["--help"], ["studies"], ["settings"],
                                     ["best", "--study", "architecture@t"],
                                     ["trials", "--study", "architecture@t"],
                                     ["summary", "--tag", "t"]])
def test_commands_that_only_read_do_not_import_torch(tiny_protocol, command):
    """`hpsearch studies` took 5.9 s and 0.7 GB to list YAML files when it imported torch."""
    storage = [] if command[0] in ("--help", "settings") else ["--storage", tiny_protocol]
    code = ("import sys, runpy; sys.argv = ['hpsearch', *sys.argv[1:]]\n"
            "from hpsearch.cli import cli\n"
            "try:\n    cli()\nexcept SystemExit as done:\n    assert not done.code, done.code\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    done = subprocess.run([sys.executable, "-c", code, *command, *storage],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
