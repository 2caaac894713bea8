"""docker-compose.yml, the Dockerfile and the Kubernetes Job, checked as files (no Docker engine
or cluster here)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def _compose_spec_errors(path) -> str:
    """What check-jsonschema's copy of the Compose specification's schema says of `path`."""
    done = subprocess.run([str(Path(sys.executable).parent / "check-jsonschema"),
                           "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=120)
    return "" if done.returncode == 0 else done.stdout + done.stderr


def test_compose_file_follows_the_compose_specification(tmp_path):
    assert _compose_spec_errors(REPO / "docker-compose.yml") == ""
    # The check can fail: a misspelt key is refused.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text((REPO / "docker-compose.yml").read_text().replace("depends_on:", "depend_on:", 1))
    assert "depend_on" in _compose_spec_errors(broken)


def test_compose_runs_any_command_and_keeps_storage_on_the_host():
    worker = compose()["services"]["worker"]
    assert worker["command"] == "${HPSEARCH_COMMAND:-run --study lr_adam}"
    assert "./storage:/app/storage" in worker["volumes"]
    header = (REPO / "docker-compose.yml").read_text()
    assert 'HPSEARCH_COMMAND="protocol --to final" docker compose up --scale worker=4' in header


def test_compose_services_share_one_postgres_storage():
    services = compose()["services"]
    assert set(services) == {"postgres", "dashboard", "worker"}
    url = services["worker"]["environment"]["HPSEARCH_STORAGE"]
    assert url.startswith("postgresql+psycopg://") and "@postgres:5432/" in url
    assert services["dashboard"]["command"][-1] == url
    for name in ("dashboard", "worker"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in services["postgres"]


def test_compose_credentials_match_the_postgres_service_and_the_password_has_no_default():
    services = compose()["services"]
    env = services["postgres"]["environment"]
    # `${VAR:?message}`: compose refuses to start without it; no password is written here.
    assert re.fullmatch(r"\$\{HPSEARCH_DB_PASSWORD:\?[^}]+\}", env["POSTGRES_PASSWORD"])
    expected = (f"postgresql+psycopg://{env['POSTGRES_USER']}:${{HPSEARCH_DB_PASSWORD}}"
                f"@postgres:5432/{env['POSTGRES_DB']}")
    assert services["worker"]["environment"]["HPSEARCH_STORAGE"] == expected
    example = (REPO / ".env.example").read_text()
    assert re.search(r"^HPSEARCH_DB_PASSWORD=$", example, re.M)  # to be chosen, not given
    assert ".env" in (REPO / ".gitignore").read_text().splitlines()


def test_compose_publishes_ports_on_the_loopback_only_and_not_on_5432():
    services = compose()["services"]
    for name in ("postgres", "dashboard"):
        for port in services[name]["ports"]:
            assert port.startswith("127.0.0.1:"), (name, port)
    assert not services["postgres"]["ports"][0].startswith("127.0.0.1:5432:")


def test_compose_workers_reserve_a_gpu_each_and_the_dashboard_has_no_torch():
    services = compose()["services"]
    (device,) = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert device["capabilities"] == ["gpu"] and device["count"] == 1
    assert services["dashboard"]["build"]["target"] == "dashboard"
    stages = (REPO / "Dockerfile").read_text().split("FROM ")[1:]
    dashboard = next(stage for stage in stages if stage.startswith("python:3.11-slim AS dashboard"))
    assert "torch" not in dashboard and "optuna-dashboard" in dashboard


def test_dockerfile_installs_the_pinned_torch_and_the_package():
    lines = [l.strip() for l in (REPO / "Dockerfile").read_text().splitlines()]
    instructions = [l for l in lines if l and not l.startswith("#")]
    assert instructions[0].startswith("FROM python:3.11")
    assert "FROM python:3.11-slim AS worker" in instructions
    assert "RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1" in instructions
    assert "RUN pip install --no-cache-dir ." in instructions
    assert instructions[-2:] == ['ENTRYPOINT ["hpsearch"]', 'CMD ["studies"]']
    for copied in ("hpsearch", "studies", "pyproject.toml"):
        assert any(l.startswith("COPY") and copied in l for l in instructions)


def test_dockerfile_copies_the_phase_files_before_installing_the_package():
    """They install as the package hpsearch.studies: `pip install .` needs them there."""
    lines = [l.strip() for l in (REPO / "Dockerfile").read_text().splitlines()]
    install = lines.index("RUN pip install --no-cache-dir .")
    assert lines.index("COPY studies ./studies") < install
    assert lines.index("COPY hpsearch ./hpsearch") < install


def test_compose_workers_read_the_data_folder_and_write_a_cache_of_their_own():
    worker = compose()["services"]["worker"]
    assert "./storage/data:/data:ro" in worker["volumes"]
    cache = worker["environment"]["HPSEARCH_CACHE_DIR"]
    assert any(v.endswith(f":{cache}") and not v.startswith(".") for v in worker["volumes"])
    assert "datacache" in compose()["volumes"]


def test_the_kubernetes_job_is_a_valid_job_with_the_storage_from_a_secret():
    """Checked against the Kubernetes API's own models (the official client), not a cluster."""
    kubernetes = pytest.importorskip("kubernetes")  # a test dependency: .ci/run installs it
    manifest = yaml.safe_load((REPO / "deploy" / "kubernetes-job.yaml").read_text())
    client = kubernetes.client.ApiClient()
    job = client._ApiClient__deserialize(manifest, "V1Job")  # raises on a missing required field
    assert (job.api_version, job.kind) == ("batch/v1", "Job")
    assert job.spec.parallelism >= 2 and job.spec.completions is None  # a work queue
    (container,) = job.spec.template.spec.containers
    storage = next(e for e in container.env if e.name == "HPSEARCH_STORAGE")
    assert storage.value is None and storage.value_from.secret_key_ref.name == "hpsearch-storage"
    assert container.resources.limits["nvidia.com/gpu"] == "1"
    assert container.args[:2] == ["run", "--study"]
    assert job.spec.template.spec.restart_policy == "OnFailure"
    # Every key of the file is one the model knows (the client ignores unknown ones).
    assert client.sanitize_for_serialization(job) == manifest
