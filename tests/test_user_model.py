"""Tuning the user's own model and data: by import path from a module outside the package,
and by name through the Python API's decorators."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import optuna
import torch
from optuna.trial import TrialState

import hpsearch
from tests.conftest import REPO

EXAMPLE = REPO / "examples" / "my_project"


def test_readme_example_runs_from_a_copy_of_its_folder_with_a_plain_hpsearch(tmp_path):
    project = tmp_path / "my_project"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("storage"))
    url = f"sqlite:///{tmp_path / 'mine.db'}"
    command = ["hpsearch", "run", "--study", "tune_my_net.yaml", "--storage", url,
               "--trials", "3", "--set", "epochs=3"]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # as a user runs it
    env["PATH"] = f"{os.path.dirname(sys.executable)}{os.pathsep}{env['PATH']}"
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    trials = optuna.load_study(study_name="tune_my_net", storage=url).get_trials()
    finished = [t for t in trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(finished) == 3
    config = trials[0].user_attrs["config"]
    assert config["model"] == "my_nets:build_net"
    assert config["model_args"]["hidden"] == trials[0].params["model_args.hidden"]
    assert max(t.value for t in trials if t.value is not None) > 0.5  # 4 classes: chance 0.25


def test_unimportable_factory_names_file_field_and_path(write_study, studies_dir, tmp_path):
    path = write_study("bad_factory", "base:\n  model: {factory: \"nowhere_pkg.nets:build\"}\n"
                       "objective: {metric: val_acc}\nspace:\n  lr: 0.001\n")
    command = [sys.executable, "-m", "hpsearch", "run", "--study", str(path),
               "--storage", f"sqlite:///{tmp_path / 'x.db'}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "nowhere_pkg.nets:build" in lines[0] and "model" in lines[0]
    assert not (tmp_path / "x.db").exists()


def test_decorated_model_and_dataset_run_through_the_python_api(write_study, tmp_path):
    @hpsearch.model("tiny_linear")
    def tiny_linear(config, input_shape, num_classes):
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(input_shape[0], num_classes))

    @hpsearch.dataset("two_moons_ish")
    def two_classes(config):
        x = torch.cat([torch.randn(200, 2) + 2, torch.randn(200, 2) - 2])
        y = torch.cat([torch.zeros(200, dtype=torch.long), torch.ones(200, dtype=torch.long)])
        order = torch.randperm(400, generator=torch.Generator().manual_seed(0))
        x, y = x[order], y[order]
        return {"train": (x[:300], y[:300]), "val": (x[300:], y[300:])}

    write_study("mine", "base: {model: tiny_linear, dataset: two_moons_ish, epochs: 5, batch_size: 50}\n"
                "objective: {metric: val_acc}\nsampler: {name: random, seed: 1}\ntrials: 2\n"
                "space:\n  lr: {type: float, low: 1e-2, high: 1e-1, log: true}\n")
    url = f"sqlite:///{tmp_path / 'api.db'}"
    summary = hpsearch.run_study("mine", storage=url, studies_dir=tmp_path / "studies")
    assert summary.counts == {"COMPLETE": 2}
    assert hpsearch.best("mine", url).best[0].values["val_acc"] > 0.9
    assert list(hpsearch.trials("mine", url)["state"]) == ["COMPLETE", "COMPLETE"]
    assert len(hpsearch.curves("mine", url)) == 2 * 5
