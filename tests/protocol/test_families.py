"""The architecture phase chooses the model family (MLP or CNN) on image data, unless
`--set model=...` pins it."""

from __future__ import annotations

import optuna

from hpsearch.runner import run_study
from tests.conftest import REPO

STUDIES = REPO / "studies"


def architecture_params(tmp_path, overrides):
    url = f"sqlite:///{tmp_path / 'f.db'}"
    for phase in ("lr_adam", "lr_adam_refine"):
        run_study(phase, storage=url, studies_dir=STUDIES, overrides=overrides)
    run_study("architecture", trials=3, storage=url, studies_dir=STUDIES, overrides=overrides)
    study = optuna.load_study(study_name="architecture", storage=url)
    return study, [t.params for t in study.trials]


def test_on_images_the_architecture_phase_chooses_the_family(tmp_path):
    study, params = architecture_params(tmp_path, {"epochs": 2})  # digits: 1x8x8 images
    assert all(p["model"] in ("mlp", "cnn") for p in params)
    for trial in study.trials:  # each trial trains the family it drew
        assert trial.user_attrs["config"]["model"] == trial.params["model"]
        knobs = {k.split("[")[0] for k in trial.params} - {"model"}
        assert knobs == ({"depth", "width"} if trial.params["model"] == "mlp" else
                         {"lr", "conv_blocks", "conv_width", "first_pool", "head"})
    assert "model" not in study.user_attrs["fixed_settings"]


def test_set_model_pins_the_family(tmp_path):
    study, params = architecture_params(tmp_path, {"epochs": 2, "model": "mlp"})
    assert all(set(p) == {"depth", "width"} for p in params)
    assert study.user_attrs["fixed_settings"]["model"] == "mlp"
