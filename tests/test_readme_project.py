"""Every command of the README's "Tuning your own project" section, run verbatim.

As a new user would: from a copy of `examples/` outside the repository (beside a `shared/`
folder that holds the offline data sets, as the repository's own checkout has it), with the
plain `hpsearch` console script and no PYTHONPATH. Each command's outcome is then read back
from the storage it wrote.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import REPO, SHARED_DATA

SECTION = re.search(r"## Tuning your own project\n(.*?)\n## ", (REPO / "README.md").read_text(),
                    re.S).group(1)
COMMANDS = [line for block in re.findall(r"```bash\n(.*?)```", SECTION, re.S)
            for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """`main/examples` (a copy) beside `shared/` (the offline data, read only)."""
    root = tmp_path_factory.mktemp("user")
    shutil.copytree(REPO / "examples", root / "main" / "examples",
                    ignore=shutil.ignore_patterns("storage", "__pycache__"))
    if SHARED_DATA.is_dir():
        (root / "shared").symlink_to(SHARED_DATA.parent, target_is_directory=True)
    return root / "main"


def run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONPATH" and not k.startswith("HPSEARCH_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # plain `hpsearch`
    return subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900)


def study(example: Path, name: str) -> optuna.Study:
    url = f"sqlite:///{example / 'storage' / 'hpsearch.db'}"
    return optuna.load_study(study_name=name, storage=url)


def finished(study_: optuna.Study) -> list:
    return study_.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))


def check_my_project(example: Path, command: str, output: str) -> None:
    if "run --study tune_my_net.yaml" in command:
        trials = finished(study(example, "tune_my_net"))
        assert len(trials) == 8 and max(t.value for t in trials if t.value) > 0.5
        assert {t.user_attrs["config"]["model"] for t in trials} == {"my_nets:build_net"}
    elif "protocol" in command:
        assert study(example, "final@mine").user_attrs["test"]["test_acc"] > 0.5
        knobs = {t.params.get("model_args.hidden") for t in study(example, "architecture@mine").trials}
        assert len(knobs) > 1  # the declared knobs, searched by the architecture phase
        batchnorm = study(example, "batchnorm@mine").user_attrs["selection"]
        assert batchnorm["skipped"] and "norm" in batchnorm["reason"]
    else:
        assert "protocol choice" in output and "model_args.hidden" in output


def check_optuna_simple(example: Path, command: str, output: str) -> None:
    trials = finished(study(example, "pytorch_simple"))
    assert len(trials) == 5
    assert {"model_args.n_layers", "optimizer", "lr"} <= set(trials[0].params)
    assert trials[0].user_attrs["config"]["loss"] == "nll"
    assert not (example / "storage" / "data" / "FashionMNIST" / "raw").joinpath(
        "train-images-idx3-ubyte.gz").is_symlink()  # archives were copied into the cache


def check_mnist_cnn(example: Path, command: str, output: str) -> None:
    if "adadelta" in command:
        (trial,) = finished(study(example, "adadelta"))
        config, history = trial.user_attrs["config"], trial.user_attrs["history"]
        assert config["optimizer"] == "torch.optim:Adadelta" and trial.value > 0.8
        gamma = trial.params["gamma"]  # the LR times gamma after every epoch
        assert history[1]["lr"] == pytest.approx(history[0]["lr"] * gamma)
        return
    assert study(example, "final").user_attrs["test"]["test_acc"] > 0.5
    arch = study(example, "architecture")
    assert {"model_args.channels", "model_args.hidden"} <= set(arch.trials[0].params)
    assert "skipped" in output and "honours none of the settings this phase searches (norm)" in output


def check_regression(example: Path, command: str, output: str) -> None:
    trials = finished(study(example, "fit_sine"))
    best = min(t.value for t in trials if t.state == TrialState.COMPLETE)
    assert best < 0.05  # noise variance 0.01: the curve is fitted
    assert "val_acc" not in trials[0].user_attrs["history"][0]


def check_fit_hook(example: Path, command: str, output: str) -> None:
    trials = finished(study(example, "two_heads"))
    assert len(trials) == 8 and any(t.state == TrialState.PRUNED for t in trials)
    assert "recon_loss" in trials[0].user_attrs["history"][0]  # what the hook reported


def check_lightning(example: Path, command: str, output: str) -> None:
    trials = finished(study(example, "lightning_simple"))
    assert len(trials) == 6
    history = trials[0].user_attrs["history"]
    assert history[-1]["steps_run"] == 10 * len(history)  # its training_step ran: 10 a epoch
    assert not any(p.name == "lightning_logs" for p in example.iterdir())


CHECKS = {"my_project": check_my_project, "optuna_simple": check_optuna_simple,
          "mnist_cnn": check_mnist_cnn, "regression": check_regression,
          "fit_hook": check_fit_hook, "lightning_simple": check_lightning}


def test_the_section_shows_a_command_for_every_example():
    """Every project example; the results notebook runs in tests/test_notebook.py."""
    folders = {re.match(r"cd examples/(\w+) &&", c).group(1) for c in COMMANDS}
    projects = {p.name for p in (REPO / "examples").iterdir() if p.is_dir()} - {"notebook"}
    assert folders == set(CHECKS) == projects


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs_verbatim(command, layout):
    if "shared/data" in command and not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"needs the offline data sets in {SHARED_DATA}")  # the rest run without
    done = run(command, layout)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    folder = re.match(r"cd examples/(\w+) &&", command).group(1)
    CHECKS[folder](layout / "examples" / folder, command, done.stdout)
