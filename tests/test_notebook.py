"""examples/notebook/protocol_results.ipynb, run top to bottom as a new user runs it.

In a fresh folder: `hpsearch protocol` (the plain console script, no HPSEARCH_* variables)
makes the storage the notebook reads, then the notebook is executed in a real kernel with that
folder as its working directory. No cell may raise, and the outputs a person reads must say
what the storage holds: every phase in the summary, the stored test accuracy, a kept model
that reproduces its stored validation accuracy, and the exported file.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nbformat
import optuna
import pytest
from nbclient import NotebookClient

from hpsearch.results.frames import PHASE_ORDER
from tests.conftest import REPO

NOTEBOOK = REPO / "examples" / "notebook" / "protocol_results.ipynb"
# The notebook's own command at a smaller scale, so the test stays under a minute.
PROTOCOL = "hpsearch protocol --set model=mlp --set epochs=3 --trials-scale 0.15 --tag demo"


def run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    """A shell command as a user types it (tests/test_readme_project.py's helper): the plain
    `hpsearch` console script, no PYTHONPATH, no HPSEARCH_* variables."""
    env = {k: v for k, v in os.environ.items()
           if k != "PYTHONPATH" and not k.startswith("HPSEARCH_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    return subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600, check=False)


def text(cell) -> str:
    """Everything a cell showed: its printed streams and its results' plain text."""
    parts = []
    for output in cell.outputs:
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            parts.append(output.data.get("text/plain", ""))
    return "".join(parts)


def test_the_notebook_is_stored_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.kernelspec.name == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert 'STORAGE = "sqlite:///storage/hpsearch.db"' in code[0].source
    assert 'TAG = "demo"' in code[0].source


@pytest.mark.slow
def test_the_notebook_runs_on_a_protocol_storage(tmp_path, monkeypatch):
    for name in [n for n in os.environ if n.startswith("HPSEARCH_")]:
        monkeypatch.delenv(name)  # the kernel inherits this environment
    done = run(PROTOCOL, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]

    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    cells = {c.id: c for c in nb.cells if c.cell_type == "code"}
    errors = [(c.id, o.ename, o.evalue) for c in cells.values() for o in c.outputs
              if o.output_type == "error"]
    assert not errors

    for phase in PHASE_ORDER:
        assert phase in text(cells["summary"]), f"the summary does not list `{phase}`"
    storage = f"sqlite:///{tmp_path / 'storage' / 'hpsearch.db'}"
    architecture = optuna.load_study(study_name="architecture@demo", storage=storage)
    chosen = architecture.user_attrs["selection"]
    assert f"chose trial {chosen['trial']} with {chosen['params']}" in text(cells["choice"])
    assert "chosen" in text(cells["trials"]) and "baseline" in text(cells["trials"])
    assert any("image/png" in o.get("data", {}) for o in cells["curves"].outputs)

    final = optuna.load_study(study_name="final@demo", storage=storage)
    assert f"test accuracy {final.user_attrs['test']['test_acc']:.4f}" in text(cells["test"])
    stored = final.user_attrs["selection"]["criteria"]["best_val_acc"]  # inherited if skipped
    check = text(cells["model"])
    assert f"validation accuracy now {stored:.4f}" in check and check.rstrip().endswith("match")
    assert (tmp_path / "model.pt").stat().st_size > 0
    assert "model.pt" in text(cells["export"])
