"""Integration: the HTTP front doors (KServe v2 REST, Clipper) over real containers.

Four containers serve the module: two fast base instances, a base instance that answers
after ``SLOW_MS``, and a parity instance.  Each test starts its own frontend (gRPC,
HTTP and metrics on free ports) in its own event loop.  Clients: aiohttp (plain HTTP)
and Triton's ``tritonclient.http``, which shares no protobuf module with ours.
"""

from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from frontend.config import InstanceAddress, ModelConfig
from frontend.events import Mode
from tests.frontend.cluster import Bundles, Containers, Reference, address, inputs
from tests.frontend.rest_support import (
    Http,
    coded_slow,
    http_config,
    run,
    until,
    v2_json,
    v2_output,
)


@pytest.fixture(scope="module")
def bundles(rest_bundles: Bundles) -> Bundles:
    return rest_bundles


@pytest.fixture(scope="module")
def reference(bundles: Bundles) -> Reference:
    return Reference(bundles)


@pytest.fixture(scope="module")
def containers(rest_containers: Containers) -> Containers:
    return rest_containers


def plain(c: Containers, b: Bundles, **settings: Any) -> ModelConfig:
    """``plain``: two fast instances, no coding: every answer is an original."""
    data = (address("data-0", c["fast-a"]), address("data-1", c["fast-b"]))
    return ModelConfig("plain", b.base, data, mode=Mode.NONE, **settings)


def slow(c: Containers, b: Bundles, **settings: Any) -> ModelConfig:
    """``slow``: one slow instance, no redundancy."""
    return ModelConfig("slow", b.base, (address("data-0", c["slow"]),), mode=Mode.NONE, **settings)


def close(actual: Any, expected: Any) -> None:
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=0.0, atol=1e-5)


# ---------------------------------------------------------------- health and metadata


def test_health_and_metadata(containers: Containers, bundles: Bundles) -> None:
    async def scenario(http: Http) -> dict[str, tuple[int, Any]]:
        paths = ["/v2/health/live", "/v2/health/ready", "/v2", "/v2/models/plain"]
        paths += ["/v2/models/plain/ready", "/v2/models/nope", "/v2/models/nope/ready"]
        return {path: await http.get(path) for path in paths}

    got = run(http_config(plain(containers, bundles)), scenario)
    assert got["/v2/health/live"] == (200, {"live": True})
    assert got["/v2/health/ready"] == (200, {"ready": True})
    status, server = got["/v2"]
    assert status == 200 and server["name"] == "parm-frontend"
    assert "binary_tensor_data" in server["extensions"]
    assert got["/v2/models/plain"] == (
        200,
        {
            "name": "plain",
            "versions": ["1"],
            "platform": "parm",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}],
            "outputs": [{"name": "output", "datatype": "FP32", "shape": [-1, 10]}],
        },
    )
    assert got["/v2/models/plain/ready"] == (200, {"name": "plain", "ready": True})
    for path in ("/v2/models/nope", "/v2/models/nope/ready"):
        status, body = got[path]
        assert status == 404 and "unknown model 'nope'; serving ['plain']" in body["error"]


def test_a_model_without_instances_is_not_ready_and_answers_503(bundles: Bundles) -> None:
    nowhere = InstanceAddress("data-0", "127.0.0.1:9")  # the discard port: nothing listens
    model = ModelConfig("lost", bundles.base, (nowhere,), mode=Mode.NONE)

    async def scenario(http: Http) -> list[tuple[int, Any]]:
        return [
            await http.get("/v2/health/ready"),
            await http.get("/v2/models/lost/ready"),
            await http.post("/v2/models/lost/infer", v2_json(inputs(1, seed=0))),
            await http.post("/lost/predict", {"input": [0.0] * 64}),
        ]

    ready, model_ready, infer, predict = run(http_config(model), scenario, wait=False)
    assert ready == (400, {"ready": False})
    assert model_ready == (400, {"name": "lost", "ready": False})
    assert infer == (503, {"error": "model 'lost' has no ready instance yet"})
    assert predict == (
        503,
        {"error": "Unavailable", "cause": "model 'lost' has no ready instance yet"},
    )


def test_openapi_page_lists_every_route(containers: Containers, bundles: Bundles) -> None:
    async def scenario(http: Http) -> tuple[Any, int]:
        _, schema = await http.get("/openapi.json")
        async with http.session.get(http.base + "/docs") as page:
            return schema, page.status

    schema, docs = run(http_config(plain(containers, bundles)), scenario)
    assert docs == 200
    assert set(schema["paths"]) == {
        "/v2/health/live",
        "/v2/health/ready",
        "/v2",
        "/v2/models/{model}",
        "/v2/models/{model}/ready",
        "/v2/models/{model}/infer",
        "/{app}/predict",
    }
    infer = schema["paths"]["/v2/models/{model}/infer"]["post"]
    assert {"200", "400", "404", "413", "429", "503", "504"} <= set(infer["responses"])
    assert "inputs" in infer["requestBody"]["content"]["application/json"]["schema"]["properties"]


# ---------------------------------------------------------------- v2 inference


def test_json_inference_matches_the_model(
    containers: Containers, bundles: Bundles, reference: Reference
) -> None:
    x = inputs(3, seed=1)

    async def scenario(http: Http) -> tuple[int, Any]:
        return await http.post("/v2/models/plain/infer", {"id": "q-1", **v2_json(x)})

    status, answer = run(http_config(plain(containers, bundles)), scenario)
    assert status == 200
    assert answer["id"] == "q-1" and answer["model_name"] == "plain"
    assert answer["parameters"] == {
        "parm_source": "original",
        "parm_sources": "original,original,original",
    }
    close(v2_output(answer), reference.base(x))


def binary_request(x: np.ndarray, **parameters: Any) -> tuple[bytes, int]:
    """The binary tensor extension by hand: the JSON header, then the raw FP32 rows."""
    raw = x.astype("<f4").tobytes()
    tensor = {"name": "input", "datatype": "FP32", "shape": list(x.shape)}
    header: dict[str, Any] = {"inputs": [{**tensor, "parameters": {"binary_data_size": len(raw)}}]}
    if parameters:
        header["parameters"] = parameters
    text = json.dumps(header).encode()
    return text + raw, len(text)


def test_binary_tensors_in_and_out(
    containers: Containers, bundles: Bundles, reference: Reference
) -> None:
    x = inputs(2, seed=2)
    body, length = binary_request(x, binary_data_output=True)

    async def scenario(http: Http) -> tuple[int, dict[str, str], bytes]:
        headers = {"Inference-Header-Content-Length": str(length)}
        url = http.base + "/v2/models/plain/infer"
        async with http.session.post(url, data=body, headers=headers) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, await r.read()

    status, headers, content = run(http_config(plain(containers, bundles)), scenario)
    assert status == 200 and headers["content-type"] == "application/octet-stream"
    split = int(headers["inference-header-content-length"])
    answer = json.loads(content[:split])
    (out,) = answer["outputs"]
    assert out["shape"] == [2, 10] and out["parameters"] == {"binary_data_size": 80}
    assert "data" not in out
    close(np.frombuffer(content[split:], "<f4").reshape(2, 10), reference.base(x))


def gzip_request(x: np.ndarray) -> bytes:
    return gzip.compress(json.dumps(v2_json(x)).encode())


def test_a_gzip_body_is_decoded(
    containers: Containers, bundles: Bundles, reference: Reference
) -> None:
    x = inputs(1, seed=3)

    async def scenario(http: Http) -> tuple[int, Any]:
        path = "/v2/models/plain/infer"
        return await http.post(path, data=gzip_request(x), Content_Encoding="gzip")

    status, answer = run(http_config(plain(containers, bundles)), scenario)
    assert status == 200
    close(v2_output(answer), reference.base(x))


def triton_calls(port: int, x: np.ndarray, binary: bool) -> dict[str, Any]:
    """Blocking tritonclient.http calls (run in a worker thread)."""
    client = triton.InferenceServerClient(f"127.0.0.1:{port}")
    try:
        tensor = triton.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        wanted = [triton.InferRequestedOutput("output", binary_data=binary)]
        asked = client.infer("plain", [tensor], outputs=wanted, request_id="t-1")
        default = client.infer("plain", [tensor], parameters={"timeout_ms": 5000})
        try:
            client.infer("nope", [tensor])
        except InferenceServerException as exc:
            error = (exc.status(), exc.message())
        return {
            "live": client.is_server_live(),
            "ready": client.is_server_ready() and client.is_model_ready("plain"),
            "metadata": client.get_model_metadata("plain"),
            "asked": (asked.as_numpy("output"), asked.get_response()),
            "default": (default.as_numpy("output"), default.get_response()),
            "error": error,
        }
    finally:
        client.close()


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_http(
    containers: Containers, bundles: Bundles, reference: Reference, binary: bool
) -> None:
    x = inputs(2, seed=4)

    async def scenario(http: Http) -> dict[str, Any]:
        return await asyncio.to_thread(triton_calls, http.frontend.http_port or 0, x, binary)

    got = run(http_config(plain(containers, bundles)), scenario)
    assert got["live"] and got["ready"]
    assert got["metadata"]["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 64]}]
    for key in ("asked", "default"):  # "default": no outputs named, so binary answers
        output, response = got[key]
        close(output, reference.base(x))
        assert response["parameters"]["parm_source"] == "original"
    assert got["asked"][1]["id"] == "t-1"
    assert got["error"] == ("404", "unknown model 'nope'; serving ['plain']")


# ---------------------------------------------------------------- provenance and deadlines


def test_a_slow_instance_is_reconstructed_over_http(
    containers: Containers, bundles: Bundles
) -> None:
    """The two rows form one group, one of them on the slow data-0: it can only have come
    back by reconstruction."""

    async def scenario(http: Http) -> tuple[int, Any]:
        return await http.post("/v2/models/coded/infer", v2_json(inputs(2, seed=5)))

    status, answer = run(http_config(coded_slow(containers, bundles)), scenario)
    assert status == 200
    assert answer["parameters"]["parm_source"] == "reconstructed"
    assert sorted(answer["parameters"]["parm_sources"].split(",")) == [
        "original",
        "reconstructed",
    ]


def test_require_original_past_its_timeout_is_504(containers: Containers, bundles: Bundles) -> None:
    request = v2_json(inputs(2, seed=6), parm_require_original=True, timeout_ms=300)

    async def scenario(http: Http) -> tuple[int, Any]:
        return await http.post("/v2/models/coded/infer", request)

    status, answer = run(http_config(coded_slow(containers, bundles)), scenario)
    assert status == 504
    assert answer == {"error": "no output was ready before the query's deadline"}


@pytest.mark.parametrize(
    ("header", "status", "message"),
    [
        ("150", 504, "no output was ready before the query's deadline"),
        ("soon", 400, "header Parm-Timeout-Ms: expected a positive number of ms, got 'soon'"),
        ("-5", 400, "header Parm-Timeout-Ms: expected a positive number of ms, got '-5'"),
    ],
)
def test_the_deadline_header(
    containers: Containers, bundles: Bundles, header: str, status: int, message: str
) -> None:
    async def scenario(http: Http) -> tuple[int, Any]:
        body = v2_json(inputs(1, seed=7))
        return await http.post("/v2/models/slow/infer", body, Parm_Timeout_Ms=header)

    assert run(http_config(slow(containers, bundles)), scenario) == (status, {"error": message})


def test_over_the_admission_limit_is_429(containers: Containers, bundles: Bundles) -> None:
    config = http_config(slow(containers, bundles, max_outstanding=1))
    body = v2_json(inputs(1, seed=8), timeout_ms=300)

    async def scenario(http: Http) -> list[tuple[int, Any]]:
        core = http.frontend.services["slow"].core
        first = asyncio.ensure_future(http.post("/v2/models/slow/infer", body))
        # The second is sent once the first is admitted, not after some sleep; the first
        # stays outstanding until its deadline, far below the slow instance's delay.
        await until(lambda: core.outstanding == 1 or first.done())
        second = await http.post("/v2/models/slow/infer", body)
        return [await first, second]

    first, second = run(config, scenario)
    assert first[0] == 504
    assert second == (
        429,
        {"error": "model is at its admission limit of 1 queries (1 outstanding, 1 asked)"},
    )


# ---------------------------------------------------------------- bad input


def bad(**change: Any) -> dict[str, Any]:
    """A valid one-row request with ``change`` applied to its input tensor."""
    request = v2_json(np.zeros((1, 64), np.float32))
    request["inputs"][0].update(change)
    return request


BAD_REQUESTS = {
    "not-json": (b"{nope", "the request is not valid JSON"),
    "not-an-object": (b"[1, 2]", "the request: expected a JSON object, got list"),
    "no-inputs": ({}, "'inputs': expected a list of tensors, got nothing"),
    "two-inputs": ({"inputs": [bad()["inputs"][0]] * 2}, "expected 1 input tensor, got 2"),
    "wrong-name": (bad(name="x"), "expected input 'input', got 'x'"),
    "wrong-datatype": (bad(datatype="INT32"), "input 'input': expected datatype FP32, got INT32"),
    "unknown-datatype": (bad(datatype="BYTES"), "input 'input': unknown datatype 'BYTES'"),
    "wrong-shape": (
        bad(shape=[1, 8, 8]),
        "input 'input': expected shape [-1, 64], got [1, 8, 8]",
    ),
    "shape-not-ints": (bad(shape=[1, "64"]), "expected 'shape' (a list of integers)"),
    "too-few-values": (bad(data=[0.0] * 63), "shape [1, 64] holds 64 values, got 63"),
    "not-numbers": (bad(data=["a"] * 64), "'data' is not a list of FP32 values"),
    "no-data": (bad(data=None), "expected 'data' (a list) or binary_data_size"),
    "unknown-output": (
        {**bad(), "outputs": [{"name": "logits"}]},
        "unknown output 'logits'; expected 'output'",
    ),
    "bad-timeout": (
        {**bad(), "parameters": {"timeout_ms": "soon"}},
        "parameter timeout_ms: expected a number, got 'soon'",
    ),
    "bad-require-original": (
        {**bad(), "parameters": {"parm_require_original": "maybe"}},
        "parameter parm_require_original: expected a boolean, got 'maybe'",
    ),
}


@pytest.mark.parametrize(("body", "message"), BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_bad_v2_requests_are_400(
    containers: Containers, bundles: Bundles, body: Any, message: str
) -> None:
    data = body if isinstance(body, bytes) else None

    async def scenario(http: Http) -> tuple[int, Any]:
        return await http.post("/v2/models/plain/infer", body, data=data)

    status, answer = run(http_config(plain(containers, bundles)), scenario)
    assert status == 400 and message in answer["error"]


@pytest.mark.parametrize(
    ("length", "extra", "message"),
    [
        ("9999", b"", "Inference-Header-Content-Length: expected a byte count within"),
        (None, b"\0\0\0\0", "binary_data_size is 256 but 260 bytes follow"),
    ],
    ids=["header-length-past-the-body", "binary-size-mismatch"],
)
def test_bad_binary_requests_are_400(
    containers: Containers, bundles: Bundles, length: str | None, extra: bytes, message: str
) -> None:
    body, json_length = binary_request(np.zeros((1, 64), np.float32))

    async def scenario(http: Http) -> tuple[int, Any]:
        header = length or str(json_length)
        path = "/v2/models/plain/infer"
        return await http.post(path, data=body + extra, Inference_Header_Content_Length=header)

    status, answer = run(http_config(plain(containers, bundles)), scenario)
    assert status == 400 and message in answer["error"]


def test_request_size_limits(containers: Containers, bundles: Bundles) -> None:
    """Tensor bytes over max_request_bytes: 400; a body over the HTTP limit: 413."""
    config = http_config(plain(containers, bundles), max_request_bytes=1024)
    big_tensor, length = binary_request(np.zeros((5, 64), np.float32))  # 1280 bytes

    async def scenario(http: Http) -> list[tuple[int, Any]]:
        path = "/v2/models/plain/infer"
        huge = b"{" + b" " * (200 * 1024) + b"}"
        return [
            await http.post(path, data=big_tensor, Inference_Header_Content_Length=str(length)),
            await http.post(path, data=huge),
            await http.post("/plain/predict", data=huge),
        ]

    tensor, body, clipper = run(config, scenario)
    assert tensor == (400, {"error": "input 'input': 1280 bytes exceed the limit of 1024"})
    limit = 4 * 1024 + 64 * 1024
    too_large = f"request body of {len(b' ') * 200 * 1024 + 2} bytes exceeds {limit} bytes"
    assert body == (413, {"error": too_large})
    assert clipper == (413, {"error": "Request too large", "cause": too_large})


# ---------------------------------------------------------------- Clipper


def test_clipper_predict_one_and_a_batch(
    containers: Containers, bundles: Bundles, reference: Reference
) -> None:
    x = inputs(3, seed=9)

    async def scenario(http: Http) -> list[tuple[int, Any]]:
        return [
            await http.post("/plain/predict", {"input": x[0].tolist()}),
            await http.post("/plain/predict", {"input_batch": x[1:].tolist()}),
        ]

    (status, one), (batch_status, batch) = run(http_config(plain(containers, bundles)), scenario)
    assert (status, batch_status) == (200, 200)
    assert {k: one[k] for k in ("query_id", "default", "source")} == {
        "query_id": 0,
        "default": False,
        "source": "original",
    }
    close([one["output"]], reference.base(x[:1]))
    predictions = batch["batch_predictions"]
    assert [p["query_id"] for p in predictions] == [1, 2]
    assert {p["source"] for p in predictions} == {"original"}
    close([p["output"] for p in predictions], reference.base(x[1:]))


def test_clipper_default_output_when_the_deadline_passes(
    containers: Containers, bundles: Bundles
) -> None:
    default = tuple(float(i) for i in range(10))
    config = http_config(slow(containers, bundles, default_output=default))

    async def scenario(http: Http) -> tuple[int, Any]:
        return await http.post("/slow/predict", {"input": [0.0] * 64, "timeout_ms": 150})

    status, answer = run(config, scenario)
    assert status == 200
    assert answer == {
        "query_id": 0,
        "output": list(default),
        "default": True,
        "source": "default",
        "default_explanation": "no output was ready before the query's deadline",
    }


CLIPPER_ERRORS = {
    "no-input": ("/plain/predict", {}, 400, "Bad request", "exactly one of 'input' and"),
    "both": ("/plain/predict", {"input": [], "input_batch": []}, 400, "Bad request", "exactly"),
    "short": ("/plain/predict", {"input": [1.0] * 3}, 400, "Bad request", "expected 64 FP32"),
    "words": ("/plain/predict", {"input": ["a"] * 64}, 400, "Bad request", "not lists of FP32"),
    "empty-batch": ("/plain/predict", {"input_batch": []}, 400, "Bad request", "non-empty list"),
    "unknown-app": ("/nope/predict", {"input": [0.0] * 64}, 404, "Application not found", "nope"),
    "late": (
        "/slow/predict",
        {"input": [0.0] * 64, "timeout_ms": 100},
        504,
        "Deadline exceeded",
        "no output was ready before the query's deadline",
    ),
}


@pytest.mark.parametrize(
    ("path", "body", "status", "error", "cause"), CLIPPER_ERRORS.values(), ids=CLIPPER_ERRORS.keys()
)
def test_clipper_errors(
    containers: Containers,
    bundles: Bundles,
    path: str,
    body: Any,
    status: int,
    error: str,
    cause: str,
) -> None:
    config = http_config(plain(containers, bundles), slow(containers, bundles))

    async def scenario(http: Http) -> tuple[int, Any]:
        return await http.post(path, body)

    got_status, answer = run(config, scenario)
    assert got_status == status
    assert answer["error"] == error and cause in answer["cause"]
