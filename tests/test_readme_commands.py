"""Every command of the README's "Using it" and "The protocol" sections, run verbatim, in order.

As a new user would: in a fresh folder outside the repository (beside a `shared/` folder that
holds the offline data sets, as the repository's checkout has it), with the plain `hpsearch`
console script, no PYTHONPATH, no HPSEARCH_* variables. The commands share that folder, as
they share a user's: later ones read what earlier ones stored. Each outcome is read back from
the storage or the command's output.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

import hpsearch
from hpsearch.phases.protocol import PHASES
from tests.conftest import REPO, SHARED_DATA
from tests.test_readme_project import run

README = (REPO / "README.md").read_text()
SECTIONS = ("Using it", "The protocol: every phase a study, chained")
DASHBOARD = "http://127.0.0.1:8080"  # `hpsearch dashboard`'s default address


def section_commands(title: str) -> list[str]:
    """The bash blocks' commands of one section, `\\`-continued lines joined."""
    text = re.search(rf"## {re.escape(title)}\n(.*?)\n## ", README, re.S).group(1)
    lines = [line for block in re.findall(r"```bash\n(.*?)```", text, re.S)
             for line in block.replace("\\\n", " ").splitlines() if line.strip()]
    return [line for line in lines if not line.lstrip().startswith("#")]


COMMANDS = [command for title in SECTIONS for command in section_commands(title)]


@pytest.fixture(scope="module")
def user_folder(tmp_path_factory):
    """`main/`, empty, beside `shared/` (the offline data, read only)."""
    root = tmp_path_factory.mktemp("user")
    (root / "main").mkdir()
    if SHARED_DATA.is_dir():
        (root / "shared").symlink_to(SHARED_DATA.parent, target_is_directory=True)
    return root / "main"


def study(folder: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'storage' / 'hpsearch.db'}")


def complete(folder: Path, name: str) -> list:
    return study(folder, name).get_trials(states=(TrialState.COMPLETE,))


def counts(folder: Path) -> dict[str, int]:
    url = f"sqlite:///{folder / 'storage' / 'hpsearch.db'}"
    return {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(url)}


def check(command: str, folder: Path, output: str, before: dict[str, int]) -> None:
    """What each README command promises, read back from what it stored or printed."""
    words = command.split("#")[0].split()
    if words[1] == "studies":
        assert "lr_adam" in output and "architecture" in output
    elif words[1] == "settings":
        assert "val_subset" in output and "epochs" in output and "in epochs" in output
    elif words[1] == "trials":
        frame = pd.read_csv(folder / words[words.index("--csv") + 1])
        assert frame.chosen.sum() == 1 and "train_loss_area" in frame
    elif words[1] == "summary":
        assert all(phase in output for phase in PHASES)
    elif words[1] == "export":
        model = hpsearch.load_model(str(folder / words[words.index("--out") + 1]))
        assert model.hpsearch_checkpoint["weights"] == "final"  # the tested weights
    elif words[1] == "report":
        page = (folder / words[words.index("--out") + 1]).read_text()
        assert all(f'id="phase-{phase}"' in page for phase in PHASES), page[:300]
    elif words[1] == "plot":
        assert (folder / words[words.index("--out") + 1]).read_bytes()[:4] == b"\x89PNG"
    elif words[1] == "run" and "--name" in words:
        trials = complete(folder, "lr_sgd_mnist")
        assert len(trials) + len(study(folder, "lr_sgd_mnist").get_trials(
            states=(TrialState.PRUNED,))) == 4  # the 4-point grid
        assert {t.user_attrs["config"]["dataset"] for t in trials} == {"mnist"}
    elif words[1] == "run" and "--tag" in words:
        recorded = study(folder, "lr_adam@lrf").user_attrs["lr_range"]
        assert {t.params["lr"] for t in study(folder, "lr_adam@lrf").trials} == {
            recorded["low"], recorded["suggested"], recorded["high"]}
    elif words[1] == "run":
        assert len(complete(folder, "lr_adam")) == 3
    elif words[1] == "best" and "--json" in words:
        assert json.loads(output)["study"] == "lr_adam"
    elif words[1] == "best" and "--tag" in words:
        assert "protocol choice: " in output and "scheduler@short" in output, output
    elif words[1] == "best":
        assert "protocol choice" in output or "best trial" in output, output
    elif words[1] == "test":
        assert "test accuracy" in output
        assert "test" in study(folder, "final").user_attrs
    elif words[1] == "lr-find":
        assert study(folder, "lr_adam@lrf").user_attrs["lr_range"]["suggested"] > 0
    elif words[1] == "protocol" and "--tag" in words:
        assert study(folder, "final@short").user_attrs["test"]["test_acc"] > 0.5
        assert study(folder, "setup@short").user_attrs["fixed_settings"]["epochs"] == 5
    elif words[1] == "protocol" and "--from" in words:
        assert counts(folder) == before  # every phase asked for was stored: no new trial
    elif words[1] == "protocol":
        assert set(counts(folder)) >= set(PHASES) - {"test"}
        assert study(folder, "final").user_attrs["test"]["test_acc"] > 0.5
    else:
        raise AssertionError(f"no check for the README command `{command}`: add one")


def test_the_sections_show_the_commands_a_user_needs():
    named = {command.split()[1] for command in COMMANDS if command.startswith("hpsearch ")}
    assert named == {"studies", "run", "best", "trials", "settings", "dashboard", "protocol",
                     "summary", "test", "export", "report", "plot", "lr-find"}


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_runs_verbatim(command, user_folder):
    if "shared/data" in command and not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"needs the offline data sets in {SHARED_DATA}")  # the rest run without
    if command.startswith("hpsearch dashboard"):
        return check_dashboard(command, user_folder)
    before = counts(user_folder) if (user_folder / "storage").is_dir() else {}
    done = run(command, user_folder)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    check(command, user_folder, done.stdout, before)


def check_dashboard(command: str, folder: Path) -> None:
    """The dashboard serves until stopped: it must list the studies the commands stored."""
    server = subprocess.Popen(command, shell=True, cwd=folder, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True)
    try:
        summaries = _get_json(f"{DASHBOARD}/api/studies", server)["study_summaries"]
        (lr_adam,) = [s for s in summaries if s["study_name"] == "lr_adam"]
        detail = _get_json(f"{DASHBOARD}/api/studies/{lr_adam['study_id']}", server)
        assert detail["note"]["body"].startswith("## lr_adam: ")  # the choice, as a note
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the shell and the server it started
        server.wait(timeout=30)


def _get_json(url: str, server: subprocess.Popen, wait_s: float = 60.0) -> dict:
    deadline = time.monotonic() + wait_s
    while True:
        assert server.poll() is None, server.stderr.read().decode()[-2000:]
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
