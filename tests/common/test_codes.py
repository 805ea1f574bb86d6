"""The codes: round trips, erasure patterns, the concat layout, NumPy/torch agreement."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
import torch

from common.codes import (
    CODES,
    Code,
    ConcatCode,
    LinearCode,
    MeanCode,
    SumCode,
    UnknownCodeError,
    encode_into,
    make_code,
)

ALL_CODES = [
    *(("sum", k, 1) for k in (1, 2, 3, 4)),
    *(("concat", k, 1) for k in (1, 2, 3, 4, 5)),
    *(("linear", k, r) for k in (1, 2, 3, 4) for r in (1, 2, 3)),
    *(("mean", k, r) for k in (1, 2, 3, 4, 8) for r in (1, 2, 3)),
    *(("berrut", k, r) for k in (1, 2, 3, 4, 8) for r in (1, 2, 3)),
]


def images(k: int, batch: int = 2, channels: int = 3, size: int = 12, seed: int = 0):
    return np.random.default_rng(seed).normal(size=(k, batch, channels, size, size))


def linear_f(seed: int = 0, features: int = 3 * 12 * 12, classes: int = 5):
    """A linear F on (B, C, H, W) images: F(a x + b y) = a F(x) + b F(y)."""
    weights = np.random.default_rng(seed).normal(size=(features, classes))

    def f(x: np.ndarray) -> np.ndarray:
        return x.reshape(*x.shape[:-3], -1) @ weights

    return f


def erasure_patterns(k: int, r: int):
    """Every set of at most r erased outputs among k data + r parity that hits a data slot."""
    for size in range(1, r + 1):
        for erased in itertools.combinations(range(k + r), size):
            if any(e < k for e in erased):
                yield [e for e in erased if e < k], [e - k for e in erased if e >= k]


@pytest.mark.parametrize(("name", "k", "r"), ALL_CODES)
def test_every_erasure_pattern_decodes_exactly_from_ideal_parity_outputs(name, k, r):
    code = make_code(name, k, r)
    assert (code.name, code.k, code.r) == (name, k, r)
    x = images(k)
    outputs = linear_f()(x)  # (k, B, 5)
    parity_outputs = code.combine(outputs)  # what a perfect parity model would output
    assert len(parity_outputs) == r
    for missing, lost_parities in erasure_patterns(k, r):
        available = [None if i in lost_parities else p for i, p in enumerate(parity_outputs)]
        erased = outputs.copy()
        erased[missing] = np.nan  # the decoder must not read erased rows
        decoded = code.decode_erasures(available, erased, missing)
        for m, value in zip(missing, decoded, strict=True):
            np.testing.assert_allclose(value, outputs[m], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize(("name", "k", "r"), [c for c in ALL_CODES if c[0] != "concat"])
def test_a_linear_f_on_the_parity_inputs_is_a_perfect_parity_model(name, k, r):
    # With F linear, F(encode(X)) is exactly combine(F(X)): the decoder recovers F(Xj).
    code = make_code(name, k, r)
    f = linear_f()
    x = images(k)
    outputs = f(x)
    parity_outputs = [f(p) for p in code.encode_all(x)]
    for missing, lost in erasure_patterns(k, r):
        available = [None if i in lost else p for i, p in enumerate(parity_outputs)]
        erased = outputs.copy()
        erased[missing] = 0.0
        decoded = code.decode_erasures(available, erased, missing)
        for m, value in zip(missing, decoded, strict=True):
            np.testing.assert_allclose(value, outputs[m], rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize(("name", "k", "r"), ALL_CODES)
def test_single_erasure_decode_uses_the_first_parity(name, k, r):
    code = make_code(name, k, r)
    outputs = linear_f()(images(k))
    parity = code.combine(outputs)[0]
    for missing in range(k):
        erased = outputs.copy()
        erased[missing] = 0.0
        np.testing.assert_allclose(code.decode(parity, erased, missing), outputs[missing])
    np.testing.assert_array_equal(code.encode(images(k)), code.encode_all(images(k))[0])


@pytest.mark.parametrize(("name", "k", "r"), ALL_CODES)
def test_numpy_and_torch_give_the_same_numbers(name, k, r):
    # The frontend runs the code on NumPy arrays, training on torch tensors.
    code = make_code(name, k, r)
    x = images(k).astype(np.float32)
    outputs = linear_f()(x).astype(np.float32)
    tx, tout = torch.from_numpy(x), torch.from_numpy(outputs)
    for a, b in zip(code.encode_all(x), code.encode_all(tx), strict=True):
        assert isinstance(b, torch.Tensor) and b.dtype == torch.float32
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-6, atol=1e-5)
    parities = code.combine(outputs)
    tparities = code.combine(tout)
    missing = list(range(min(k, r)))
    decoded = code.decode_erasures(parities, outputs, missing)
    tdecoded = code.decode_erasures(tparities, tout, missing)
    for u, v in zip(decoded, tdecoded, strict=True):
        assert u.dtype == np.float32
        np.testing.assert_allclose(u, v.numpy(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("k", [2, 3, 4])
def test_concat_builds_channel_c_only_from_channel_c(k):
    code = ConcatCode(k)
    x = images(k, channels=3)
    parity = code.encode(x)  # (B, 3, H, W)
    for c in range(3):
        alone = code.encode(x[:, :, c : c + 1])  # only channel c given
        np.testing.assert_array_equal(parity[:, c : c + 1], alone)
        changed = x.copy()
        changed[:, :, c] += 100.0  # perturb channel c of every input
        other = [d for d in range(3) if d != c]
        np.testing.assert_array_equal(code.encode(changed)[:, other], parity[:, other])
        assert not np.allclose(code.encode(changed)[:, c], parity[:, c])


def test_concat_k2_puts_two_half_width_images_side_by_side():
    x = np.arange(2 * 1 * 1 * 2 * 4, dtype=np.float64).reshape(2, 1, 1, 2, 4)
    parity = ConcatCode(2).encode(x)[0, 0]  # (2, 4)
    left = (x[0, 0, 0, :, 0::2] + x[0, 0, 0, :, 1::2]) / 2  # width averaged in pairs
    right = (x[1, 0, 0, :, 0::2] + x[1, 0, 0, :, 1::2]) / 2
    np.testing.assert_array_equal(parity, np.concatenate([left, right], axis=1))


@pytest.mark.parametrize("k", [3, 4])
def test_concat_k3_and_k4_use_quadrants(k):
    x = np.stack([np.full((1, 1, 4, 4), float(j + 1)) for j in range(k)])
    parity = ConcatCode(k).encode(x)[0, 0]
    assert ConcatCode(k).grid == (2, 2)
    quadrants = [parity[:2, :2], parity[:2, 2:], parity[2:, :2], parity[2:, 2:]]
    expected = [1.0, 2.0, 3.0, 4.0 if k == 4 else 0.0]  # k=3 leaves the last tile empty
    for quadrant, value in zip(quadrants, expected, strict=True):
        assert (quadrant == value).all()


@pytest.mark.parametrize(("k", "grid"), [(1, (1, 1)), (2, (1, 2)), (5, (3, 3)), (9, (3, 3))])
def test_concat_grid(k, grid):
    assert ConcatCode(k).grid == grid


def test_concat_k1_is_the_identity():
    x = images(1)
    np.testing.assert_array_equal(ConcatCode(1).encode(x), x[0])


def test_concat_on_torch_keeps_dtype_and_gradients_flow():
    x = torch.randn(2, 3, 1, 8, 8, requires_grad=True)
    torch.autograd.backward(ConcatCode(2).encode(x).sum())
    assert x.grad is not None and x.grad.shape == x.shape


@pytest.mark.parametrize(("k", "r"), [(k, r) for k in range(1, 6) for r in range(1, 4)])
def test_linear_coefficients_are_superregular(k, r):
    # Every square submatrix non-singular <=> any k of the k+r outputs determine the rest.
    a = np.array(LinearCode(k, r).coefficients)
    assert a.shape == (r, k)
    assert (a[0] == 1.0).all()  # row 0 is the sum code
    for size in range(1, min(k, r) + 1):
        for rows in itertools.combinations(range(r), size):
            for cols in itertools.combinations(range(k), size):
                assert abs(np.linalg.det(a[np.ix_(rows, cols)])) > 1e-6


@pytest.mark.parametrize(("k", "r"), [(k, r) for k in (1, 2, 3, 8) for r in (1, 2, 3)])
def test_mean_rows_are_the_linear_rows_scaled_to_sum_to_one(k, r):
    mean, linear = np.array(MeanCode(k, r).coefficients), np.array(LinearCode(k, r).coefficients)
    np.testing.assert_allclose(mean.sum(1), 1.0)
    np.testing.assert_allclose(mean * linear.sum(1, keepdims=True), linear)
    np.testing.assert_allclose(MeanCode(k).encode(images(k)), images(k).mean(0))


def test_linear_with_one_parity_is_the_sum_code():
    x = images(3)
    np.testing.assert_allclose(LinearCode(3).encode(x), SumCode(3).encode(x))


def test_missing_row_contents_are_ignored() -> None:
    code = SumCode(2)
    outputs = np.array([[[1.0]], [[np.nan]]])
    assert code.decode(np.array([[3.0]]), outputs, 1).tolist() == [[2.0]]


def test_decoding_everything_copies_the_parity_output():
    # k=1: the only data output is the parity output itself; never hand back an alias.
    parity = np.array([[2.0, 3.0]])
    (decoded,) = LinearCode(1, 1).decode_erasures([parity], np.zeros((1, 1, 2)), [0])
    np.testing.assert_array_equal(decoded, parity)
    decoded[0, 0] = 7.0
    assert parity[0, 0] == 2.0


def test_no_missing_slot_decodes_nothing():
    assert SumCode(2).decode_erasures([np.zeros(1)], np.zeros((2, 1)), []) == []


def test_same_arithmetic_on_torch_tensors() -> None:
    code = SumCode(3)
    inputs = torch.arange(12, dtype=torch.float32).reshape(3, 1, 4)
    assert torch.equal(code.encode(inputs), inputs.sum(0))
    np.testing.assert_allclose(code.encode(inputs.numpy()), code.encode(inputs).numpy())


def test_registry_names_every_code():
    assert sorted(CODES) == ["berrut", "berrut-interpolate", "concat", "linear", "mean", "sum"]
    codes: list[Code] = [make_code(name, 2) for name in CODES]
    assert [c.r for c in codes] == [1] * 6
    assert [c.name for c in codes] == list(CODES)


def _decode(code: Any, parities: list[Any], missing: list[int], k: int = 2) -> Any:
    return lambda: code.decode_erasures(parities, np.zeros((k, 1, 1)), missing)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: SumCode(0), "k >= 1"),
        (lambda: ConcatCode(0), "k >= 1"),
        (lambda: LinearCode(0), "k >= 1"),
        (lambda: LinearCode(2, 0), "r >= 1"),
        (lambda: SumCode(2).encode(np.zeros((3, 1))), "expected 2 slots"),
        (lambda: SumCode(2).combine(np.zeros((3, 1))), "expected 2 slots"),
        (lambda: ConcatCode(2).combine(np.zeros((3, 1))), "expected 2 slots"),
        (lambda: ConcatCode(2).encode(np.zeros((3, 1, 4, 4))), "expected 2 slots"),
        (lambda: ConcatCode(2).encode(np.zeros((2, 1, 16))), "needs image inputs"),
        (lambda: ConcatCode(2).encode(np.zeros((2, 1, 4, 5))), "multiples of 1 and 2"),
        (lambda: ConcatCode(4).encode(np.zeros((4, 1, 5, 4))), "multiples of 2 and 2"),
        (lambda: LinearCode(2).encode(np.zeros((3, 1))), "expected 2 slots"),
        (
            lambda: SumCode(2).decode(np.zeros(1), np.zeros((2, 1)), 2),
            r"missing slot must be in \[0, 2\)",
        ),
        (lambda: SumCode(2).decode(np.zeros(1), np.zeros((1, 1)), 0), "expected 2 slots"),
        (_decode(LinearCode(2, 2), [np.zeros(1)], [0]), r"expected 2 parity outputs"),
        (_decode(LinearCode(2, 2), [np.zeros(1), None], [0, 1]), "need as many parity"),
        (_decode(LinearCode(2, 2), [np.zeros(1), None], [0, 0]), "must be distinct"),
        (_decode(LinearCode(2, 2), [np.zeros(1), None], [-1]), r"must be in \[0, 2\)"),
        (_decode(SumCode(2), [None], [1]), "need as many parity"),
        (lambda: make_code("xor", 2), "unknown code 'xor'"),
        (lambda: make_code("learned", 2), "load it from its training run"),
        (lambda: make_code("sum", 2, 2), "use 'linear' for r>1"),
        (lambda: make_code("concat", 4, 3), "one parity"),
    ],
)
def test_errors_name_what_was_expected(call, message: str) -> None:
    with pytest.raises((ValueError, UnknownCodeError), match=message):
        call()


# ------------------------------------------------------------------ the serving path's encoder


@pytest.mark.parametrize(
    ("name", "k", "r"),
    [("sum", 2, 1), ("sum", 4, 1), ("concat", 2, 1), ("concat", 3, 1), ("linear", 3, 2),
     ("berrut", 3, 2), ("mean", 2, 2)],
)  # fmt: skip
def test_encoding_into_a_buffer_is_encode_all(name: str, k: int, r: int) -> None:
    """The serving path's encoder (no stacking, no allocation) against the one the
    training path uses, with a padded (zero) slot."""
    code = make_code(name, k, r)
    x = np.random.default_rng(3).random((k, 2, 3, 4, 4), np.float32)
    x[1] = 0  # a padded slot: None on the serving path
    slots = [None if j == 1 else x[j] for j in range(k)]
    for index in range(r):
        out = np.full((2, 3, 4, 4), np.nan, np.float32)
        assert encode_into(code, slots, out, index) is out
        np.testing.assert_array_equal(out, code.encode_all(x)[index])


def test_encoding_into_sums_integer_inputs_in_the_buffers_dtype() -> None:
    x = np.full((2, 1, 4), 200, np.uint8)  # 400 overflows uint8
    out = encode_into(make_code("sum", 2), [x[0], x[1]], np.empty((1, 4), np.float32))
    np.testing.assert_array_equal(out, np.full((1, 4), 400.0, np.float32))


def test_encoding_only_padding_is_zero() -> None:
    out = encode_into(make_code("sum", 2), [None, None], np.ones(3, np.float32))
    np.testing.assert_array_equal(out, np.zeros(3, np.float32))


def test_encoding_into_checks_the_number_of_slots() -> None:
    with pytest.raises(ValueError, match="expected 2 slots"):
        encode_into(make_code("sum", 2), [None], np.ones(3, np.float32))
