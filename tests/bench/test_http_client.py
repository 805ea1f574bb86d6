"""The HTTP load client: the bodies it pre-encodes per protocol, the provenance it reads."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.http_client import HttpLoop, requests, source_of


def spec(protocol: str) -> HttpLoop:
    return HttpLoop("http://127.0.0.1:1", "m", protocol, concurrency=1, queries=1)


def test_v2_json_bodies_carry_one_row_of_the_models_shape():
    path, bodies = requests(spec("v2-json"), "x", 4)
    assert path == "/v2/models/m/infer" and len(bodies) == 64
    body, headers = bodies[0]
    (tensor,) = json.loads(body)["inputs"]
    assert (tensor["name"], tensor["datatype"], tensor["shape"]) == ("x", "FP32", [1, 4])
    assert len(tensor["data"]) == 4
    assert headers == {"content-type": "application/json"}


def test_v2_binary_bodies_are_a_json_header_then_the_raw_tensor():
    _, bodies = requests(spec("v2-binary"), "x", 4)
    body, headers = bodies[1]
    length = int(headers["inference-header-content-length"])
    head = json.loads(body[:length])
    assert head["inputs"][0]["parameters"] == {"binary_data_size": 16}
    assert head["parameters"] == {"binary_data_output": True}
    row = np.frombuffer(body[length:], np.float32)
    assert row.shape == (4,) and ((row >= 0) & (row < 1)).all()


def test_clipper_bodies_go_to_the_apps_predict_path():
    path, bodies = requests(spec("clipper"), "x", 3)
    assert path == "/m/predict"
    assert len(json.loads(bodies[0][0])["input"]) == 3


def test_the_bodies_are_the_same_every_run():
    assert requests(spec("v2-json"), "x", 4) == requests(spec("v2-json"), "x", 4)


@pytest.mark.parametrize(
    ("protocol", "content", "headers"),
    [
        ("v2-json", b'{"parameters": {"parm_source": "reconstructed"}}', {}),
        ("clipper", b'{"output": [1], "source": "reconstructed"}', {}),
        (
            "v2-binary",
            b'{"parameters": {"parm_source": "reconstructed"}}\x00\x01\x02',
            {"Inference-Header-Content-Length": "48"},
        ),
    ],
)
def test_the_source_is_read_where_each_protocol_puts_it(protocol, content, headers):
    assert source_of(protocol, content, headers) == "reconstructed"
