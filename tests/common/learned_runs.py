"""A learned code's training run written without training: random encoder and decoder
networks saved as ``parm train learned`` saves them, for the tests of loading and serving."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from common.bundle import ParityInfo, TensorSpec, read_manifest
from common.learned import DECODER_DIR, ENCODER_DIR, LearnedCode
from common.models import build, save_bundle


def save_learned_run(
    run: Path,
    base: Path,
    *,
    k: int = 2,
    r: int = 1,
    seed: int = 0,
    roles: dict[str, str] | None = None,
) -> LearnedCode:
    """Write ``run/encoder`` and ``run/decoder`` for the base bundle at ``base``; the code."""
    manifest = read_manifest(base)
    sample, out = manifest.inputs[0].shape, manifest.outputs[0].shape
    parts: dict[str, tuple[str, dict[str, Any]]] = {
        ENCODER_DIR: ("mlp-encoder", {"k": k, "r": r, "sample_shape": list(sample)}),
        DECODER_DIR: ("mlp-decoder", {"k": k, "r": r, "out_features": math.prod(out), "hidden": 2}),
    }
    info = ParityInfo(k, "learned-mlp", manifest.weights_sha256, manifest.name, r)
    nets = {}
    for folder, (architecture, arch_args) in parts.items():
        torch.manual_seed(seed + len(folder))
        nets[folder] = net = build(architecture, **arch_args)
        save_bundle(
            run / folder, name=f"{manifest.name}-{folder}", role=(roles or {}).get(folder, folder),
            architecture=architecture, arch_args=arch_args, module=net,
            input_spec=TensorSpec("x", "FP32", (k, *sample)),
            output_spec=TensorSpec("y", "FP32", (r, *sample)),
            preprocessing={"mean": [0.0], "std": [1.0]}, parity=info,
        )  # fmt: skip
    return LearnedCode(nets[ENCODER_DIR], nets[DECODER_DIR], k, r).eval()
