"""Erasure codes over queries: the one encoder/decoder shared by serving and training.

A *code* turns k data inputs into r parity inputs (``encode_all``; ``encode`` is the
first, for r=1 the only one) and, given the outputs that did arrive, recovers the
missing data outputs (``decode``, ``decode_erasures``).  ``combine`` says what each
parity model is trained to output: the code's combination of the k data outputs.  The
arithmetic is written only with operations that NumPy arrays and torch tensors share
(``sum(0)``, ``+``, ``-``, scalar ``*``, slicing, slice assignment), so the frontend calls
it on NumPy arrays and ``train/`` on torch tensors (CPU or CUDA): one definition of the
maths for training and serving.  A parity model is only valid for the code it was
trained with; bundles record the code's ``name``, k and r.

Codes:

- ``sum`` (r=1): P = X1 + ... + Xk; F(Xj) = Fp(P) - sum_{i!=j} F(Xi).
- ``concat`` (r=1, images): each input is downsampled by area averaging and tiled into one
  image of the original size (k=2: side by side, each H x W/2; k=3, 4: a 2x2 grid of
  H/2 x W/2 tiles, unused tiles zero; larger k: an n x n grid), channel by channel: channel
  c of the parity depends only on channel c of the inputs.  The parity model learns
  Fp(P) = F(X1) + ... + F(Xk), so the decoder is the same subtraction as ``sum``.
- ``linear`` (any r): parity i is sum_j A[i, j] Xj for a real Vandermonde matrix
  A[i, j] = ((j + 1) / k) ** i.  Its nodes are positive and increasing, so every square
  submatrix of A is non-singular (A is totally positive): any k of the k + r outputs
  determine the rest, and decoding solves that small linear system.  Row 0 is all ones,
  so ``linear`` with r=1 is ``sum``.

Shapes: ``inputs`` is ``(k, B, *sample)`` -- slot first, then the batch a slot carries (1
in the papers' default), then the per-sample shape.  ``outputs`` is ``(k, B, *out)``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import numpy as np

Array = TypeVar("Array", bound=Any)

Matrix = tuple[tuple[float, ...], ...]


class UnknownCodeError(ValueError):
    """The named code does not exist."""


class Code(Protocol):
    """An encoder/decoder pair: k data slots protected by r parities."""

    @property
    def name(self) -> str: ...

    @property
    def k(self) -> int: ...

    @property
    def r(self) -> int: ...

    def encode(self, inputs: Array) -> Array:
        """The first parity input ``(B, *sample)`` from ``inputs`` ``(k, B, *sample)``."""
        ...

    def encode_all(self, inputs: Array) -> list[Array]:
        """All r parity inputs, each ``(B, *sample)``."""
        ...

    def combine(self, outputs: Array) -> list[Array]:
        """What each of the r parity models should output for data outputs ``(k, B, *out)``."""
        ...

    def decode(self, parity_output: Array, outputs: Array, missing: int) -> Array:
        """Recover ``outputs[missing]`` from the first parity's output and the other outputs.

        ``outputs`` is ``(k, B, *out)``; the row at ``missing`` is ignored (it may hold
        anything, zeros by convention).
        """
        ...

    def decode_erasures(
        self, parity_outputs: Sequence[Array | None], outputs: Array, missing: Sequence[int]
    ) -> list[Array]:
        """Recover ``outputs[m]`` for each ``m`` in ``missing``, one ``(B, *out)`` each.

        ``parity_outputs`` has r entries, ``None`` where a parity output did not arrive;
        at least ``len(missing)`` must be present.  Rows of ``outputs`` at ``missing`` are
        ignored.
        """
        ...


@dataclass(frozen=True)
class _SubtractionCode:
    """One parity whose model should output the plain sum of the k outputs; decoded by
    subtraction.  The sum and concat codes differ only in how they encode."""

    k: int

    def __post_init__(self) -> None:
        _check_k(self.k)

    @property
    def r(self) -> int:
        return 1

    def combine(self, outputs: Array) -> list[Array]:
        _check_slots(outputs, self.k)
        return [outputs.sum(0)]  # (B, *out)

    def decode(self, parity_output: Array, outputs: Array, missing: int) -> Array:
        return _subtract(parity_output, outputs, missing, self.k)

    def decode_erasures(
        self, parity_outputs: Sequence[Array | None], outputs: Array, missing: Sequence[int]
    ) -> list[Array]:
        return _solve(_ones(self.k), parity_outputs, outputs, missing)


@dataclass(frozen=True)
class SumCode(_SubtractionCode):
    """The addition code of the papers: P = X1 + ... + Xk, F(Xj) = Fp(P) - sum_{i!=j} F(Xi)."""

    k: int
    name: str = "sum"

    def encode(self, inputs: Array) -> Array:
        _check_slots(inputs, self.k)
        return cast(Array, inputs.sum(0))  # (B, *sample)

    def encode_all(self, inputs: Array) -> list[Array]:
        return [self.encode(inputs)]


@dataclass(frozen=True)
class ConcatCode(_SubtractionCode):
    """The image-concatenation code: k downsampled images tiled into one parity image."""

    k: int
    name: str = "concat"

    @property
    def grid(self) -> tuple[int, int]:
        """(rows, columns) of tiles: 1x2 for k=2, else the smallest square that holds k."""
        if self.k == 2:
            return 1, 2
        side = math.isqrt(self.k - 1) + 1
        return side, side

    def encode(self, inputs: Array) -> Array:
        _check_slots(inputs, self.k)
        if inputs.ndim < 4:
            raise ValueError(
                f"the concat code needs image inputs (k, B, ..., H, W), got shape "
                f"{tuple(inputs.shape)}"
            )
        rows, cols = self.grid
        height, width = inputs.shape[-2], inputs.shape[-1]
        if height % rows or width % cols:
            raise ValueError(
                f"the concat code for k={self.k} tiles a {rows}x{cols} grid: image height "
                f"and width must be multiples of {rows} and {cols}, got {height}x{width}"
            )
        h, w = height // rows, width // cols
        parity = cast(Array, _zeros_like(inputs[0]))  # (B, *sample)
        for slot in range(self.k):
            row, col = divmod(slot, cols)
            # Only the last two axes are touched: channel c comes from channel c alone.
            tile = _downsample(inputs[slot], rows, cols)  # (B, ..., h, w)
            parity[..., row * h : (row + 1) * h, col * w : (col + 1) * w] = tile
        return parity

    def encode_all(self, inputs: Array) -> list[Array]:
        return [self.encode(inputs)]


@dataclass(frozen=True)
class LinearCode:
    """r parities with real Vandermonde coefficients: any k of the k + r outputs decode."""

    k: int
    r: int = 1
    name: str = "linear"

    def __post_init__(self) -> None:
        _check_k(self.k)
        if self.r < 1:
            raise ValueError(f"a code needs r >= 1 parities, got r={self.r}")

    @property
    def coefficients(self) -> Matrix:
        """A ``(r, k)``: parity i is sum_j A[i][j] X_j."""
        return _vandermonde(self.k, self.r)

    def encode(self, inputs: Array) -> Array:
        return self.encode_all(inputs)[0]

    def encode_all(self, inputs: Array) -> list[Array]:
        _check_slots(inputs, self.k)
        return [_weighted_sum(row, inputs, range(self.k)) for row in self.coefficients]

    def combine(self, outputs: Array) -> list[Array]:
        return self.encode_all(outputs)  # linear: the outputs combine like the inputs

    def decode(self, parity_output: Array, outputs: Array, missing: int) -> Array:
        parities: list[Array | None] = [parity_output] + [None] * (self.r - 1)
        return self.decode_erasures(parities, outputs, [missing])[0]

    def decode_erasures(
        self, parity_outputs: Sequence[Array | None], outputs: Array, missing: Sequence[int]
    ) -> list[Array]:
        return _solve(self.coefficients, parity_outputs, outputs, missing)


CODES = {"sum": SumCode, "concat": ConcatCode, "linear": LinearCode}


def make_code(name: str, k: int, r: int = 1) -> Code:
    """The code called ``name`` for ``k`` data slots and ``r`` parities."""
    if name not in CODES:
        raise UnknownCodeError(f"unknown code {name!r}; expected one of {sorted(CODES)}")
    if name == "linear":
        return LinearCode(k, r)
    if r != 1:
        raise ValueError(f"code {name!r} has one parity (r=1), got r={r}; use 'linear' for r>1")
    code: Code = CODES[name](k)
    return code


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"a code needs k >= 1 data slots, got k={k}")


def _check_slots(array: Any, k: int) -> None:
    if len(array) != k:
        raise ValueError(f"expected {k} slots along the first axis, got {len(array)}")


def _check_missing(missing: int, k: int) -> None:
    if not 0 <= missing < k:
        raise ValueError(f"missing slot must be in [0, {k}), got {missing}")


def _subtract(parity_output: Array, outputs: Array, missing: int, k: int) -> Array:
    """The subtraction decoder of r=1 sum-type codes."""
    _check_slots(outputs, k)
    _check_missing(missing, k)
    # Sum over the slots that arrived; the missing slot's row is skipped, not trusted.
    others = outputs[:missing].sum(0) + outputs[missing + 1 :].sum(0)
    return cast(Array, parity_output - others)  # (B, *out)


def _solve(
    coefficients: Matrix,
    parity_outputs: Sequence[Array | None],
    outputs: Array,
    missing: Sequence[int],
) -> list[Array]:
    """Decode ``missing`` data slots from the available parities by a small linear solve."""
    r, k = len(coefficients), len(coefficients[0])
    _check_slots(outputs, k)
    if len(parity_outputs) != r:
        raise ValueError(
            f"expected {r} parity outputs (None where missing), got {len(parity_outputs)}"
        )
    for m in missing:
        _check_missing(m, k)
    if len(set(missing)) != len(missing):
        raise ValueError(f"missing slots must be distinct, got {list(missing)}")
    if not missing:
        return []
    rows = tuple(i for i, p in enumerate(parity_outputs) if p is not None)[: len(missing)]
    if len(rows) < len(missing):
        raise ValueError(
            f"{len(missing)} missing data outputs need as many parity outputs, got {len(rows)}"
        )
    known = [j for j in range(k) if j not in missing]
    # Parity row i minus the known slots' part leaves sum_{m in missing} A[i][m] F(X_m).
    residuals = [
        _minus(cast(Array, parity_outputs[i]), coefficients[i], outputs, known) for i in rows
    ]
    inverse = _inverse(coefficients, rows, tuple(missing))  # (m, m)
    return [_weighted_sum(line, residuals, range(len(rows))) for line in inverse]


def _minus(parity_output: Array, row: tuple[float, ...], outputs: Array, known: list[int]) -> Array:
    if not known:
        return cast(Array, parity_output + 0.0)  # a copy: never alias the caller's array
    return cast(Array, parity_output - _weighted_sum(row, outputs, known))


def _weighted_sum(row: tuple[float, ...], arrays: Any, slots: Sequence[int]) -> Any:
    """sum_j row[j] * arrays[j] over ``slots``; a weight of 1 costs no multiplication."""
    total: Any = None
    for j in slots:
        term = arrays[j] if row[j] == 1.0 else row[j] * arrays[j]
        total = term if total is None else total + term
    return total


@functools.cache
def _vandermonde(k: int, r: int) -> Matrix:
    return tuple(tuple(((j + 1) / k) ** i for j in range(k)) for i in range(r))


@functools.cache
def _ones(k: int) -> Matrix:
    return ((1.0,) * k,)


@functools.cache
def _inverse(coefficients: Matrix, rows: tuple[int, ...], missing: tuple[int, ...]) -> Matrix:
    square = np.array([[coefficients[i][m] for m in missing] for i in rows], dtype=np.float64)
    return tuple(tuple(float(v) for v in line) for line in np.linalg.inv(square))


def _zeros_like(x: Array) -> Array:
    new_zeros = getattr(x, "new_zeros", None)
    if new_zeros is not None:  # a torch tensor: same dtype and device
        return cast(Array, new_zeros(x.shape))
    return cast(Array, np.zeros_like(x))


def _downsample(x: Array, rows: int, cols: int) -> Array:
    """Area average over ``rows`` x ``cols`` blocks of the last two axes."""
    total = x[..., 0::rows, 0::cols]
    for a in range(rows):
        for b in range(cols):
            if a or b:
                total = total + x[..., a::rows, b::cols]
    return cast(Array, total / (rows * cols))
