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
- ``berrut`` (any r, training-free; BACC/ApproxIFER made systematic): the k inputs are
  samples of a curve at k Chebyshev nodes; parity i is Berrut's rational interpolant of
  them at a node of its own, and the **base model** answers it (no parity model exists).
  A missing output is decoded by inverting the encoder (exact for an affine F); the
  ``berrut-interpolate`` variant decodes as ApproxIFER does, by Berrut's interpolant of
  the available outputs at the missing slot's node.  For k=2, r=1 both are the same:
  the parity is the mean and the decoder 2 F(mean) - F(other).  `ApproxIFER` is the
  non-systematic setting (every answer interpolated), for ``parm eval``.
- ``mean`` (any r, training-free): ``linear`` with each row scaled to sum to 1 (parity 0
  is the mean of the inputs), also answered by the base model; exact for an affine F.

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
import numpy.typing as npt

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

    @property
    def coefficients(self) -> Matrix:
        """A ``(1, k)`` of ones: the parity is the plain sum."""
        return _ones(self.k)

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
        _check_r(self.r)

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


@dataclass(frozen=True)
class BerrutCode:
    """Systematic Berrut code: r interpolated queries that the base model itself answers.

    The k + r nodes are the Chebyshev points of the first kind, cos((2i + 1) pi / 2n) for
    n = k + r (decreasing, in (-1, 1)); the r parity nodes are spread among them, so
    each parity interpolates between data nodes.  Parity i is sum_j A[i][j] X_j with A's
    rows Berrut's weights, which sum to 1; A is a Cauchy matrix scaled by rows and
    columns, so every square submatrix is non-singular.

    Two decoders.  ``solve`` (the default, ``berrut``) inverts the encoder as the linear
    code does: exact for an affine F (rows summing to 1 carry F's bias), any k of the
    k + r outputs; with more parities than missing outputs it uses them all (least
    squares), which averages the base model's errors on the blended queries.
    ``interpolate`` (``berrut-interpolate``) is ApproxIFER's: Berrut's interpolant of
    every output that arrived, at the missing slot's node; exact only for constants,
    and far less accurate on real models (bench/RESULTS.md, "Berrut").
    """

    k: int
    r: int = 1
    decoder: str = "solve"

    def __post_init__(self) -> None:
        _check_k(self.k)
        _check_r(self.r)
        if self.decoder not in BERRUT_DECODERS:
            raise ValueError(
                f"the Berrut decoder is one of {sorted(BERRUT_DECODERS)}, got {self.decoder!r}"
            )

    @property
    def name(self) -> str:
        return BERRUT_DECODERS[self.decoder]

    @property
    def data_nodes(self) -> tuple[float, ...]:
        """Where the k inputs are taken to be samples of the curve."""
        nodes = chebyshev_nodes(self.k + self.r)
        return tuple(nodes[i] for i in _berrut_data(self.k, self.r))

    @property
    def parity_nodes(self) -> tuple[float, ...]:
        """Where the r parity queries interpolate it."""
        nodes = chebyshev_nodes(self.k + self.r)
        return tuple(nodes[i] for i in _berrut_parity(self.k, self.r))

    @property
    def coefficients(self) -> Matrix:
        """A ``(r, k)``: parity i is sum_j A[i][j] X_j (each row sums to 1)."""
        return _berrut_matrix(self.k, self.r)

    def encode(self, inputs: Array) -> Array:
        return self.encode_all(inputs)[0]

    def encode_all(self, inputs: Array) -> list[Array]:
        _check_slots(inputs, self.k)
        return [_weighted_sum(row, inputs, range(self.k)) for row in self.coefficients]

    def combine(self, outputs: Array) -> list[Array]:
        """The outputs interpolated at the parity nodes: what the base model answers
        for the parity queries when it is affine."""
        return self.encode_all(outputs)

    def decode(self, parity_output: Array, outputs: Array, missing: int) -> Array:
        parities: list[Array | None] = [parity_output] + [None] * (self.r - 1)
        return self.decode_erasures(parities, outputs, [missing])[0]

    def decode_erasures(
        self, parity_outputs: Sequence[Array | None], outputs: Array, missing: Sequence[int]
    ) -> list[Array]:
        if self.decoder == "solve":
            return _solve(self.coefficients, parity_outputs, outputs, missing, every_parity=True)
        present = check_erasures(self.k, self.r, parity_outputs, outputs, missing)
        data, parity = _berrut_data(self.k, self.r), _berrut_parity(self.k, self.r)
        # Every output that arrived, as (position among the k + r nodes, value).
        known = [(data[j], outputs[j]) for j in range(self.k) if j not in missing]
        known += [(parity[i], parity_outputs[i]) for i in present]
        known.sort(key=lambda pair: pair[0])  # node order: Berrut's signs alternate in it
        positions = tuple(p for p, _ in known)
        values = [v for _, v in known]
        n = self.k + self.r
        return [
            _weighted_sum(_berrut_row(n, positions, data[m]), values, range(len(values)))
            for m in missing
        ]


#: the Berrut code's decoders and the code name each goes by
BERRUT_DECODERS = {"solve": "berrut", "interpolate": "berrut-interpolate"}


@dataclass(frozen=True)
class ApproxIFER:
    """The non-systematic Berrut code of ApproxIFER (AAAI 2022), for evaluation.

    The k inputs are samples at the k Chebyshev points of the first kind; the model
    answers n interpolated queries at the n Chebyshev points of the second kind,
    cos(i pi / (n - 1)); every one of the k outputs is Berrut's interpolant of the
    answers that arrived, at its input's node: all outputs are approximate.
    """

    k: int
    n: int

    def __post_init__(self) -> None:
        _check_k(self.k)
        if self.n < 2:
            raise ValueError(f"ApproxIFER needs n >= 2 queries, got n={self.n}")

    @property
    def query_nodes(self) -> tuple[float, ...]:
        return tuple(math.cos(i * math.pi / (self.n - 1)) for i in range(self.n))

    def encode(self, inputs: Array) -> list[Array]:
        """The n queries ``(B, *sample)`` from ``inputs`` ``(k, B, *sample)``."""
        _check_slots(inputs, self.k)
        data = chebyshev_nodes(self.k)
        rows = [berrut_weights(data, z) for z in self.query_nodes]
        return [_weighted_sum(row, inputs, range(self.k)) for row in rows]

    def decode(self, answers: Sequence[Array | None]) -> list[Array]:
        """The k outputs from the n answers, ``None`` where one did not arrive."""
        if len(answers) != self.n:
            raise ValueError(f"expected {self.n} answers (None where missing), got {len(answers)}")
        arrived = [i for i, a in enumerate(answers) if a is not None]
        if not arrived:
            raise ValueError("ApproxIFER needs at least one answer to decode")
        nodes = tuple(self.query_nodes[i] for i in arrived)
        values = [answers[i] for i in arrived]
        rows = [berrut_weights(nodes, x) for x in chebyshev_nodes(self.k)]
        return [_weighted_sum(row, values, range(len(values))) for row in rows]


@dataclass(frozen=True)
class MeanCode(LinearCode):
    """The linear code with each row scaled to sum to 1, served by the base model.

    Parity 0 is the mean of the k inputs; parity i weights input j by ((j + 1) / k) ** i,
    normalised.  Rows summing to 1 carry an affine F's bias, so the base model itself is
    an exact parity model for an affine F, and nothing is trained (a training-free
    baseline next to ``berrut``, whose signed weights make blends further from the data).
    Like ``berrut`` it decodes from every parity that arrived (least squares).
    """

    k: int
    r: int = 1
    name: str = "mean"

    @property
    def coefficients(self) -> Matrix:
        return _normalised(_vandermonde(self.k, self.r))

    def decode_erasures(
        self, parity_outputs: Sequence[Array | None], outputs: Array, missing: Sequence[int]
    ) -> list[Array]:
        return _solve(self.coefficients, parity_outputs, outputs, missing, every_parity=True)


CODES = {
    "sum": SumCode,
    "concat": ConcatCode,
    "linear": LinearCode,
    "berrut": BerrutCode,
    "berrut-interpolate": BerrutCode,
    "mean": MeanCode,
}

#: codes whose parity queries the base model answers: nothing is trained for them
TRAINING_FREE = frozenset({*BERRUT_DECODERS.values(), "mean"})
#: the learned code (`common.learned`): a trained encoder and decoder, loaded from a bundle
LEARNED = "learned"
#: codes with no parity model: the base model answers their parity queries
BASE_ANSWERS_PARITY = TRAINING_FREE | {LEARNED}


def make_code(name: str, k: int, r: int = 1) -> Code:
    """The code called ``name`` for ``k`` data slots and ``r`` parities."""
    if name == LEARNED:
        raise UnknownCodeError(
            "the learned code is a trained encoder and decoder: load it from its training "
            "run with common.learned.load_learned_code"
        )
    if name not in CODES:
        raise UnknownCodeError(f"unknown code {name!r}; expected one of {sorted(CODES)}")
    if name == "linear":
        return LinearCode(k, r)
    if name == "mean":
        return MeanCode(k, r)
    if name in BERRUT_DECODERS.values():
        decoder = {v: d for d, v in BERRUT_DECODERS.items()}[name]
        return BerrutCode(k, r, decoder)
    if r != 1:
        raise ValueError(f"code {name!r} has one parity (r=1), got r={r}; use 'linear' for r>1")
    code: Code = CODES[name](k)
    return code


def encode_into(
    code: Code, slots: Sequence[npt.NDArray[Any] | None], out: npt.NDArray[Any], index: int = 0
) -> npt.NDArray[Any]:
    """Parity ``index`` of k inputs, written into ``out``: `Code.encode_all`'s maths for
    the serving path (NumPy), without stacking the inputs or allocating the result.

    ``slots`` holds the k inputs, each shaped like ``out`` (any dtype; the sums are taken
    in ``out``'s), or None for a zero input (a padded slot).  A code with a coefficient
    matrix (every one but ``concat``) computes sum_j A[index][j] X_j in place, reading each
    input once; ``concat`` goes through ``encode_all``.
    """
    _check_slots(slots, code.k)
    coefficients: Matrix | None = getattr(code, "coefficients", None)
    if coefficients is None:  # (k, B=1, *sample), the shape every code's encode_all takes
        stacked = np.zeros((code.k, 1, *out.shape), out.dtype)
        for j, x in enumerate(slots):
            if x is not None:
                stacked[j, 0] = x
        out[...] = code.encode_all(stacked)[index][0]
        return out
    row = coefficients[index]
    terms = [(w, x) for w, x in zip(row, slots, strict=True) if x is not None and w != 0.0]
    if not terms:
        out.fill(0)
    for i, (w, x) in enumerate(terms):
        term = x if w == 1.0 else np.multiply(x, w, dtype=out.dtype)
        if i == 0:
            np.copyto(out, term, casting="unsafe")
        else:
            np.add(out, term, out=out, casting="unsafe")
    return out


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"a code needs k >= 1 data slots, got k={k}")


def _check_r(r: int) -> None:
    if r < 1:
        raise ValueError(f"a code needs r >= 1 parities, got r={r}")


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
    every_parity: bool = False,
) -> list[Array]:
    """Decode ``missing`` data slots from the available parities by a small linear solve.

    With ``every_parity``, every parity that arrived is used (least squares when there
    are more than missing slots); otherwise the first ``len(missing)`` of them.
    """
    r, k = len(coefficients), len(coefficients[0])
    rows = check_erasures(k, r, parity_outputs, outputs, missing)
    rows = rows if every_parity else rows[: len(missing)]
    if not missing:
        return []
    known = [j for j in range(k) if j not in missing]
    # Parity row i minus the known slots' part leaves sum_{m in missing} A[i][m] F(X_m).
    residuals = [
        _minus(cast(Array, parity_outputs[i]), coefficients[i], outputs, known) for i in rows
    ]
    inverse = _inverse(coefficients, rows, tuple(missing))  # (m, m)
    return [_weighted_sum(line, residuals, range(len(rows))) for line in inverse]


def check_erasures(
    k: int, r: int, parity_outputs: Sequence[Any], outputs: Any, missing: Sequence[int]
) -> tuple[int, ...]:
    """Refuse an erasure pattern no code can decode; the indices of the parities present."""
    _check_slots(outputs, k)
    if len(parity_outputs) != r:
        raise ValueError(
            f"expected {r} parity outputs (None where missing), got {len(parity_outputs)}"
        )
    for m in missing:
        _check_missing(m, k)
    if len(set(missing)) != len(missing):
        raise ValueError(f"missing slots must be distinct, got {list(missing)}")
    present = tuple(i for i, p in enumerate(parity_outputs) if p is not None)
    if len(present) < len(missing):
        raise ValueError(
            f"{len(missing)} missing data outputs need as many parity outputs, got {len(present)}"
        )
    return present


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


def chebyshev_nodes(n: int) -> tuple[float, ...]:
    """The n Chebyshev points of the first kind, cos((2i + 1) pi / 2n), decreasing."""
    return tuple(math.cos((2 * i + 1) * math.pi / (2 * n)) for i in range(n))


def berrut_weights(nodes: Sequence[float], at: float) -> tuple[float, ...]:
    """Coefficients c with sum_i c_i f(nodes[i]) = Berrut's interpolant of f at ``at``.

    ``nodes`` must be monotone (the signs alternate in their order, so the interpolant
    has no real poles).  At a node the interpolant is that node's value, exactly.
    """
    if at in nodes:
        return tuple(1.0 if x == at else 0.0 for x in nodes)
    terms = [(-1.0) ** i / (at - x) for i, x in enumerate(nodes)]
    total = math.fsum(terms)
    return tuple(t / total for t in terms)


@functools.cache
def _berrut_parity(k: int, r: int) -> tuple[int, ...]:
    """Positions of the r parity nodes among the k + r: evenly spread, never at an end
    when there is room, so a parity lies between data nodes."""
    return tuple((i + 1) * (k + r) // (r + 1) for i in range(r))


@functools.cache
def _berrut_data(k: int, r: int) -> tuple[int, ...]:
    parity = _berrut_parity(k, r)
    return tuple(i for i in range(k + r) if i not in parity)


@functools.cache
def _berrut_matrix(k: int, r: int) -> Matrix:
    nodes = chebyshev_nodes(k + r)
    data = [nodes[i] for i in _berrut_data(k, r)]
    return tuple(berrut_weights(data, nodes[i]) for i in _berrut_parity(k, r))


@functools.cache
def _berrut_row(n: int, positions: tuple[int, ...], target: int) -> tuple[float, ...]:
    nodes = chebyshev_nodes(n)
    return berrut_weights([nodes[p] for p in positions], nodes[target])


@functools.cache
def _normalised(coefficients: Matrix) -> Matrix:
    return tuple(tuple(a / math.fsum(row) for a in row) for row in coefficients)


@functools.cache
def _ones(k: int) -> Matrix:
    return ((1.0,) * k,)


@functools.cache
def _inverse(coefficients: Matrix, rows: tuple[int, ...], missing: tuple[int, ...]) -> Matrix:
    # (rows, missing), full column rank: the pseudo-inverse is the inverse when square
    a = np.array([[coefficients[i][m] for m in missing] for i in rows], dtype=np.float64)
    return tuple(tuple(float(v) for v in line) for line in np.linalg.pinv(a))


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
