"""The package as installed: every folder of hpsearch/ listed, the phase files inside it."""

from __future__ import annotations

import tomllib

from hpsearch.spec.catalog import bundled_dir, list_study_files
from tests.conftest import REPO


def test_every_package_folder_is_listed_in_pyproject():
    listed = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    folders = {"hpsearch"} | {f"hpsearch.{p.parent.name}" for p in (REPO / "hpsearch").glob("*/__init__.py")}
    assert set(listed) == folders | {"hpsearch.studies"}


def test_the_installed_phase_files_are_the_repositorys_studies():
    installed = sorted(p.name for p in list_study_files(bundled_dir()))
    assert installed == sorted(p.name for p in list_study_files(REPO / "studies"))
    assert "setup.yaml" in installed and "test.yaml" in installed
