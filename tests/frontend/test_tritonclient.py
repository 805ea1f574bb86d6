"""Conformance: Triton's own clients, ``tritonclient.grpc`` and ``tritonclient.grpc.aio``.

Triton's clients cannot share a process with this project's protobuf modules: both
register ``inference.*`` messages in protobuf's default descriptor pool (see
tests/proto/test_wire.py).  So this module has two halves.  The client half runs in a
subprocess, ``python -m tests.frontend.test_tritonclient TARGET MODEL INPUT OUTPUT``:
it makes every client call against a running frontend and prints a JSON report.  The
test half starts three real containers and an in-process frontend, runs that
subprocess once, and checks the report.  At its top level the module imports neither
``tritonclient`` nor ``proto``, so both processes can import it.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import numpy as np
import pytest

CLIENTS = ["sync", "aio"]
ROWS = 3  # one batched request; the single-row requests use its first row
STREAMED = 8
ORIGINALS_ONLY = {"parm_require_original": True}

Report = dict[str, Any]


def assert_close(actual: Any, expected: Any) -> None:
    np.testing.assert_allclose(actual, expected, rtol=0.0, atol=1e-5)


# ---------------------------------------------------------------- the client half


class Probe:
    """Every call the tests check, made with one of Triton's clients."""

    def __init__(self, model: str, input_name: str, output_name: str, x: np.ndarray) -> None:
        import tritonclient.grpc as triton

        self.triton = triton
        self.model, self.input_name, self.output_name, self.x = model, input_name, output_name, x

    def tensor(self, x: np.ndarray) -> Any:
        tensor = self.triton.InferInput(self.input_name, list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        return tensor

    def answer(self, result: Any) -> Report:
        response = result.get_response()
        return {
            "output": result.as_numpy(self.output_name).tolist(),
            "id": response.id,
            "source": response.parameters["parm_source"].string_param,
            "sources": response.parameters["parm_sources"].string_param,
        }

    def infer_kwargs(self) -> dict[str, dict[str, Any]]:
        """Keyword arguments of ``infer`` for each call in the report."""
        outputs = [self.triton.InferRequestedOutput(self.output_name)]
        one = [self.tensor(self.x[:1])]
        return {
            "infer": {
                "inputs": one,
                "outputs": outputs,
                "request_id": "r1",
                "parameters": ORIGINALS_ONLY,
            },
            "batch": {"inputs": [self.tensor(self.x)], "parameters": ORIGINALS_ONLY},
            "coded": {"inputs": one},
        }

    def error_kwargs(self) -> dict[str, dict[str, Any]]:
        one = [self.tensor(self.x[:1])]
        return {
            "unknown-model": {"model_name": "no-such-model", "inputs": one},
            "shape": {"model_name": self.model, "inputs": [self.tensor(self.x[:1, :8])]},
            "timeout-ms": {
                "model_name": self.model,
                "inputs": one,
                "parameters": {"timeout_ms": "soon"},
            },
        }

    def stream_requests(self) -> list[dict[str, Any]]:
        """``async_stream_infer`` keyword arguments: STREAMED good requests, then a bad one."""
        good = [
            {
                "model_name": self.model,
                "inputs": [self.tensor(self.x[i % ROWS : i % ROWS + 1])],
                "request_id": f"s{i}",
                "parameters": ORIGINALS_ONLY,
            }
            for i in range(STREAMED)
        ]
        bad = {
            "model_name": self.model,
            "inputs": [self.tensor(self.x[:1, :8])],
            "request_id": "bad",
        }
        return [*good, bad]


def sync_report(target: str, probe: Probe) -> Report:
    from tritonclient.utils import InferenceServerException

    with probe.triton.InferenceServerClient(target) as client:
        report: Report = {
            "live": client.is_server_live(),
            "ready": client.is_server_ready(),
            "model_ready": client.is_model_ready(probe.model),
            "server_metadata": client.get_server_metadata(as_json=True),
            "model_metadata": client.get_model_metadata(probe.model, as_json=True),
        }
        for call, kwargs in probe.infer_kwargs().items():
            report[call] = probe.answer(client.infer(probe.model, **kwargs))
        report["errors"] = {}
        for case, kwargs in probe.error_kwargs().items():
            report["errors"][case] = _error_of(InferenceServerException, client.infer, **kwargs)
        report["errors"]["metadata"] = _error_of(
            InferenceServerException, client.get_model_metadata, "no-such-model"
        )
        answers: queue.SimpleQueue[tuple[Any, Any]] = queue.SimpleQueue()
        client.start_stream(callback=lambda result, error: answers.put((result, error)))
        for kwargs in probe.stream_requests():
            client.async_stream_infer(**kwargs)
        client.stop_stream()  # returns once every request has its answer
        streamed = [answers.get_nowait() for _ in range(answers.qsize())]
        report["stream"] = _stream_report(probe, streamed)
    return report


async def aio_report(target: str, probe: Probe) -> Report:
    import tritonclient.grpc.aio as aio
    from tritonclient.utils import InferenceServerException

    async with aio.InferenceServerClient(target) as client:
        report: Report = {
            "live": await client.is_server_live(),
            "ready": await client.is_server_ready(),
            "model_ready": await client.is_model_ready(probe.model),
            "server_metadata": await client.get_server_metadata(as_json=True),
            "model_metadata": await client.get_model_metadata(probe.model, as_json=True),
        }
        for call, kwargs in probe.infer_kwargs().items():
            report[call] = probe.answer(await client.infer(probe.model, **kwargs))
        report["errors"] = {}
        for case, kwargs in probe.error_kwargs().items():
            try:
                await client.infer(**kwargs)
                report["errors"][case] = None
            except InferenceServerException as exc:
                report["errors"][case] = [exc.status(), exc.message()]
        try:
            await client.get_model_metadata("no-such-model")
            report["errors"]["metadata"] = None
        except InferenceServerException as exc:
            report["errors"]["metadata"] = [exc.status(), exc.message()]

        async def requests() -> AsyncIterator[dict[str, Any]]:
            for kwargs in probe.stream_requests():
                yield kwargs

        streamed = [answer async for answer in client.stream_infer(requests())]
        report["stream"] = _stream_report(probe, streamed)
    return report


def _error_of(exc_type: type[Exception], fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``[status, message]`` of the exception ``fn`` raises, or None if it raises none."""
    try:
        fn(*args, **kwargs)
    except exc_type as exc:
        return [exc.status(), exc.message()]  # type: ignore[attr-defined]
    return None


def _stream_report(probe: Probe, streamed: list[tuple[Any, Any]]) -> Report:
    return {
        "answers": [probe.answer(result) for result, error in streamed if error is None],
        "errors": [error.message() for _, error in streamed if error is not None],
    }


def main(argv: list[str]) -> None:
    target, model, input_name, output_name = argv
    x = np.array(json.load(sys.stdin), np.float32)
    probe = Probe(model, input_name, output_name, x)
    report = {"sync": sync_report(target, probe), "aio": asyncio.run(aio_report(target, probe))}
    json.dump(report, sys.stdout)
    sys.stdout.flush()
    # The report is out: skip the interpreter's teardown, where tritonclient's and gRPC's
    # threads can hold the exit (it did in tests/model_container/test_container.py).
    os._exit(0)


# ---------------------------------------------------------------- the test half


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.frontend.cluster import session_bundles

    return session_bundles(tmp_path_factory)


@pytest.fixture(scope="module")
def expected(bundles: Any) -> np.ndarray:
    """F on each row of the inputs the client half sends."""
    from tests.frontend.cluster import Reference

    return Reference(bundles).base(_inputs())


def _inputs() -> np.ndarray:
    from tests.frontend.cluster import inputs

    return inputs(ROWS, seed=20)


@pytest.fixture(scope="module")
def reports(bundles: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Report]:
    """Run the client half once against a frontend over three real containers."""
    from frontend.config import ModelConfig
    from tests.frontend import cluster

    running = cluster.start_containers(
        {
            "data-0": (bundles.base, ()),
            "data-1": (bundles.base, ()),
            "parity-0": (bundles.parity, ()),
        },
        tmp_path_factory.mktemp("container-logs"),
    )
    model = ModelConfig(
        name=bundles.model,
        base_bundle=bundles.base,
        parity_bundle=bundles.parity,
        data=(
            cluster.address("data-0", running["data-0"]),
            cluster.address("data-1", running["data-1"]),
        ),
        parity=(cluster.address("parity-0", running["parity-0"]),),
    )
    args = [bundles.model, bundles.input_name, bundles.output_name]
    try:
        yield asyncio.run(_run_client_half(cluster.frontend_config(model), args))
    finally:
        assert running.stop() == dict.fromkeys(running.running, 0)


async def _run_client_half(config: Any, args: list[str]) -> Report:
    from tests.frontend.cluster import serving
    from tests.model_container.container_process import REPO_ROOT

    async with serving(config) as frontend:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.frontend.test_tritonclient",
            f"127.0.0.1:{frontend.grpc_port}",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=REPO_ROOT,
        )
        stdin = json.dumps(_inputs().tolist()).encode()
        out, err = await asyncio.wait_for(proc.communicate(stdin), timeout=120)
    assert proc.returncode == 0, err.decode(errors="replace")
    report: Report = json.loads(out)
    return report


@pytest.fixture(params=CLIENTS)
def report(request: pytest.FixtureRequest, reports: Report) -> Report:
    """The report of one client: ``sync`` (InferenceServerClient) or ``aio``."""
    client: Report = reports[request.param]
    return client


def test_health(report: Report) -> None:
    assert (report["live"], report["ready"], report["model_ready"]) == (True, True, True)


def test_server_metadata(report: Report) -> None:
    from frontend.server import VERSION

    meta = report["server_metadata"]
    assert (meta["name"], meta["version"]) == ("parm-frontend", VERSION)
    assert "parm" in meta["extensions"]


def test_model_metadata(report: Report, bundles: Any) -> None:
    from tests.frontend.cluster import FEATURES

    meta = report["model_metadata"]
    assert meta["name"] == bundles.model
    assert meta["inputs"] == [
        {"name": bundles.input_name, "datatype": "FP32", "shape": ["-1", str(FEATURES)]}
    ]
    assert meta["outputs"] == [
        {"name": bundles.output_name, "datatype": "FP32", "shape": ["-1", "10"]}
    ]


def test_infer_equals_the_base_model(report: Report, expected: np.ndarray) -> None:
    answer = report["infer"]
    assert (answer["id"], answer["source"], answer["sources"]) == ("r1", "original", "")
    assert_close(answer["output"], expected[:1])


def test_batched_infer_lists_each_rows_source(report: Report, expected: np.ndarray) -> None:
    answer = report["batch"]
    assert answer["source"] == "original"
    assert answer["sources"] == ",".join(["original"] * ROWS)
    assert_close(answer["output"], expected)


def test_coded_infer_says_where_its_answer_came_from(report: Report, expected: np.ndarray) -> None:
    answer = report["coded"]
    assert answer["source"] in ("original", "reconstructed")
    if answer["source"] == "original":  # a reconstruction is approximate
        assert_close(answer["output"], expected[:1])


@pytest.mark.parametrize(
    ("case", "status", "message"),
    [
        ("unknown-model", "StatusCode.NOT_FOUND", "unknown model 'no-such-model'"),
        ("metadata", "StatusCode.NOT_FOUND", "unknown model 'no-such-model'"),
        ("shape", "StatusCode.INVALID_ARGUMENT", "got [1, 8]"),
        ("timeout-ms", "StatusCode.INVALID_ARGUMENT", "timeout_ms: expected a number, got 'soon'"),
    ],
)
def test_errors_are_inference_server_exceptions(
    report: Report, case: str, status: str, message: str
) -> None:
    got_status, got_message = report["errors"][case]
    assert got_status == status and message in got_message


def test_stream_infer(report: Report, expected: np.ndarray) -> None:
    """start_stream/async_stream_infer (sync), stream_infer (aio): every request is
    answered once with its id, and the bad one with an error that keeps the stream open."""
    stream = report["stream"]
    assert sorted(a["id"] for a in stream["answers"]) == sorted(f"s{i}" for i in range(STREAMED))
    assert len(stream["errors"]) == 1 and stream["errors"][0].startswith("INVALID_ARGUMENT: ")
    for answer in stream["answers"]:
        i = int(answer["id"][1:]) % ROWS
        assert answer["source"] == "original"
        assert_close(answer["output"], expected[i : i + 1])


if __name__ == "__main__":
    main(sys.argv[1:])
