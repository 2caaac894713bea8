"""optuna-dashboard reads the studies hpsearch writes: names, user attributes, curves.

The dashboard's WSGI app is called in process (no server, no port)."""

from __future__ import annotations

import io
import json

import optuna
import pytest
from click.testing import CliRunner
from optuna_dashboard import wsgi

import hpsearch

STUDY = """\
base: {dataset: digits, epochs: 3, optimizer: sgd, momentum: 0.0}
objective: {metric: val_acc}
sampler: {name: grid}
pruner: {name: none}
space:
  lr: {values: [1.0e+6, 0.1]}
"""


def get(app, path: str) -> dict:
    status = {}
    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "test",
        "SERVER_PORT": "80", "wsgi.input": io.BytesIO(), "wsgi.url_scheme": "http",
        "wsgi.errors": io.StringIO(),
    }
    body = b"".join(app(environ, lambda code, headers, exc_info=None: status.setdefault("code", code)))
    assert status["code"].startswith("200"), status
    return json.loads(body)  # strict JSON: a NaN anywhere would fail in the browser


def test_dashboard_lists_the_study_with_its_curves_and_reasons(write_study, studies_dir, tmp_path):
    write_study("dash", STUDY)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    hpsearch.run_study("dash", storage=url, studies_dir=studies_dir)
    app = wsgi(url)
    summaries = get(app, "/api/studies")["study_summaries"]
    (summary,) = [s for s in summaries if s["study_name"] == "dash"]
    keys = {a["key"] for a in summary["user_attrs"]}
    assert {"fixed_settings", "study_file", "selection", "inherited"} <= keys
    detail = get(app, f"/api/studies/{summary['study_id']}")
    diverged = next(t for t in detail["trials"] if t["state"] == "Pruned")
    attrs = {a["key"]: a["value"] for a in diverged["user_attrs"]}
    assert attrs["reason"] == "diverged"
    json.loads(attrs["history"])  # NaN losses are stored as null
    complete = next(t for t in detail["trials"] if t["state"] == "Complete")
    assert len(complete["intermediate_values"]) == 3  # one point per epoch: the curve
    assert optuna.load_study(study_name="dash", storage=url).best_trial.params == {"lr": 0.1}


def _raw(app, path: str) -> str:
    return json.dumps(get(app, path))


@pytest.mark.postgres
def test_no_password_in_stored_attributes_output_or_dashboard_responses(
        write_study, studies_dir, postgres_url):
    """The test server's password is its user name (`.ci/run`): neither may appear in what
    is stored or served; the CLI prints the URL masked."""
    from sqlalchemy.engine import make_url

    from hpsearch.cli import cli

    parsed = make_url(postgres_url)
    secret = parsed.password
    write_study("dash", STUDY)
    result = CliRunner().invoke(cli, ["run", "--study", "dash", "--storage", postgres_url,
                                      "--studies-dir", str(studies_dir)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert f":{secret}@" not in result.output and ":***@" in result.output
    study = optuna.load_study(study_name="dash", storage=postgres_url)
    system = study._storage.get_study_system_attrs(study._study_id)
    stored = json.dumps([study.user_attrs, system]
                        + [[t.user_attrs, t.system_attrs, t.params] for t in study.trials],
                        default=str)
    assert secret not in stored
    app = wsgi(postgres_url)
    summaries = get(app, "/api/studies")["study_summaries"]
    (summary,) = [s for s in summaries if s["study_name"] == "dash"]
    for path in ("/api/studies", f"/api/studies/{summary['study_id']}",
                 f"/api/studies/{summary['study_id']}/param_importances"):
        assert secret not in _raw(app, path), path


def study_detail(app, name: str) -> dict:
    summaries = get(app, "/api/studies")["study_summaries"]
    (summary,) = [s for s in summaries if s["study_name"] == name]
    return get(app, f"/api/studies/{summary['study_id']}")


def test_the_dashboard_shows_the_protocol_choice_where_a_person_looks_first(tiny_protocol):
    from hpsearch.dashboard import app

    served = app(tiny_protocol)
    detail = study_detail(served, "architecture@t")
    choice = optuna.load_study(study_name="architecture@t", storage=tiny_protocol
                               ).user_attrs["selection"]
    note = detail["note"]["body"]
    assert note.startswith("## architecture@t: Architecture for the model family")
    assert f"**Chosen: trial {choice['trial']}**" in note
    assert choice["why"] in note  # the reason in words
    assert "| trial | best_val_acc | val_loss_at_peak | stability | parameters |" in note
    for runner in choice["runners_up"]:  # runners-up with their parameters
        params = ", ".join(f"{k}={v}" for k, v in runner["params"].items())
        assert f"| {runner['trial']} |" in note and params in note
    assert "hpsearch export --study architecture --tag t --out model.pt" in note
    chosen = next(t for t in detail["trials"] if t["number"] == choice["trial"])
    assert chosen["note"]["body"].startswith("**Chosen by the protocol** for this phase: ")
    (figure,) = detail["plotly_graph_objects"]
    assert figure["id"] == "learning-curves"
    traces = json.loads(figure["graph_object"])["data"]
    assert {t["xaxis"] for t in traces} == {"x", "x2"}  # train loss and validation accuracy
    assert any(t["name"] == f"trial {choice['trial']} (chosen)" for t in traces)
    (artifact,) = detail["artifacts"]  # the kept model, offered for download
    assert artifact["filename"] == f"architecture@t-trial-{choice['trial']}.pt"


def dashboard_app(url: str):
    from hpsearch.dashboard import app

    return app(url)


def _own_copy(url: str, tmp_path) -> str:
    """A copy of the shared protocol's SQLite file, for a test that writes to it. Through
    SQLite's backup, not a file copy: the storage runs in WAL mode, and what the protocol
    committed last may still be in the `-wal` file beside it (a copy of the main file alone
    lost the `architecture@t` study in one CI run)."""
    import sqlite3

    copy = tmp_path / "copy.db"
    source = sqlite3.connect(url.removeprefix("sqlite:///"))
    target = sqlite3.connect(copy)
    try:
        source.backup(target)
    finally:
        source.close()
        target.close()
    return f"sqlite:///{copy}"


def _system_attr_writes(study: optuna.Study, monkeypatch) -> list[str]:
    """The keys of the study system attributes written from now on (notes and figures live
    there)."""
    written: list[str] = []
    storage = study._storage
    original = storage.set_study_system_attr

    def counting(study_id, key, value):
        written.append(key)
        return original(study_id, key, value)

    monkeypatch.setattr(storage, "set_study_system_attr", counting)
    return written


def test_a_study_annotated_again_with_nothing_new_writes_nothing(tiny_protocol, tmp_path,
                                                                  monkeypatch):
    """Every run's end annotates its study again: the notes and the curves are stored already
    and unchanged, so nothing is written (it rewrote the note and the ~20 pieces of the figure
    each time)."""
    from hpsearch import notes

    url = _own_copy(tiny_protocol, tmp_path)
    study = optuna.load_study(study_name="architecture@t", storage=url)
    before = study._storage.get_study_system_attrs(study._study_id)
    written = _system_attr_writes(study, monkeypatch)
    notes.annotate(study)
    notes.annotate(study)
    assert written == []
    assert study._storage.get_study_system_attrs(study._study_id) == before


def test_a_new_choice_rewrites_the_note_and_redraws_the_curves(tiny_protocol, tmp_path,
                                                                monkeypatch):
    from hpsearch import notes

    url = _own_copy(tiny_protocol, tmp_path)
    study = optuna.load_study(study_name="architecture@t", storage=url)
    selection = dict(study.user_attrs["selection"])
    runner_up = selection["runners_up"][0]["trial"]
    # The stored choice changes to its first runner-up (a later run chose again).
    study.set_user_attr("selection", {**selection, "trial": runner_up,
                                      "params": selection["runners_up"][0]["params"]})
    written = _system_attr_writes(study, monkeypatch)
    notes.annotate(study)
    assert any(key.startswith("dashboard:plot_data:learning-curves:") for key in written)
    detail = study_detail(dashboard_app(url), "architecture@t")
    assert f"**Chosen: trial {runner_up}**" in detail["note"]["body"]
    (figure,) = detail["plotly_graph_objects"]
    traces = json.loads(figure["graph_object"])["data"]
    assert any(t["name"] == f"trial {runner_up} (chosen)" for t in traces)
    assert not any(t["name"] == f"trial {selection['trial']} (chosen)" for t in traces)


@pytest.mark.parametrize("stored", ["unnamed", "cut short"])
def test_curves_stored_without_their_name_are_redrawn(tiny_protocol, tmp_path, monkeypatch,
                                                      stored):
    """A figure an earlier hpsearch stored (no name in `layout.meta`), or one whose stored
    JSON does not parse, is drawn again once, then left alone."""
    from optuna_dashboard import save_plotly_graph_object
    import plotly.graph_objects as go

    from hpsearch import notes

    url = _own_copy(tiny_protocol, tmp_path)
    study = optuna.load_study(study_name="architecture@t", storage=url)
    save_plotly_graph_object(study, go.Figure(go.Scatter(x=[1], y=[1], name="old")),
                             graph_object_id=notes.CURVES_ID)
    if stored == "cut short":
        study._storage.set_study_system_attr(
            study._study_id, f"dashboard:plot_data:{notes.CURVES_ID}:0", '{"data": [{"na')
    written = _system_attr_writes(study, monkeypatch)
    notes.annotate(study)
    assert any(key.startswith("dashboard:plot_data:learning-curves:") for key in written)
    written.clear()
    notes.annotate(study)
    assert written == []
    (figure,) = study_detail(dashboard_app(url), "architecture@t"
                             )["plotly_graph_objects"]
    assert all(t["name"] != "old" for t in json.loads(figure["graph_object"])["data"])


NOTHING_TO_SEARCH = """\
description: normalisation for the CNN only
phase: batchnorm
base: {dataset: digits, epochs: 2, model: mlp}
objective: {metric: best_val_acc}
sampler: {name: grid}
pruner: {name: none}
spaces:
  cnn:
    conv_norm: {choices: [batch]}
"""


def test_the_baseline_reads_as_such(tiny_protocol):
    from hpsearch.dashboard import app

    served = app(tiny_protocol)
    batchnorm = study_detail(served, "batchnorm@t")
    (baseline,) = [t for t in batchnorm["trials"]
                   if {"key": "baseline", "value": "True"} in t["user_attrs"]]
    assert "**Baseline**: the configuration this phase inherited" in baseline["note"]["body"]


def test_a_skipped_phase_reads_as_such(write_study, studies_dir, tmp_path):
    """A phase with no space for the model (the MLP here) is skipped, whatever the curves:
    its note gives the stored reason and no choice."""
    from hpsearch.dashboard import app

    write_study("cnn_norm", NOTHING_TO_SEARCH)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    summary = hpsearch.run_study("cnn_norm", storage=url, studies_dir=studies_dir)
    assert summary.skipped
    reason = optuna.load_study(study_name="cnn_norm", storage=url).user_attrs[
        "selection"]["reason"]
    assert reason == f"skipped: {summary.skipped}"
    note = study_detail(app(url), "cnn_norm")["note"]["body"]
    assert "**Skipped**" in note and "no search space for model family `mlp`" in note, note
    assert "**Chosen" not in note


def test_dashboard_command_serves_the_notes(tiny_protocol):
    """`hpsearch dashboard` on a real port: the page and the API answer."""
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "hpsearch", "dashboard", "--storage", tiny_protocol,
         "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = server.stdout.readline()
        assert first.startswith(f"optuna-dashboard on http://127.0.0.1:{port}/ (storage ")
        for _ in range(100):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies") as answer:
                    studies = json.loads(answer.read())["study_summaries"]
                break
            except OSError:
                time.sleep(0.1)
        (study,) = [s for s in studies if s["study_name"] == "architecture@t"]
        page = rendered(f"http://127.0.0.1:{port}/dashboard/studies/{study['study_id']}/note")
        assert "Chosen: trial" in page and "Runners-up" in page  # the note, as a person sees it
    finally:
        server.terminate()
        server.wait(timeout=10)


def rendered(url: str) -> str:
    """The page's DOM once its scripts ran, from headless Chromium (Debian's package)."""
    import os
    import shutil
    import subprocess
    import tempfile

    browser = shutil.which("chromium")
    if browser is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs it")
        pytest.skip("needs Debian's chromium")
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--virtual-time-budget=15000",
             "--dump-dom", url], capture_output=True, text=True, timeout=120)
    return done.stdout
