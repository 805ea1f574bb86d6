import numpy as np
import pytest
import torch

from frontend.codes import SumCode, UnknownCodeError, make_code


@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_sum_code_recovers_each_slot_of_a_linear_function(k: int) -> None:
    rng = np.random.default_rng(k)
    weights = rng.normal(size=(6, 3))
    inputs = rng.normal(size=(k, 2, 6))  # (k, B, sample)
    outputs = inputs @ weights  # a linear F, so F(sum) == sum F
    code = make_code("sum", k)
    parity_output = code.encode(inputs) @ weights
    for missing in range(k):
        erased = outputs.copy()
        erased[missing] = 0.0
        np.testing.assert_allclose(code.decode(parity_output, erased, missing), outputs[missing])


def test_missing_row_contents_are_ignored() -> None:
    code = SumCode(2)
    outputs = np.array([[[1.0]], [[np.nan]]])
    assert code.decode(np.array([[3.0]]), outputs, 1).tolist() == [[2.0]]


def test_same_arithmetic_on_torch_tensors() -> None:
    code = SumCode(3)
    inputs = torch.arange(12, dtype=torch.float32).reshape(3, 1, 4)
    assert torch.equal(code.encode(inputs), inputs.sum(0))
    np.testing.assert_allclose(code.encode(inputs.numpy()), code.encode(inputs).numpy())


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: SumCode(0), "k >= 1"),
        (lambda: SumCode(2).encode(np.zeros((3, 1))), "expected 2 slots"),
        (
            lambda: SumCode(2).decode(np.zeros(1), np.zeros((2, 1)), 2),
            r"missing slot must be in \[0, 2\)",
        ),
        (lambda: SumCode(2).decode(np.zeros(1), np.zeros((1, 1)), 0), "expected 2 slots"),
        (lambda: make_code("xor", 2), "unknown code 'xor'"),
    ],
)
def test_errors_name_what_was_expected(call, message: str) -> None:
    with pytest.raises((ValueError, UnknownCodeError), match=message):
        call()
