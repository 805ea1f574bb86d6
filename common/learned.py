"""Learned codes (paradigm 1 of "Learning-Based Coded Computation", Kosaian et al.).

The *code* is learned and the deployed model F answers the parity queries: an encoder
network maps k inputs to r parity inputs, F runs on them like on any query, and a decoder
network maps the k + r outputs (the erased ones zeroed) to the k data outputs.

`LearnedCode` is the one definition of that arithmetic.  Training (`train.learned`)
calls its torch methods, `parities` and `reconstruct`, with F in between; serving (the
frontend) calls the same module through the `common.codes.Code` protocol on NumPy arrays
(`encode_all`, `decode_erasures`), which convert and call `parities` and `reconstruct`.
`load_learned_code` reads a training run's ``encoder/`` and ``decoder/`` bundles and
refuses them unless both were trained for the served base model, k and r.

The decoder sees F's raw outputs divided by ``output_scale`` (the spread of F's outputs
on the training data, recorded in the decoder's arguments), and its answer is multiplied
back: the network works at unit scale whatever the size of F's logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from common.bundle import BundleMismatchError, Manifest, read_manifest
from common.codes import check_erasures
from common.models import load_model

#: the code name a served learned code goes by (``--code learned``)
LEARNED = "learned"
#: the folders of a training run that hold the two networks
ENCODER_DIR, DECODER_DIR = "encoder", "decoder"


class LearnedCode(nn.Module):
    """A learned encoder and decoder for k data slots and r parities.

    ``encoder`` maps ``(B, k, *sample)`` to ``(B, r, *sample)`` (its input normalisation
    included); ``decoder`` maps ``(B, k + r, O)`` to ``(B, k, O)``.  ``off_loop`` tells
    the frontend which steps to run in a worker thread: encoding, a pass of the large
    encoder on every group (1.5-13 ms at k=2-4 on the 2-core VM), but not decoding, a pass
    of a small decoder for late outputs only (0.2-0.8 ms, less than a thread hand-off adds
    to its answer there; bench/RESULTS.md, "Every code").
    """

    off_loop = frozenset({"encode"})

    def __init__(self, encoder: nn.Module, decoder: nn.Module, k: int, r: int) -> None:
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.k, self.r = k, r

    @property
    def name(self) -> str:
        return LEARNED

    # -- torch: what training differentiates through ----------------------------------

    def parities(self, inputs: torch.Tensor) -> torch.Tensor:
        """Parity inputs ``(r, B, *sample)`` from ``inputs`` ``(k, B, *sample)``."""
        return self.encoder(inputs.transpose(0, 1)).transpose(0, 1)  # type: ignore[no-any-return]

    def reconstruct(
        self,
        outputs: torch.Tensor,
        parity_outputs: torch.Tensor,
        erased: torch.Tensor,
        parity_erased: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decoded data outputs ``(k, B, O)`` from F's outputs ``(k, B, O)`` and
        ``(r, B, O)``; ``erased`` ``(k, B)`` and ``parity_erased`` ``(r, B)`` (True:
        did not arrive) are zeroed before the decoder sees them."""
        kept = outputs * (~erased).unsqueeze(-1)
        if parity_erased is not None:
            parity_outputs = parity_outputs * (~parity_erased).unsqueeze(-1)
        decoder_in = torch.cat([kept, parity_outputs]).transpose(0, 1)  # (B, k+r, O)
        return self.decoder(decoder_in).transpose(0, 1)  # type: ignore[no-any-return]

    # -- common.codes.Code on NumPy arrays: what the frontend calls ---------------------

    def encode(self, inputs: Any) -> Any:
        return self.encode_all(inputs)[0]

    def encode_all(self, inputs: Any) -> list[Any]:
        """The r parity inputs ``(B, *sample)`` (float32) of ``inputs`` ``(k, B, *sample)``,
        NumPy arrays or torch tensors (answered in the same kind)."""
        x = _tensor(inputs)
        if len(x) != self.k:
            raise ValueError(f"expected {self.k} slots along the first axis, got {len(x)}")
        with torch.no_grad():
            return [_like(p, inputs) for p in self.parities(x)]

    def combine(self, outputs: Any) -> list[Any]:
        raise ValueError("a learned code trains no parity model: F answers its parity queries")

    def decode(self, parity_output: Any, outputs: Any, missing: int) -> Any:
        parities = [parity_output] + [None] * (self.r - 1)
        return self.decode_erasures(parities, outputs, [missing])[0]

    def decode_erasures(
        self, parity_outputs: Sequence[Any | None], outputs: Any, missing: Sequence[int]
    ) -> list[Any]:
        """``outputs[m]`` for each ``m`` in ``missing``, by one pass of the decoder."""
        check_erasures(self.k, self.r, parity_outputs, outputs, missing)
        out = _tensor(outputs)  # (k, B, *out)
        shape = out.shape[1:]
        out = out.reshape(self.k, shape[0], -1)  # (k, B, O)
        erased = torch.zeros(out.shape[:2], dtype=torch.bool)
        erased[list(missing)] = True
        absent = [p is None for p in parity_outputs]
        parity = torch.zeros((self.r, *out.shape[1:]))  # (r, B, O)
        for i, p in enumerate(parity_outputs):
            if p is not None:
                parity[i] = _tensor(p).reshape(out.shape[1:])
        parity_erased = torch.tensor(absent).unsqueeze(1).expand(self.r, out.shape[1])
        with torch.no_grad():
            decoded = self.reconstruct(out, parity, erased, parity_erased)  # (k, B, O)
        return [_like(decoded[m].reshape(shape), outputs) for m in missing]


def _tensor(array: Any) -> torch.Tensor:
    """A float32 CPU tensor of a NumPy array (a copy: wire buffers are read-only) or tensor."""
    if isinstance(array, torch.Tensor):
        return array.detach().float().cpu()
    return torch.from_numpy(np.array(array, np.float32))


def _like(result: torch.Tensor, reference: Any) -> Any:
    """``result`` as the kind of array ``reference`` is (a tensor, or NumPy)."""
    if isinstance(reference, torch.Tensor):
        return result.to(reference.device)
    return result.numpy()


def load_learned_code(
    run_dir: str | Path, base: Manifest, k: int, r: int, *, threads: int | None = 1
) -> LearnedCode:
    """The learned code of training run ``run_dir`` for base model ``base``, k and r.

    Raises `BundleMismatchError` unless its ``encoder/`` and ``decoder/`` bundles have
    those roles and were trained for exactly this base model's weights, k and r.
    ``threads`` sets this process's torch intra-op threads (None: leave them): one, as
    serving wants, since a batch of one group is too small to split and the frontend's
    event loop needs the other cores (with two threads on the busy 2-core VM a k=2
    encode took 32 ms instead of 1.5).
    """
    if threads is not None:
        torch.set_num_threads(threads)
    run = Path(run_dir)
    for role, folder in (("encoder", ENCODER_DIR), ("decoder", DECODER_DIR)):
        check_learned_for(base, read_manifest(run / folder), role=role, k=k, r=r)
    _, encoder = load_model(run / ENCODER_DIR)
    _, decoder = load_model(run / DECODER_DIR)
    return LearnedCode(encoder, decoder, k, r).eval()


def check_learned_for(base: Manifest, part: Manifest, *, role: str, k: int, r: int) -> None:
    """Raise `BundleMismatchError` unless ``part`` is a learned code's ``role`` network
    trained for ``base``'s weights, ``k`` and ``r``."""
    info = part.parity
    where = f"learned-code {role} {part.name!r}"
    if part.role != role or info is None:
        raise BundleMismatchError(f"{where} has role {part.role!r}; expected {role!r}")
    if (info.k, info.r) != (k, r):
        raise BundleMismatchError(
            f"{where} was trained for k={info.k}, r={info.r}, but k={k}, r={r} is configured"
        )
    if info.base_sha256 != base.weights_sha256:
        raise BundleMismatchError(
            f"{where} was trained for base weights {info.base_sha256[:12]}... "
            f"({info.base_name!r}), but base model {base.name!r} has weights "
            f"{base.weights_sha256[:12]}..."
        )
