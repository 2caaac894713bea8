"""docker-compose.yml and the Dockerfile, checked as files (no Docker engine here)."""

from __future__ import annotations

import yaml

from tests.conftest import REPO


def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_services_share_one_postgres_storage():
    services = compose()["services"]
    assert set(services) == {"postgres", "dashboard", "worker"}
    url = services["worker"]["environment"]["HPSEARCH_STORAGE"]
    assert url.startswith("postgresql+psycopg://") and "@postgres:5432/" in url
    assert services["dashboard"]["command"] == [url]
    for name in ("dashboard", "worker"):
        assert services[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "healthcheck" in services["postgres"]


def test_compose_credentials_match_the_postgres_service():
    services = compose()["services"]
    env = services["postgres"]["environment"]
    expected = (f"postgresql+psycopg://{env['POSTGRES_USER']}:{env['POSTGRES_PASSWORD']}"
                f"@postgres:5432/{env['POSTGRES_DB']}")
    assert services["worker"]["environment"]["HPSEARCH_STORAGE"] == expected


def test_dockerfile_installs_the_pinned_torch_and_the_package():
    lines = [l.strip() for l in (REPO / "Dockerfile").read_text().splitlines()]
    instructions = [l for l in lines if l and not l.startswith("#")]
    assert instructions[0].startswith("FROM python:3.11")
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
