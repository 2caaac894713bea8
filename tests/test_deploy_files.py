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
