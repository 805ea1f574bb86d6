"""The Berrut codes: nodes, exactness where it holds, convergence, shapes, NumPy/torch.

The ``solve`` decoder (``berrut``) inverts the encoder: exact for an affine F.  The
``interpolate`` decoder (``berrut-interpolate``, ApproxIFER's) reproduces constants and
passes through its nodes but is not exact for a general F, so its tests check what
does hold exactly, and that the error on a smooth curve shrinks as k grows.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch

from common.codes import (
    CODES,
    TRAINING_FREE,
    ApproxIFER,
    BerrutCode,
    Code,
    berrut_weights,
    chebyshev_nodes,
    make_code,
)

KR = [(k, r) for k in (1, 2, 3, 4, 8) for r in (1, 2, 3)]
DECODERS = ["solve", "interpolate"]


def erasure_patterns(k: int, r: int) -> list[tuple[list[int], list[int]]]:
    """Every (missing data slots, lost parities) with at most r erasures, some data."""
    patterns = []
    for size in range(1, r + 1):
        for erased in itertools.combinations(range(k + r), size):
            if any(e < k for e in erased):
                patterns.append(([e for e in erased if e < k], [e - k for e in erased if e >= k]))
    return patterns


def decode(code: Code, parities: list[Any], outputs: Any, pattern: Any) -> list[Any]:
    missing, lost = pattern
    available = [None if i in lost else p for i, p in enumerate(parities)]
    erased = outputs.copy()
    erased[missing] = np.nan  # the decoder must not read erased rows
    return code.decode_erasures(available, erased, missing)


def curve(nodes: tuple[float, ...]) -> Any:
    """Samples of a smooth curve at ``nodes``: (len(nodes), 1, 1)."""
    t = np.array(nodes)
    return (np.sin(2 * t) + t**2)[:, None, None]


# ------------------------------------------------------------------ nodes


@pytest.mark.parametrize(("k", "r"), KR)
def test_data_and_parity_nodes_are_disjoint_chebyshev_points(k: int, r: int) -> None:
    code = BerrutCode(k, r)
    data, parity = code.data_nodes, code.parity_nodes
    assert (len(data), len(parity)) == (k, r)
    assert not set(data) & set(parity)
    assert sorted(data + parity) == sorted(chebyshev_nodes(k + r))
    assert all(-1 < x < 1 for x in data + parity)
    if k >= 2:  # each parity lies between data nodes: interpolated, never extrapolated
        assert all(min(data) < z < max(data) for z in parity)


def test_chebyshev_nodes_of_the_first_kind() -> None:
    expected = [np.sqrt(3) / 2, 0.0, -np.sqrt(3) / 2]
    np.testing.assert_allclose(chebyshev_nodes(3), expected, atol=1e-15)


# ------------------------------------------------------------------ exactness


@pytest.mark.parametrize("n", [1, 2, 5, 9])
def test_interpolation_through_the_original_nodes_returns_the_originals(n: int) -> None:
    nodes = chebyshev_nodes(n)
    values = np.random.default_rng(n).normal(size=n)
    for j, x in enumerate(nodes):
        weights = berrut_weights(nodes, x)
        assert weights == tuple(1.0 if i == j else 0.0 for i in range(n))
        assert sum(w * v for w, v in zip(weights, values, strict=True)) == values[j]


@pytest.mark.parametrize("at", [0.1, -0.95, 0.999, 3.0])
def test_weights_sum_to_one(at: float) -> None:
    assert sum(berrut_weights(chebyshev_nodes(6), at)) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize(("k", "r"), KR)
def test_constant_outputs_decode_exactly_under_every_erasure_pattern(
    k: int, r: int, decoder: str
) -> None:
    code = BerrutCode(k, r, decoder)
    inputs = np.full((k, 2, 3), 4.5)
    parities = code.encode_all(inputs)
    for parity in parities:  # a constant curve is interpolated as that constant
        np.testing.assert_allclose(parity, 4.5, rtol=1e-12)
    for pattern in erasure_patterns(k, r):
        for value in decode(code, parities, inputs, pattern):
            np.testing.assert_allclose(value, 4.5, rtol=1e-12)


@pytest.mark.parametrize(("k", "r"), KR)
def test_the_solve_decoder_is_exact_for_an_affine_f_under_every_erasure_pattern(
    k: int, r: int
) -> None:
    code = make_code("berrut", k, r)
    x = np.random.default_rng(k + r).normal(size=(k, 2, 6))
    weights, bias = np.random.default_rng(1).normal(size=(6, 4)), np.arange(4.0)
    outputs = x @ weights + bias  # F(X_j)
    answers = [p @ weights + bias for p in code.encode_all(x)]  # the base model's answers
    for pattern in erasure_patterns(k, r):
        for m, value in zip(pattern[0], decode(code, answers, outputs, pattern), strict=True):
            np.testing.assert_allclose(value, outputs[m], rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("name", ["berrut", "mean"])
def test_training_free_codes_solve_with_every_parity_that_arrived(name: str) -> None:
    # One slot missing, both parities here: least squares over the two.  Noise on the
    # second parity changes the answer (it is used); the linear code ignores it.
    code, linear = make_code(name, 4, 2), make_code("linear", 4, 2)
    x = np.random.default_rng(3).normal(size=(4, 1, 5))
    for c in (code, linear):
        answers = c.combine(x)
        noisy = [answers[0], answers[1] + 1.0]
        exact = c.decode_erasures(answers, x, [2])[0]
        np.testing.assert_allclose(exact, x[2], rtol=1e-9, atol=1e-9)
        moved = not np.allclose(c.decode_erasures(noisy, x, [2])[0], x[2])
        assert moved is (c is code)


@pytest.mark.parametrize(("k", "r"), [(k, r) for k in (2, 3, 4, 8) for r in (1, 2, 3)])
def test_every_square_submatrix_of_the_coefficients_is_non_singular(k: int, r: int) -> None:
    a = np.array(BerrutCode(k, r).coefficients)
    np.testing.assert_allclose(a.sum(1), 1.0)  # rows sum to 1: F's bias carries through
    for size in range(1, min(k, r) + 1):
        for rows in itertools.combinations(range(r), size):
            for cols in itertools.combinations(range(k), size):
                assert abs(np.linalg.det(a[np.ix_(rows, cols)])) > 1e-9


@pytest.mark.parametrize("decoder", DECODERS)
def test_k2_r1_is_the_mean_and_exact_for_an_affine_f(decoder: str) -> None:
    code = BerrutCode(2, 1, decoder)
    x = np.random.default_rng(0).normal(size=(2, 3, 4))
    np.testing.assert_allclose(code.encode(x), x.mean(0), rtol=1e-12)
    weights, bias = np.random.default_rng(1).normal(size=(4, 5)), np.arange(5.0)
    outputs = x @ weights + bias  # F(X_j)
    parity = code.encode(x) @ weights + bias  # what the base model answers
    for missing in (0, 1):
        erased = outputs.copy()
        erased[missing] = np.nan
        np.testing.assert_allclose(code.decode(parity, erased, missing), outputs[missing])


@pytest.mark.parametrize("r", [1, 2])
def test_the_error_on_a_smooth_curve_shrinks_as_k_grows(r: int) -> None:
    # F is the identity on samples of a smooth curve: Berrut's interpolant converges.
    def worst(k: int) -> float:
        code = BerrutCode(k, r, "interpolate")
        x = curve(code.data_nodes)
        parities = code.encode_all(x)
        errors = [abs(decode(code, parities, x, ([j], []))[0] - x[j]).max() for j in range(k)]
        return float(max(errors))

    assert worst(64) < worst(16) / 2 and worst(16) < worst(4)


# ------------------------------------------------------------------ shapes, numbers


@pytest.mark.parametrize("name", ["berrut", "berrut-interpolate"])
@pytest.mark.parametrize(("k", "r"), KR)
def test_shapes_of_every_encode_and_decode(k: int, r: int, name: str) -> None:
    code = make_code(name, k, r)
    assert code.name == name
    x = np.random.default_rng(k).normal(size=(k, 2, 1, 4, 4))
    parities = code.encode_all(x)
    assert [p.shape for p in parities] == [(2, 1, 4, 4)] * r
    outputs = x.reshape(k, 2, -1)[..., :10]  # (k, B, 10)
    answers = code.combine(outputs)
    assert [a.shape for a in answers] == [(2, 10)] * r
    for pattern in erasure_patterns(k, r):
        decoded = decode(code, answers, outputs, pattern)
        assert [d.shape for d in decoded] == [(2, 10)] * len(pattern[0])
        assert all(np.isfinite(d).all() for d in decoded)


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize(("k", "r"), KR)
def test_numpy_and_torch_give_the_same_numbers(k: int, r: int, decoder: str) -> None:
    code = BerrutCode(k, r, decoder)
    x = np.random.default_rng(0).normal(size=(k, 2, 6)).astype(np.float32)
    tx = torch.from_numpy(x)
    for a, b in zip(code.encode_all(x), code.encode_all(tx), strict=True):
        assert a.dtype == np.float32 and b.dtype == torch.float32
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-6, atol=1e-6)
    missing = list(range(min(k, r)))
    parities = code.encode_all(x)
    decoded = code.decode_erasures(parities, x, missing)
    tdecoded = code.decode_erasures([torch.from_numpy(p) for p in parities], tx, missing)
    for u, v in zip(decoded, tdecoded, strict=True):
        np.testing.assert_allclose(u, v.numpy(), rtol=1e-6, atol=1e-5)


def test_interpolation_uses_every_output_that_arrived() -> None:
    # r=2, one data slot missing: both parities are used, so the answer differs from
    # the decode that has lost the second parity.
    code = BerrutCode(4, 2, "interpolate")
    x = curve(code.data_nodes)
    parities = code.encode_all(x)
    both = decode(code, parities, x, ([1], []))[0]
    one = decode(code, parities, x, ([1], [1]))[0]
    assert not np.allclose(both, one)
    np.testing.assert_array_equal(code.decode(parities[0], x, 1), one)


@pytest.mark.parametrize("decoder", DECODERS)
def test_no_missing_slot_decodes_nothing(decoder: str) -> None:
    code = BerrutCode(2, 1, decoder)
    assert code.decode_erasures([np.zeros(1)], np.zeros((2, 1)), []) == []


def test_berrut_is_registered_and_needs_no_training() -> None:
    assert CODES["berrut"] is CODES["berrut-interpolate"] is BerrutCode
    assert set(TRAINING_FREE) == {"berrut", "berrut-interpolate", "mean"}
    assert make_code("berrut", 3, 2) == BerrutCode(3, 2, "solve")
    assert make_code("berrut-interpolate", 3, 2) == BerrutCode(3, 2, "interpolate")


# ------------------------------------------------------------------ ApproxIFER


@pytest.mark.parametrize(("k", "n"), [(2, 3), (4, 5), (8, 9), (8, 12)])
def test_approxifer_shapes_and_constants(k: int, n: int) -> None:
    code = ApproxIFER(k, n)
    queries: list[Any] = code.encode(np.full((k, 2, 3), -1.5))
    assert [q.shape for q in queries] == [(2, 3)] * n
    answers: list[Any] = list(queries)
    answers[0] = None  # a straggler
    decoded = code.decode(answers)
    assert len(decoded) == k
    for value in decoded:
        np.testing.assert_allclose(value, -1.5, rtol=1e-12)


def test_approxifer_every_answer_is_interpolated_and_converges() -> None:
    def worst(k: int) -> float:
        x = curve(chebyshev_nodes(k))
        code = ApproxIFER(k, k + 1)
        answers: list[Any] = list(code.encode(x))
        answers[k // 2] = None
        return float(max(abs(d - x[j]).max() for j, d in enumerate(code.decode(answers))))

    assert 0 < worst(64) < worst(16) / 2 < worst(4) / 4
    assert ApproxIFER(3, 4).query_nodes == pytest.approx((1.0, 0.5, -0.5, -1.0))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: BerrutCode(0), "k >= 1"),
        (lambda: BerrutCode(2, 0), "r >= 1"),
        (lambda: BerrutCode(2, 1, "guess"), "decoder is one of"),
        (lambda: BerrutCode(2).encode(np.zeros((3, 1))), "expected 2 slots"),
        (lambda: BerrutCode(2, 2).decode_erasures([None], np.zeros((2, 1)), [0]), "expected 2"),
        (
            lambda: BerrutCode(2, 2).decode_erasures([None, None], np.zeros((2, 1)), [0]),
            "need as many parity",
        ),
        (lambda: ApproxIFER(0, 3), "k >= 1"),
        (lambda: ApproxIFER(2, 1), "n >= 2"),
        (lambda: ApproxIFER(2, 3).encode(np.zeros((3, 1))), "expected 2 slots"),
        (lambda: ApproxIFER(2, 3).decode([None]), "expected 3 answers"),
        (lambda: ApproxIFER(2, 3).decode([None] * 3), "at least one answer"),
    ],
)
def test_errors_name_what_was_expected(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
