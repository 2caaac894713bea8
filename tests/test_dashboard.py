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
