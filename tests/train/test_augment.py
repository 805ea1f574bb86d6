"""Batch augmentation: exact pixel shifts, flips, rotations, seeded, images only."""

from __future__ import annotations

import pytest
import torch

from train.augment import PRESETS, Augmentation, augment, check_augmentation, resolve


def images(b: int = 8, c: int = 2, size: int = 10) -> torch.Tensor:
    return torch.rand(b, c, size, size, generator=torch.Generator().manual_seed(0))


def test_none_returns_the_input_itself():
    x = images()
    assert augment(x, PRESETS["none"], torch.Generator()) is x


def test_shifts_without_rotation_move_whole_pixels():
    x = images(b=64)
    out = augment(x, Augmentation(shift=2.0), torch.Generator().manual_seed(1))
    for src, dst in zip(x, out, strict=True):
        # Some integer (dy, dx) in [-2, 2] maps src onto dst exactly where both are defined.
        found = False
        for dy in range(-2, 3):
            for dx in range(-2, 3):
                shifted = torch.zeros_like(src)
                ys, xs = slice(max(0, -dy), 10 - max(0, dy)), slice(max(0, -dx), 10 - max(0, dx))
                yd, xd = slice(max(0, dy), 10 - max(0, -dy)), slice(max(0, dx), 10 - max(0, -dx))
                shifted[:, ys, xs] = src[:, yd, xd]
                found |= torch.equal(shifted, dst)
        assert found


def test_flips_mirror_the_width():
    x = images(b=32)
    out = augment(x, Augmentation(flip=True), torch.Generator().manual_seed(2))
    flipped = [torch.equal(o, s.flip(-1)) for o, s in zip(out, x, strict=True)]
    kept = [torch.equal(o, s) for o, s in zip(out, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 0 < sum(flipped) < 32


def test_rotation_changes_images_and_keeps_the_shape():
    x = images()
    out = augment(x, PRESETS["shift-rotate"], torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)


def test_the_generator_fixes_the_result():
    x = images()
    a = augment(x, PRESETS["crop-flip"], torch.Generator().manual_seed(5))
    b = augment(x, PRESETS["crop-flip"], torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


def test_auto_takes_the_data_sets_preset():
    assert resolve("auto", "shift-flip") == PRESETS["shift-flip"]
    with pytest.raises(ValueError, match="unknown augmentation 'jitter'"):
        resolve("jitter", "none")


def test_flat_inputs_cannot_be_augmented():
    with pytest.raises(ValueError, match="needs image inputs"):
        check_augmentation("shift", "none", torch.zeros(4, 64))
    assert check_augmentation("auto", "none", torch.zeros(4, 64)) == PRESETS["none"]
    with pytest.raises(ValueError, match="needs images"):
        augment(torch.zeros(4, 64), PRESETS["shift"], torch.Generator())
