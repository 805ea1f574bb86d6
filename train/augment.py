"""Batch data augmentation on images ``(B, C, H, W)``, on whatever device they live.

Augmentation is applied to each *data* input before encoding: the parity model's targets
come from the base model on the same augmented inputs, so any label-preserving change
gives new, correctly labelled training groups.  Random numbers come from a CPU
`torch.Generator`, so a run is reproducible on CPU and CUDA alike.

Presets (``augment`` in the configs): ``none``; ``shift`` (up to 2 px); ``shift-rotate``
(2 px and 10 degrees: handwritten digits); ``shift-flip`` (2 px and horizontal flips:
Fashion-MNIST); ``crop-flip`` (4 px and flips: CIFAR's pad-and-crop).  ``auto`` picks the
data set's own (`train.data.Split.augmentation`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn import functional


@dataclass(frozen=True)
class Augmentation:
    """Random affine changes: translation (pixels), rotation (degrees), horizontal flips."""

    shift: float = 0.0
    rotate: float = 0.0
    flip: bool = False

    @property
    def active(self) -> bool:
        return self.shift > 0 or self.rotate > 0 or self.flip


PRESETS = {
    "none": Augmentation(),
    "shift": Augmentation(shift=2.0),
    "shift-rotate": Augmentation(shift=2.0, rotate=10.0),
    "shift-flip": Augmentation(shift=2.0, flip=True),
    "crop-flip": Augmentation(shift=4.0, flip=True),
}


def resolve(name: str, dataset_default: str) -> Augmentation:
    """The preset called ``name`` (``auto``: the data set's ``dataset_default``)."""
    name = dataset_default if name == "auto" else name
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown augmentation {name!r}; expected 'auto' or one of {sorted(PRESETS)}"
        ) from None


def check_augmentation(name: str, dataset_default: str, x: torch.Tensor) -> Augmentation:
    """`resolve`, and refuse an active augmentation for inputs that are not images."""
    how = resolve(name, dataset_default)
    if how.active and x.dim() != 4:
        raise ValueError(
            f"augmentation {name!r} needs image inputs (N, C, H, W), got {tuple(x.shape)}"
        )
    return how


def augment(x: torch.Tensor, how: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """``x`` ``(B, C, H, W)`` with an independent random transform per image.

    Without rotation, shifts are whole pixels (exact, like pad-and-crop); with rotation the
    image is resampled bilinearly.  Uncovered pixels are zero.
    """
    if not how.active:
        return x
    if x.dim() != 4:
        raise ValueError(f"augmentation needs images (B, C, H, W), got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    shifts = (torch.rand(b, 2, generator=generator) * 2 - 1) * how.shift  # (B, 2) pixels
    angles = (torch.rand(b, generator=generator) * 2 - 1) * math.radians(how.rotate)  # (B,)
    flips = torch.ones(b)
    if how.flip:
        flips = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    if how.rotate == 0:
        shifts = shifts.round()
    cos, sin = torch.cos(angles), torch.sin(angles)
    theta = torch.zeros(b, 2, 3)  # output -> input sampling, normalised coordinates
    theta[:, 0, 0], theta[:, 0, 1] = cos * flips, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin * flips, cos
    theta[:, 0, 2], theta[:, 1, 2] = 2 * shifts[:, 0] / w, 2 * shifts[:, 1] / h
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = functional.affine_grid(theta, list(x.shape), align_corners=False)
    mode = "bilinear" if how.rotate else "nearest"
    return functional.grid_sample(x, grid, mode=mode, padding_mode="zeros", align_corners=False)
