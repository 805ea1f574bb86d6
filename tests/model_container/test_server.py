"""ContainerConfig, the CLI, readiness and fault draws, in process."""

import asyncio
import itertools
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from model_container.__main__ import main, parse_args
from model_container.config import ContainerConfig
from model_container.container import Container
from model_container.server import EXIT_BAD_BUNDLE, serve
from tests.model_container.container_process import (
    MISFIT,
    MODEL,
    REPO_ROOT,
    free_port,
    inference_stub,
    make_misfit_bundle,
    zero_request,
)


def test_cli_maps_flags_to_config():
    flags = "--bundle b --port 1 --stream-port 2 --delay-ms 5 --fail-prob 0.5 --seed 3"
    config = parse_args([*flags.split(), "--name", "n", "--threads", "2", "--device", "cpu"])
    assert config == ContainerConfig(
        bundle=Path("b"),
        port=1,
        stream_port=2,
        device="cpu",
        threads=2,
        delay_ms=5.0,
        fail_prob=0.5,
        seed=3,
        name="n",
    )


def test_cli_rejects_bad_values(capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(["--bundle", "b", "--port", "1", "--fail-prob", "2"])
    assert info.value.code == 2
    assert "fail_prob: expected a probability in [0, 1], got 2.0" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"threads": 0}, "threads: expected >= 1, got 0"),
        ({"delay_ms": -1.0}, "delay_ms: expected >= 0, got -1.0"),
        ({"delay_prob": 1.5}, "delay_prob: expected a probability in [0, 1], got 1.5"),
        ({"device": "tpu"}, "device: expected auto, cpu or cuda[:N], got 'tpu'"),
    ],
)
def test_config_validation(changes, message):
    with pytest.raises(ValueError) as info:
        ContainerConfig(bundle=Path("b"), port=0, **changes)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("delay_ms", "delay_prob", "effective"),
    [(0.0, None, 0.0), (10.0, None, 1.0), (10.0, 0.25, 0.25)],
)
def test_delay_probability_defaults_to_one_when_a_delay_is_set(delay_ms, delay_prob, effective):
    config = ContainerConfig(bundle=Path("b"), port=0, delay_ms=delay_ms, delay_prob=delay_prob)
    assert config.effective_delay_prob == effective


def test_main_reports_a_missing_bundle(tmp_path, caplog):
    assert main(["--bundle", str(tmp_path / "nope"), "--port", "0"]) == EXIT_BAD_BUNDLE
    assert "cannot read bundle manifest" in caplog.text


def test_a_bundle_that_cannot_load_ends_the_process_with_one_line(tmp_path):
    bundle = make_misfit_bundle(tmp_path / "b")
    cmd = [sys.executable, "-m", "model_container", "--bundle", str(bundle), "--port", "0"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(cmd, capture_output=True, cwd=REPO_ROOT, env=env, timeout=120)
    assert done.returncode == EXIT_BAD_BUNDLE
    errors = [line for line in done.stderr.decode().splitlines() if " ERROR " in line]
    assert len(errors) == 1 and errors[0].endswith(MISFIT), done.stderr.decode()
    assert b"Traceback" not in done.stderr


def test_a_container_stopped_while_loading_exits_at_once(bundle, monkeypatch):
    loading, release = threading.Event(), threading.Event()

    def stuck_load(self: Container, device: str) -> None:  # a read that never ends
        loading.set()
        release.wait()

    monkeypatch.setattr(Container, "load", stuck_load)
    config = ContainerConfig(bundle=bundle, port=free_port(), device="cpu")

    async def scenario() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(serve(config, stop=stop, handle_signals=False))
        assert await asyncio.to_thread(loading.wait, 60)
        stop.set()  # what SIGTERM does
        await task

    # asyncio.run in a thread: before the fix it waited for the loading thread forever
    runner = threading.Thread(target=asyncio.run, args=(scenario(),))
    runner.start()
    try:
        runner.join(60)
        assert not runner.is_alive(), "serve() or asyncio.run waited for the stuck load"
    finally:
        release.set()
        runner.join()


@pytest.mark.parametrize("which", ["--port", "--stream-port"])
def test_main_reports_a_port_in_use(bundle, caplog, which):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        args = {"--port": "0", "--stream-port": "0", which: port}
        assert main(["--bundle", str(bundle), *itertools.chain(*args.items())]) == 1
    assert "cannot serve" in caplog.text and port in caplog.text


def test_serve_in_process_until_stopped(bundle):
    port, stream_port = free_port(), free_port()
    config = ContainerConfig(bundle=bundle, port=port, stream_port=stream_port, device="cpu")

    async def run() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(serve(config, stop=stop, handle_signals=False))
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service=MODEL)
            async for update in health.Watch(request, timeout=60, wait_for_ready=True):
                if update.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            reply = await inference_stub(channel).ModelInfer(zero_request("q"))
            assert reply.id == "q"
        stop.set()
        await asyncio.wait_for(task, timeout=10)

    asyncio.run(run())
