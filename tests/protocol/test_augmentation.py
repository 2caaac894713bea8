"""Few images per class: the setup phase tries augmentation at once [000], and the phases
after it start from what it kept (`inherits_if_run`), while each still runs on its own."""

from __future__ import annotations

import optuna

from hpsearch.phases.protocol import run_protocol
from hpsearch.runner import run_study
from tests.conftest import REPO

QUICK = {"epochs": 8}
# The installed setup phase with crop as its only value: digits (1x8x8, ~130 training images
# per class) is few, so the axis is tried and its one value chosen.
SETUP_CROP_ONLY = (REPO / "studies" / "setup.yaml").read_text().replace(
    "augment: {values: [none, crop]}", "augment: {values: [crop]}")


def trial_configs(url: str, name: str) -> list[dict]:
    study = optuna.load_study(study_name=name, storage=url)
    return [t.user_attrs["config"] for t in study.trials]


def test_the_lr_phases_start_from_the_augmentation_setup_kept(tmp_path):
    folder = tmp_path / "studies"
    folder.mkdir()
    (folder / "setup.yaml").write_text(SETUP_CROP_ONLY)
    url = f"sqlite:///{tmp_path / 'p.db'}"
    outcomes = run_protocol(studies_dir=folder, storage=url, overrides=QUICK, stop="lr_adam")
    assert outcomes[0].line.startswith(
        "augmentation tried: 129 training images per class, under 1,000 [000]; chose trial 0 "
        "(augment=crop, lr=0.001)")
    setup = optuna.load_study(study_name="setup", storage=url)
    assert setup.user_attrs["augmentation"].startswith("augmentation tried")
    # SGD's LR steps run later in the protocol (just before `optimizer`), from setup too.
    run_study("lr_sgd", storage=url, overrides=QUICK, studies_dir=folder)
    for phase in ("lr_sgd", "lr_adam"):
        inherited = optuna.load_study(study_name=phase, storage=url).user_attrs["inherited"]
        assert [source["study"] for source in inherited["from"]] == ["setup"]
        assert {c["augment"] for c in trial_configs(url, phase)} == {"crop"}


def test_an_lr_phase_runs_on_its_own_before_setup_has_run(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    summary = run_study("lr_adam", storage=url, overrides=QUICK, trials=1)
    assert summary.new_trials == [0]
    inherited = optuna.load_study(study_name="lr_adam", storage=url).user_attrs["inherited"]
    assert inherited["from"] == []
    assert {c["augment"] for c in trial_configs(url, "lr_adam")} == {"none"}


def test_set_augment_pins_it_in_the_setup_phase(tmp_path):
    url = f"sqlite:///{tmp_path / 'p.db'}"
    outcomes = run_protocol(storage=url, overrides={**QUICK, "augment": "none"}, stop="setup")
    assert outcomes[0].line.startswith("augmentation pinned: --set augment=none; chose trial 0")
    assert {c["augment"] for c in trial_configs(url, "setup")} == {"none"}
