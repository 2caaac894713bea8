"""Batched data augmentation on device-resident training batches [001, 003].

Every transform is a handful of tensor ops over the whole batch (airbench's way): no per-sample
Python, no host synchronisation. Validation and test batches are never augmented [001].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from hpsearch.config import TrainConfig
from hpsearch.errors import ConfigError

CROP_PAD = 2  # random translation by up to 2 px: a weak crop, as suits small models [003]
_IMAGE_ONLY = {"flip", "crop", "flip_crop"}


def check_augment(config: TrainConfig, input_shape: tuple[int, ...]) -> None:
    """Reject an image augmentation on inputs that are not (C, H, W) images."""
    if config.augment in _IMAGE_ONLY and len(input_shape) != 3:
        raise ConfigError(
            f"augment={config.augment} needs image inputs (C, H, W), got input shape "
            f"{tuple(input_shape)}; fix: use augment=none or augment=noise"
        )


def augment(x: Tensor, config: TrainConfig, generator: torch.Generator) -> Tensor:
    """`x` augmented as `config.augment` says; random draws come from `generator`."""
    kind = config.augment
    if kind == "noise":
        return add_noise(x, config.noise_std, generator)
    if kind in ("flip", "flip_crop"):
        x = random_flip(x, generator)
    if kind in ("crop", "flip_crop"):
        x = random_translate(x, CROP_PAD, generator)
    return x


def add_noise(x: Tensor, std: float, generator: torch.Generator) -> Tensor:
    """Gaussian noise of `std` (in normalised units) on every input value [001]."""
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x + std * noise


def random_flip(x: Tensor, generator: torch.Generator) -> Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(len(x), generator=generator, device=x.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def random_translate(x: Tensor, pad: int, generator: torch.Generator) -> Tensor:
    """Shift each image by up to `pad` px each way; zero padding = the channel mean once
    normalised. Two gathers over a padded copy: one pass whatever the batch size."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    shifts = torch.randint(0, 2 * pad + 1, (2, n), generator=generator, device=x.device)
    rows = shifts[0].view(n, 1) + torch.arange(h, device=x.device)  # (n, h) rows to keep
    cols = shifts[1].view(n, 1) + torch.arange(w, device=x.device)  # (n, w) columns to keep
    x = padded.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w + 2 * pad))
    return x.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))
