"""Shared fixtures: a storage URL for every backend, study-file helpers, a clean cwd.

Every storage test runs against SQLite and PostgreSQL through the `storage_url` fixture
(STYLE.md: one storage suite, every backend). PostgreSQL tests use the server named by
HPSEARCH_TEST_POSTGRES_URL, each in a database of its own that is dropped afterwards; they
skip on a developer machine without it, and fail in CI (CI=true), where it must exist.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
POSTGRES_ENV = "HPSEARCH_TEST_POSTGRES_URL"


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    """Run each test in its own folder with no hpsearch environment variables set."""
    for name in ("HPSEARCH_STORAGE", "HPSEARCH_STUDIES_DIR", "HPSEARCH_DATA_DIR",
                 "HPSEARCH_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def isolated_imports(tmp_path):
    """User modules a test writes (`my_nets.py` in its folder) are forgotten after it: the
    next test's module of the same name is its own, not this one's from sys.modules."""
    from hpsearch.train import registry

    path, roots, modules = list(sys.path), list(registry._IMPORT_ROOTS), set(sys.modules)
    yield
    sys.path[:] = path
    registry._IMPORT_ROOTS[:] = roots
    for name in set(sys.modules) - modules:
        file = getattr(sys.modules[name], "__file__", None) or ""
        if file.startswith(str(tmp_path.parent.parent)):  # the session's temporary folders
            del sys.modules[name]


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


@pytest.fixture(scope="session")
def tiny_protocol(tmp_path_factory) -> str:
    """The storage URL of one tiny protocol run, every phase, tag `t` (digits, the MLP, 3
    epochs a trial, budgets x0.15: ~10 s), shared by the tests that only read what a protocol
    stores: the results (plots, report), the dashboard, the reading commands."""
    from hpsearch.phases.protocol import run_protocol

    folder = tmp_path_factory.mktemp("protocol")
    url = f"sqlite:///{folder / 'p.db'}"
    with pytest.MonkeyPatch.context() as patch:  # its data cache and checkpoints stay there
        patch.chdir(folder)
        for name in ("HPSEARCH_ARTIFACTS", "HPSEARCH_STORAGE", "HPSEARCH_STUDIES_DIR"):
            patch.delenv(name, raising=False)
        run_protocol(storage=url, overrides={"epochs": 3, "model": "mlp"}, trials_scale=0.15,
                     tag="t")
    return url


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests train many tiny models: on a 2-core CI box, torch's thread pool only contends.
    The `hpsearch` commands the tests start inherit it too (OMP_NUM_THREADS): one README
    example took 41 s with torch's default threads beside another process, 6.7 s with one.
    `--jobs` workers still set their own share (workers.cpu_threads)."""
    import torch

    torch.set_num_threads(1)
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"
    yield
    if previous is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = previous


# --- copies of the offline data: tests never write into SHARED_DATA -----------------------------


@pytest.fixture(autouse=True)
def isolated_data_cache(monkeypatch):
    """hpsearch's data cache is ./storage/data of the test's own folder, not the caller's."""
    monkeypatch.delenv("HPSEARCH_CACHE_DIR", raising=False)


@pytest.fixture
def mnist_gz_copy(shared_data_dir, tmp_path):
    """A writable data folder holding a copy of SHARED_DATA/MNIST/raw/*.gz; returns its root.

    Whatever the permissions of SHARED_DATA on this machine, tests work on the copy.
    """
    import shutil

    root = tmp_path / "user-data"
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for archive in sorted((shared_data_dir / "MNIST" / "raw").glob("*.gz")):
        shutil.copyfile(archive, raw / archive.name)  # copyfile: no read-only mode carried over
    return root


@pytest.fixture
def readonly_mnist_dir(mnist_gz_copy):
    """`mnist_gz_copy` made read-only (files 0o444, folders 0o555), writable again afterwards.

    Root ignores these modes: tests must check that nothing changed, not expect errors.
    """
    folders = [mnist_gz_copy, *(p for p in mnist_gz_copy.rglob("*") if p.is_dir())]
    for file in mnist_gz_copy.rglob("*"):
        if file.is_file():
            file.chmod(0o444)
    for folder in folders:
        folder.chmod(0o555)
    yield mnist_gz_copy
    for folder in folders:  # pytest must be able to delete tmp_path
        folder.chmod(0o755)
    for file in mnist_gz_copy.rglob("*"):
        if file.is_file():
            file.chmod(0o644)
