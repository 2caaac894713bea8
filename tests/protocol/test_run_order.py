"""The protocol runs a phase after every phase it inherits from, so a studies folder may
rewire the chain (the `batchnorm_first` variant: BatchNorm chosen before the architecture)."""

from __future__ import annotations

import shutil

import optuna
import pytest
from click.testing import CliRunner

from hpsearch.cli import cli
from hpsearch.errors import UsageError
from hpsearch.phases.protocol import PHASES, run_order, run_protocol
from hpsearch.spec import find_study_file, load_study_spec
from tests.conftest import REPO

STUDIES = REPO / "studies"
VARIANT = REPO / "benchmarks" / "variants" / "batchnorm_first"


def specs_in(folder):
    """The protocol's phase files, those in `folder` overriding the installed ones."""
    return [load_study_spec(find_study_file(phase, folder)) for phase in PHASES]


def test_the_installed_phases_run_in_protocol_order():
    assert [spec.name for spec in run_order(specs_in(STUDIES))] == list(PHASES)


def test_a_rewired_phase_runs_after_the_phase_it_now_inherits():
    order = [spec.name for spec in run_order(specs_in(VARIANT))]
    assert order.index("batchnorm") < order.index("architecture") < order.index("regularization")
    assert order.index("regularization") < order.index("optimizer")
    # everything else keeps the protocol's order
    rest = [name for name in order if name not in ("batchnorm", "architecture")]
    assert rest == [name for name in PHASES if name not in ("batchnorm", "architecture")]


def test_phases_that_inherit_from_each_other_in_a_cycle_are_refused(tmp_path):
    shutil.copy(STUDIES / "architecture.yaml", tmp_path)
    text = (tmp_path / "architecture.yaml").read_text()
    (tmp_path / "architecture.yaml").write_text(
        text.replace("inherits: [lr_adam_refine]", "inherits: [regularization]"))
    with pytest.raises(UsageError) as refused:
        run_order(specs_in(tmp_path))
    message = str(refused.value)
    assert "cycle" in message and "architecture.yaml" in message and "regularization" in message


def test_a_cycle_stops_the_command_before_anything_is_stored(tmp_path, monkeypatch):
    (tmp_path / "studies").mkdir()
    text = (STUDIES / "architecture.yaml").read_text()
    (tmp_path / "studies" / "architecture.yaml").write_text(
        text.replace("inherits: [lr_adam_refine]", "inherits: [regularization]"))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["protocol", "--studies-dir", "studies",
                                      "--storage", "sqlite:///storage/p.db"])
    assert result.exit_code == 2
    assert result.output.startswith("error: inherits: the phases inherit from each other in a "
                                    "cycle") and result.output.count("\n") == 1
    assert "architecture.yaml" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "storage").exists()


def test_a_rewired_chain_runs_end_to_end_with_each_phase_starting_from_its_new_parent(
        tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    # `--to architecture`: the rewired chain's architecture needs batchnorm, which the
    # protocol's order puts after it, so batchnorm runs too (and regularization does not)
    outcomes = run_protocol(studies_dir=VARIANT, storage=url, stop="architecture",
                            overrides={"epochs": 3, "model": "mlp"}, trials_scale=0.1)
    ran = [o.phase for o in outcomes]
    assert ran == ["setup", "lr_adam", "lr_adam_refine", "batchnorm", "architecture"]
    architecture = optuna.load_study(study_name="architecture", storage=url)
    assert architecture.user_attrs["inherited"]["from"][0]["study"] == "batchnorm"
