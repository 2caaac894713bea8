"""The LR range test: stops where the loss explodes, suggests an LR below it [004]."""

from __future__ import annotations

import dataclasses
import functools
import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError, TrainingError
from hpsearch.protocol.lr_find import (
    LRFindResult,
    lr_find,
    lr_schedule,
    plot_lr_find,
    smooth,
    stop_reason,
    suggest_lr,
)
from hpsearch.train import dataset, load_data, model

CPU = torch.device("cpu")
EXPLODED = ("loss exceeded 4x its minimum", "loss not finite")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Train on one CPU thread: these models gain nothing from two, and on a loaded 2-core box
    two threads wait on each other (the digits run took 31 s instead of 1.5 s)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class QuadraticBowl(nn.Module):
    """One weight w whose training loss is exactly q = curvature/2 * (w - x)^2 + 1 per sample.

    Cross-entropy with label 0 over the logits (0, q + log(1 - e^-q)) is log(1 + e^q - 1) = q.
    Plain SGD on a quadratic of curvature L contracts w - mean(x) by (1 - lr L) per step, so
    it diverges for lr > 2/L; with heavy-ball momentum m, for lr > 2(1 + m)/L (Polyak).
    The batch means of x jitter w, so the instability shows as soon as it sets in.
    """

    def __init__(self, curvature: float, start: float):
        super().__init__()
        self.curvature = curvature
        self.w = nn.Parameter(torch.tensor(start))

    def forward(self, x):
        q = 0.5 * self.curvature * (self.w - x[:, 0]) ** 2 + 1.0
        return torch.stack([torch.zeros_like(q), q + torch.log(-torch.expm1(-q))], dim=1)


@model("lr_find_bowl")
def bowl(config, input_shape, num_classes, curvature=1.0, start=10.0):
    return QuadraticBowl(curvature, start)


def _bowl_samples(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(n, 1, generator=torch.Generator().manual_seed(0))
    return x, torch.zeros(n, dtype=torch.int64)  # label 0: the loss is q itself


@dataset("lr_find_bowl_tensors")
def bowl_tensors(config, n=512):
    return {"train": _bowl_samples(n), "val": _bowl_samples(64), "num_classes": 2}


@dataset("lr_find_bowl_dataset")
def bowl_dataset(config, n=512):
    return {"train": TensorDataset(*_bowl_samples(n)), "val": TensorDataset(*_bowl_samples(64)),
            "num_classes": 2, "input_shape": (1,)}


def bowl_config(curvature=1.0, momentum=0.0, data="lr_find_bowl_tensors") -> TrainConfig:
    return TrainConfig(model="lr_find_bowl", model_args={"curvature": curvature}, dataset=data,
                       optimizer="sgd", momentum=momentum, batch_size=32)


@functools.cache  # one run per setting for the whole module: results are only read
def run_bowl(curvature=1.0, momentum=0.0, data="lr_find_bowl_tensors", **kwargs) -> LRFindResult:
    config = bowl_config(curvature, momentum, data)
    return lr_find(config, load_data(config, CPU), CPU, **kwargs)


@pytest.mark.parametrize("curvature, momentum", [(1.0, 0.0), (10.0, 0.0), (1.0, 0.9)])
def test_sgd_on_a_quadratic_stops_at_its_known_divergence_threshold(curvature, momentum):
    threshold = 2 * (1 + momentum) / curvature
    result = run_bowl(curvature, momentum)
    assert result.stopped_early and result.reason in EXPLODED
    assert threshold / 2 < result.high < threshold * 2  # observed: within 15%
    assert result.low < result.suggested_lr < threshold
    assert result.suggested_lr <= result.high


def test_a_dataset_split_streams_through_a_dataloader_with_the_same_answer():
    result = run_bowl(data="lr_find_bowl_dataset")
    assert result.reason in EXPLODED
    assert 1.0 < result.high < 4.0  # threshold 2/L = 2
    assert result.suggested_lr < 2.0


def test_digits_mlp_with_adam_suggests_a_sensible_lr_and_stops_when_the_loss_explodes():
    config = TrainConfig()  # reference MLP 3x100, Adam, batch 300 [001]
    result = lr_find(config, load_data(config, CPU), CPU)
    assert result.stopped_early and result.reason in EXPLODED
    assert 1e-4 <= result.suggested_lr <= 1e-1
    assert result.low < result.suggested_lr <= result.high
    assert result.raw_losses[0] == pytest.approx(math.log(10), rel=0.1)  # log(K) at start [004]


def test_the_lr_rises_geometrically_and_monotonically_from_min_to_max():
    schedule = lr_schedule(1e-6, 1.0, 7)
    assert schedule[0] == 1e-6 and schedule[-1] == pytest.approx(1.0)
    assert all(b / a == pytest.approx(10.0) for a, b in zip(schedule, schedule[1:]))
    result = run_bowl(min_lr=1e-4, max_lr=1.0, max_steps=41)
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:])]
    assert result.lrs[0] == pytest.approx(1e-4) and result.lrs[-1] == pytest.approx(1.0)
    assert all(r == pytest.approx(10 ** 0.1) for r in ratios)  # 4 decades in 40 steps


def test_below_the_threshold_the_test_runs_every_step_to_max_lr():
    result = run_bowl(min_lr=1e-4, max_lr=1.0, max_steps=41)  # threshold 2/L = 2
    assert (result.reason, result.stopped_early, result.steps) == ("reached max_lr", False, 41)
    assert result.low < result.suggested_lr <= result.high


def test_a_loss_that_overflows_stops_the_test_and_is_not_recorded():
    result = run_bowl(10.0, divergence_factor=math.inf)  # only a loss past float32 can stop it
    assert result.reason == "loss not finite" and result.stopped_early
    assert all(math.isfinite(v) for v in result.raw_losses + result.losses)
    assert result.steps < 200


def test_stop_reason_needs_the_smoothed_loss_above_4x_its_minimum():
    assert stop_reason(9.0, 3.99, 1.0) is None  # a spiking batch alone does not stop it
    assert stop_reason(1.0, 4.0, 1.0) is None  # strictly above
    assert stop_reason(1.0, 4.01, 1.0) == "loss exceeded 4x its minimum"
    assert stop_reason(1.0, 2.6, 0.5, divergence_factor=5) == "loss exceeded 5x its minimum"


@pytest.mark.parametrize("raw", [math.nan, math.inf, -math.inf])
def test_stop_reason_stops_on_a_loss_that_is_not_finite(raw):
    assert stop_reason(raw, 1.0, 1.0) == "loss not finite"


def test_bias_corrected_average_starts_at_the_first_loss_and_follows_a_constant():
    average, smoothed = smooth(0.0, 2.5, 0, beta=0.98)
    assert smoothed == pytest.approx(2.5)
    for step in range(1, 30):
        average, smoothed = smooth(average, 2.5, step, beta=0.98)
        assert smoothed == pytest.approx(2.5)


@pytest.mark.parametrize("losses", [
    [2.3] * 30 + [2.3 - 0.1 * i for i in range(20)] + [0.3 + 0.5 * i for i in range(10)],
    [5.0 - 0.01 * i for i in range(12)],  # too short for the slope: high / 10
    [1.0 + 0.1 * i for i in range(50)],  # rising from the start
    [1.0] * 40,  # flat
])
def test_suggestion_always_lies_in_its_range(losses):
    lrs = lr_schedule(1e-5, 1.0, len(losses))
    suggested, low, high = suggest_lr(lrs, losses)
    assert 0 < low < suggested <= high


def test_suggestion_is_the_steepest_descent_and_high_the_edge_of_the_bottom():
    lrs = lr_schedule(1e-4, 1e2, 61)  # 10 steps per decade
    falling = [2.0] * 20 + [2.0 - 0.1 * i for i in range(1, 11)] + [1.0] * 15
    losses = falling + [1.0 + 2.0 * i for i in range(1, 17)]
    suggested, low, high = suggest_lr(lrs, losses)
    assert lrs[20] <= suggested <= lrs[30]  # inside the descent
    assert lrs[40] <= high <= lrs[45]  # the flat bottom's far edge, not a dip inside it
    assert low == pytest.approx(suggested / 3)


def test_plot_is_a_png_in_a_new_folder(tmp_path):
    result = run_bowl()
    path = plot_lr_find(result, tmp_path / "plots" / "deep" / "lr.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_to_dict_is_strict_json_with_nan_and_inf_as_null():
    result = LRFindResult([1e-3, 1e-2], [2.0, math.nan], [2.0, math.inf], 1e-3, 3e-4,
                          math.inf, True, "loss not finite")
    stored = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert stored["high"] is None and stored["losses"] == [2.0, None]
    assert stored["steps"] == 2 and stored["reason"] == "loss not finite"
    real = run_bowl().to_dict()
    assert set(real) >= {"suggested", "low", "high", "reason", "steps", "lrs", "losses"}
    json.dumps(real, allow_nan=False)


class _NaNModel(nn.Module):
    """Logits that are NaN from the first batch on."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return torch.full((len(x), 2), math.nan) * self.w


@model("lr_find_nan")
def nan_model(config, input_shape, num_classes):
    return _NaNModel()


def test_a_loss_never_finite_is_a_training_error():
    config = dataclasses.replace(bowl_config(), model="lr_find_nan", model_args={})
    with pytest.raises(TrainingError, match="not finite from the first batch"):
        lr_find(config, load_data(config, CPU), CPU)


def test_an_empty_lr_range_is_a_config_error():
    with pytest.raises(ConfigError) as error:
        run_bowl(min_lr=1.0, max_lr=0.1)
    assert str(error.value) == (
        "LR range test: `0 < min_lr < max_lr` must hold, got (min_lr=1.0, max_lr=0.1); "
        "fix: e.g. min_lr=1e-7, max_lr=10"
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_cuda_with_the_same_answer():
    config = bowl_config()
    device = torch.device("cuda")
    result = lr_find(config, load_data(config, device), device)
    assert result.reason in EXPLODED and 1.0 < result.high < 4.0
