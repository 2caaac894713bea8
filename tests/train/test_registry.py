"""Registered names and `pkg.mod:fn` import paths, and their one-line errors."""

from __future__ import annotations

import pytest

from hpsearch.errors import ConfigError
from hpsearch.train import registry
from hpsearch.train.registry import resolve_factory

WHERE = "studies/x.yaml: base.model"


@pytest.fixture(autouse=True)
def clean_registry(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", {"model": {}, "dataset": {}})
    monkeypatch.setattr(registry, "_IMPORT_ROOTS", [])


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """Write `name.py` with `source` into a folder on sys.path; return the module name."""

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(source)
        monkeypatch.syspath_prepend(str(tmp_path))
        return name

    return write


def test_decorators_register_and_return_the_function_unchanged():
    def build(config, input_shape, num_classes):
        return None

    def make(config):
        return None

    assert registry.model("tiny")(build) is build
    assert registry.dataset("toy")(make) is make
    assert resolve_factory("tiny", "model", WHERE) is build
    assert resolve_factory("toy", "dataset", WHERE) is make
    assert registry.registered("model") == ["tiny"]


def test_model_and_dataset_names_live_apart():
    registry.model("same")(lambda *a: None)
    with pytest.raises(ConfigError, match="unknown dataset `same`"):
        resolve_factory("same", "dataset", "base.dataset")


def test_import_path_resolves_to_the_attribute(user_module):
    name = user_module("hp_reg_ok", "def build(config, shape, classes):\n    return 'built'\n")
    factory = resolve_factory(f"{name}:build", "model", WHERE)
    assert factory(None, (1,), 2) == "built"


def test_missing_module_message_says_where_it_looked(tmp_path):
    registry.add_import_root(tmp_path / "project")
    with pytest.raises(ConfigError) as error:
        resolve_factory("nowhere_pkg.nets:build", "model", WHERE)
    assert str(error.value) == (
        "studies/x.yaml: base.model: model factory `nowhere_pkg.nets:build`: module "
        f"`nowhere_pkg.nets` not found (looked in {tmp_path / 'project'}, {tmp_path} and the "
        "installed packages); fix: put nowhere_pkg.nets there, install it, or correct the "
        "path before the colon"
    )


def test_modules_resolve_from_the_working_directory_without_pythonpath(tmp_path):
    (tmp_path / "hp_reg_cwd.py").write_text("def build(*args):\n    return 'from cwd'\n")
    assert resolve_factory("hp_reg_cwd:build", "model", WHERE)() == "from cwd"


def test_modules_resolve_from_a_study_files_folder(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "hp_reg_beside.py").write_text("def build(*args):\n    return 'beside'\n")
    registry.add_import_root(project)
    assert resolve_factory("hp_reg_beside:build", "model", WHERE)() == "beside"


def test_nested_attributes_and_classes_resolve(user_module):
    name = user_module("hp_reg_nested", "class Outer:\n    class Inner:\n        pass\n")
    assert resolve_factory(f"{name}:Outer.Inner", "model", WHERE).__name__ == "Inner"


def test_missing_attribute_message(user_module):
    name = user_module("hp_reg_noattr", "x = 1\n")
    with pytest.raises(ConfigError) as error:
        resolve_factory(f"{name}:build", "dataset", "base.dataset")
    assert str(error.value) == (
        "base.dataset: dataset factory `hp_reg_noattr:build`: module `hp_reg_noattr` has no "
        "attribute `build`; fix: define `build` in hp_reg_noattr or correct the name after the colon"
    )


def test_not_callable_message(user_module):
    name = user_module("hp_reg_notcallable", "build = 3\n")
    with pytest.raises(ConfigError) as error:
        resolve_factory(f"{name}:build", "model", WHERE)
    assert str(error.value) == (
        "studies/x.yaml: base.model: model factory `hp_reg_notcallable:build`: `build` is not "
        "callable (got int); fix: point to a function or class"
    )


def test_a_module_whose_own_import_fails_is_not_reported_as_missing(user_module):
    name = user_module("hp_reg_broken", "import nowhere_dependency\n")
    with pytest.raises(ConfigError) as error:
        resolve_factory(f"{name}:build", "model", WHERE)
    assert str(error.value) == (
        "studies/x.yaml: base.model: model factory `hp_reg_broken:build`: importing "
        "`hp_reg_broken` failed (ModuleNotFoundError: No module named 'nowhere_dependency' at "
        "hp_reg_broken.py:1, in <module>); fix: correct the error in hp_reg_broken"
    )


def test_malformed_import_path_message():
    with pytest.raises(ConfigError) as error:
        resolve_factory("pkg.mod:", "model", WHERE)
    assert str(error.value) == (
        "studies/x.yaml: base.model: model factory `pkg.mod:` is not a valid import path; "
        "fix: write it as package.module:function"
    )


def test_unknown_name_lists_the_built_ins_and_registered_names():
    registry.model("tiny")(lambda *a: None)
    with pytest.raises(ConfigError) as error:
        resolve_factory("resnet", "model", "model")
    assert str(error.value) == (
        "model: unknown model `resnet`; fix: use one of mlp, cnn, torchvision:NAME, tiny, "
        "a name registered with @hpsearch.model(...), or an import path package.module:function"
    )


@pytest.mark.parametrize("name", ["mlp", "digits", "a:b", ""])
def test_built_in_or_malformed_names_cannot_be_registered(name):
    kind = "dataset" if name == "digits" else "model"
    with pytest.raises(ConfigError, match=r"^@hpsearch\."):
        registry._register(kind, name)
