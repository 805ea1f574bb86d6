"""Erasure codes over queries: the one encoder/decoder shared by serving and training.

A *code* turns k data inputs into a parity input (``encode``) and, given the parity
model's output and the k-1 data outputs that did arrive, recovers the missing data
output (``decode``).  The arithmetic here is written only with operations that NumPy
arrays and torch tensors share (``sum(0)``, ``-``, indexing), so the frontend calls it
on NumPy arrays and ``train/`` on torch tensors: one definition of the maths, as
DESIGN.md's principle 1 asks.  A parity model is only valid for the code it was
trained with; bundles record the code's ``name``.

Shapes: ``inputs`` is ``(k, B, *sample)`` -- slot first, then the batch a slot carries
(1 in the papers' default), then the per-sample shape.  ``outputs`` is ``(k, B, *out)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

Array = TypeVar("Array", bound=Any)


class UnknownCodeError(ValueError):
    """The named code does not exist."""


class Code(Protocol):
    """An encoder/decoder pair for r=1 parity."""

    @property
    def name(self) -> str: ...

    def encode(self, inputs: Array) -> Array:
        """Parity input ``(B, *sample)`` from ``inputs`` ``(k, B, *sample)``."""
        ...

    def decode(self, parity_output: Array, outputs: Array, missing: int) -> Array:
        """Recover ``outputs[missing]`` from the parity output and the other outputs.

        ``outputs`` is ``(k, B, *out)``; the row at ``missing`` is ignored (it may hold
        anything, zeros by convention).
        """
        ...


@dataclass(frozen=True)
class SumCode:
    """The addition code of the papers: P = X1 + ... + Xk, F(Xj) = Fp(P) - sum_{i!=j} F(Xi)."""

    k: int
    name: str = "sum"

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"a code needs k >= 1 data slots, got k={self.k}")

    def encode(self, inputs: Array) -> Array:
        _check_slots(inputs, self.k)
        return cast(Array, inputs.sum(0))  # (B, *sample)

    def decode(self, parity_output: Array, outputs: Array, missing: int) -> Array:
        _check_slots(outputs, self.k)
        if not 0 <= missing < self.k:
            raise ValueError(f"missing slot must be in [0, {self.k}), got {missing}")
        # Sum over the slots that arrived; the missing slot's row is skipped, not trusted.
        others = outputs[:missing].sum(0) + outputs[missing + 1 :].sum(0)
        return cast(Array, parity_output - others)  # (B, *out)


CODES = {"sum": SumCode}


def make_code(name: str, k: int) -> Code:
    """The code called ``name`` for ``k`` data slots."""
    try:
        factory = CODES[name]
    except KeyError:
        raise UnknownCodeError(f"unknown code {name!r}; expected one of {sorted(CODES)}") from None
    return factory(k)


def _check_slots(array: Any, k: int) -> None:
    if len(array) != k:
        raise ValueError(f"expected {k} slots along the first axis, got {len(array)}")
