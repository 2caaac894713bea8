"""An exception in the user's code: one line naming their file and line, the cause kept."""

from __future__ import annotations

import pytest

from hpsearch.errors import UserCodeError
from hpsearch.train.user_code import call_user, describe, user_site


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    (tmp_path / "hp_uc.py").write_text(
        "import torch\n"
        "def build(width):\n"
        "    if width % 2:\n"
        "        raise ValueError('width must be even')\n"
        "    return width\n"
        "def shapes():\n"
        "    return torch.zeros(2, 3) @ torch.zeros(2, 3)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import hp_uc

    return hp_uc


def test_call_user_returns_what_the_code_returns(user_module):
    assert call_user("model factory `hp_uc:build`", user_module.build, 4) == 4


def test_a_raise_in_user_code_names_its_file_and_line(user_module):
    with pytest.raises(UserCodeError) as caught:
        call_user("model factory `hp_uc:build`", user_module.build, 3)
    assert str(caught.value) == (
        "model factory `hp_uc:build` raised ValueError: width must be even (at hp_uc.py:4, in "
        "build); fix: correct the code there (rerun with --debug for the whole traceback)")
    assert isinstance(caught.value.__cause__, ValueError)  # --debug prints it
    assert caught.value.site == "ValueError at hp_uc.py:4, in build"


def test_the_users_frame_is_found_below_torchs(user_module):
    with pytest.raises(RuntimeError) as caught:
        user_module.shapes()
    assert user_site(caught.value) == "hp_uc.py:7, in shapes"
    assert describe(caught.value).endswith("(at hp_uc.py:7, in shapes)")


def test_without_a_user_frame_the_site_is_the_library_frame():
    import torch

    with pytest.raises(UserCodeError) as caught:  # raised in torch, called from hpsearch
        call_user("model `x`", torch.nn.Linear(5, 4), torch.zeros(2, 3))
    assert "(at " not in str(caught.value)
    assert caught.value.site.startswith("RuntimeError at torch/nn/")
