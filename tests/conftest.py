"""Shared fixtures: a storage URL for every backend, study-file helpers, a clean cwd.

Every storage test runs against SQLite and PostgreSQL through the `storage_url` fixture
(STYLE.md: one storage suite, every backend). PostgreSQL tests use the server named by
HPSEARCH_TEST_POSTGRES_URL, each in a database of its own that is dropped afterwards; they
skip on a developer machine without it, and fail in CI (CI=true), where it must exist.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
POSTGRES_ENV = "HPSEARCH_TEST_POSTGRES_URL"


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    """Run each test in its own folder with no hpsearch environment variables set."""
    for name in ("HPSEARCH_STORAGE", "HPSEARCH_STUDIES_DIR", "HPSEARCH_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def postgres_admin_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail(f"{POSTGRES_ENV} is not set: CI must run the PostgreSQL tests")
    pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV} (set by .ci/run)")


@pytest.fixture
def postgres_url():
    """A fresh, uniquely named PostgreSQL database, dropped after the test."""
    import sqlalchemy

    admin_url = postgres_admin_url()
    name = f"hpsearch_test_{uuid.uuid4().hex[:12]}"
    engine = sqlalchemy.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sqlalchemy.engine.make_url(admin_url).set(database=name)
    yield url.render_as_string(hide_password=False)
    with engine.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def storage_url(request, tmp_path):
    """The storage URL of each backend in turn."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'studies.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def studies_dir(tmp_path):
    """An empty studies folder; `write_study` puts files in it."""
    folder = tmp_path / "studies"
    folder.mkdir()
    return folder


@pytest.fixture
def write_study(studies_dir):
    def write(name: str, text: str) -> Path:
        path = studies_dir / f"{name}.yaml"
        path.write_text(text)
        return path

    return write


@pytest.fixture
def shared_data_dir():
    """The offline MNIST/Fashion-MNIST files; skipped only when the folder is absent."""
    if not (SHARED_DATA / "MNIST" / "raw").is_dir():
        pytest.skip(f"{SHARED_DATA / 'MNIST' / 'raw'} is absent")
    return SHARED_DATA


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests train many tiny models: on a 2-core CI box, torch's thread pool only contends."""
    import torch

    torch.set_num_threads(1)
