"""bench/json_parse.py: the bodies it times, and both parsers reading them alike."""

import json

import numpy as np
import pytest

from bench import json_parse
from frontend.rest import parse_v2
from tests.bench.baselines import needs_baseline


@pytest.mark.parametrize("binary", [False, True])
def test_bodies_are_valid_requests_of_the_asked_shape(binary: bool) -> None:
    data, length = json_parse.body(16, 784, binary)
    request = parse_v2(data, length)
    assert list(request.query.shape) == [16, 784] and len(request.query.raw) == 16 * 784 * 4
    assert (length is not None) == binary
    if not binary:
        assert len(json.loads(data)["inputs"][0]["data"]) == 16 * 784


@needs_baseline(json_parse.BASELINE, "frontend/rest.py")
def test_the_baseline_parser_reads_the_same_rows() -> None:
    baseline = json_parse.baseline_module(json_parse.BASELINE)
    data, length = json_parse.body(1, 64, False)
    assert baseline.parse_v2(data, length).raw == parse_v2(data, length).query.raw


def test_per_call_us_is_a_positive_time() -> None:
    assert json_parse.per_call_us(lambda d, n: np.zeros(1), b"", None, 0.01, 1) > 0
