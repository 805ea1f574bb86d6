"""Frontend workers: N real frontend processes sharing the client ports on loopback.

The instances are real model containers (the demo pair, each answer delayed 100 ms so
that calls are in flight when a worker is killed or drained); the expected outputs are
computed offline from the same bundles.  Which worker a gRPC channel reached is read
from the merged metrics: each worker's answers carry its ``frontend_worker`` label.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from deploy.workers import (
    WORKER,
    FrontendWorkers,
    hold_port,
    merge_metrics,
    worker_config,
)
from frontend.config import FrontendConfig, InstanceAddress, ModelConfig
from frontend.events import Source
from frontend.metrics import Metrics
from tests.frontend.cluster import (
    Bundles,
    Containers,
    Reference,
    Reply,
    assert_close,
    call,
    coded_model,
    inputs,
    reply_of,
    session_bundles,
    start_containers,
)
from tests.model_container.container_process import alive, inference_stub

#: every answer is an original: the reconstruction would have to wait this long
ORIGINALS_ONLY_MS = 60_000
DELAY_MS = "100"
CALL_TIMEOUT_S = 120.0
#: gRPC shares one connection among a process's channels to the same target unless
#: told not to; the kernel picks a worker per connection
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]


# ---------------------------------------------------------------- units


def test_a_worker_config_shares_the_ports_and_splits_admission(tmp_path: Path) -> None:
    base = _config(tmp_path, max_outstanding=1001, max_outstanding_per_client=10)
    config = dataclasses.replace(base, workers=4, metrics_port=9000)
    worker = worker_config(config)
    (m,) = worker.models
    assert (m.max_outstanding, m.max_outstanding_per_client) == (251, 3)
    assert (worker.reuse_port, worker.metrics_port, worker.grpc_port) == (True, None, 0)
    (half,) = worker_config(dataclasses.replace(base, workers=2)).models
    assert half.max_outstanding_per_client == 5


def _config(root: Path, **settings: Any) -> FrontendConfig:
    model = ModelConfig("m", root, (InstanceAddress("data-0", "127.0.0.1:1"),), **settings)
    return FrontendConfig(models=(model,), grpc_port=0)


@pytest.mark.parametrize("workers", [0, -1, True, 1.5])
def test_a_frontend_has_one_or_more_workers(tmp_path: Path, workers: Any) -> None:
    with pytest.raises(ValueError, match="workers: expected a whole number >= 1"):
        dataclasses.replace(_config(tmp_path), workers=workers)


def test_a_held_port_is_shared_by_reuseport_sockets_only() -> None:
    with contextlib.closing(hold_port("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
        with contextlib.closing(hold_port("127.0.0.1", port)) as again:
            assert again.getsockname()[1] == port
        with socket.socket() as plain, pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples called ``name`` in ``text``, by their labels."""
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_merged_metrics_label_each_sample_with_its_worker() -> None:
    texts = {}
    for index, n in ((0, 3), (1, 4)):
        metrics = Metrics()
        metrics.answers.labels("m", Source.ORIGINAL.value).inc(n)
        metrics.latency.labels("m", "original").observe(0.002 * (index + 1))
        texts[index] = metrics.render()
    merged = merge_metrics(texts)
    answers = samples(merged, "parm_answers_total")
    assert answers == {
        (("frontend_worker", "0"), ("model", "m"), ("source", "original")): 3.0,
        (("frontend_worker", "1"), ("model", "m"), ("source", "original")): 4.0,
    }
    counts = samples(merged, "parm_request_latency_seconds_count")
    assert sorted(counts.values()) == [1.0, 1.0]
    # one family per name: the text format allows each HELP/TYPE once
    assert merged.count("# TYPE parm_answers_total counter") == 1
    assert merge_metrics({}) == ""


# ---------------------------------------------------------------- real processes


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    return session_bundles(tmp_path_factory)


@pytest.fixture(scope="module")
def containers(bundles: Bundles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containers]:
    delay = ["--delay-ms", DELAY_MS]
    specs: dict[str, tuple[Path, Sequence[str]]] = {
        "d0": (bundles.base, delay),
        "d1": (bundles.base, delay),
        "p0": (bundles.parity, delay),
    }
    running = start_containers(specs, tmp_path_factory.mktemp("logs"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def reference(bundles: Bundles) -> Reference:
    return Reference(bundles)


def workers_config(bundles: Bundles, containers: Containers) -> FrontendConfig:
    model = coded_model(bundles, containers, ["d0", "d1"], ["p0"], decode_grace=ORIGINALS_ONLY_MS)
    return FrontendConfig(
        models=(model,), grpc_port=0, metrics_port=0, workers=2, shutdown_grace_s=60.0
    )


@contextlib.asynccontextmanager
async def running(config: FrontendConfig) -> AsyncIterator[FrontendWorkers]:
    pool = FrontendWorkers(config)
    try:
        await pool.start()
        await pool.wait_ready(180.0, every_instance=True)
        yield pool
    finally:
        pids = [w.pid for w in pool.workers]
        await pool.stop()
        assert not any(pid is not None and alive(pid) for pid in pids)


async def answers_by_worker(pool: FrontendWorkers) -> dict[str, float]:
    text = await pool.scrape()
    counts: dict[str, float] = {}
    for labels, value in samples(text, "parm_answers_total").items():
        worker = dict(labels)[WORKER]
        counts[worker] = counts.get(worker, 0.0) + value
    return counts


@contextlib.asynccontextmanager
async def channel_to(pool: FrontendWorkers, worker: int, bundles: Bundles) -> AsyncIterator[Any]:
    """A stub whose channel the kernel gave to ``worker``: fresh channels until one is
    (each tried with one query; the chance that 200 all miss is 2**-200)."""
    x = inputs(1, seed=worker)
    for _ in range(200):
        async with contextlib.AsyncExitStack() as stack:
            channel = await stack.enter_async_context(
                grpc.aio.insecure_channel(f"127.0.0.1:{pool.grpc_port}", OWN_CONNECTION)
            )
            stub = inference_stub(channel)
            before = (await answers_by_worker(pool)).get(str(worker), 0.0)
            reply = await call(stub, bundles.request(x), CALL_TIMEOUT_S)
            assert reply.source == "original", reply
            if (await answers_by_worker(pool)).get(str(worker), 0.0) > before:
                stack.pop_all()
                try:
                    yield stub
                finally:
                    await channel.close()
                return
    raise AssertionError(f"no channel reached worker {worker}")


def test_two_workers_answer_every_query_once_with_provenance(
    bundles: Bundles, containers: Containers, reference: Reference
) -> None:
    x = inputs(40, seed=1)
    expected = reference.base(x)

    async def scenario() -> tuple[list[Reply], dict[str, float], str]:
        async with running(workers_config(bundles, containers)) as pool:
            async with channel_to(pool, 0, bundles) as one, channel_to(pool, 1, bundles) as two:
                stubs = [one, two]
                replies = await asyncio.gather(
                    *(
                        call(stubs[i % 2], bundles.request(x[i : i + 1], request_id=str(i)))
                        for i in range(len(x))
                    )
                )
            return replies, await answers_by_worker(pool), await pool.scrape()

    replies, counts, text = asyncio.run(scenario())
    for i, reply in enumerate(replies):
        assert reply.code is None and reply.source == "original", reply
        assert_close(reply.output, expected[i : i + 1])
    # the 40 queries and the probes that found each worker, each answered by one worker
    assert counts["0"] >= 21 and counts["1"] >= 21
    ready = samples(text, "parm_frontend_worker_ready")
    assert ready == {((WORKER, "0"),): 1.0, ((WORKER, "1"),): 1.0}
    assert set(samples(text, "parm_model_ready")) == {
        ((WORKER, w), ("model", bundles.model)) for w in ("0", "1")
    }


def test_a_worker_killed_under_load_is_restarted_and_no_query_is_answered_twice(
    bundles: Bundles, containers: Containers, reference: Reference
) -> None:
    concurrency = 16

    async def scenario() -> tuple[dict[int, list[Reply]], dict[int, np.ndarray], int, int]:
        outcomes: dict[int, list[Reply]] = {}
        sent: dict[int, np.ndarray] = {}
        answered = asyncio.Condition()
        count = 0
        done = asyncio.Event()
        next_id = iter(range(1_000_000))

        async with running(workers_config(bundles, containers)) as pool:
            channels = [
                grpc.aio.insecure_channel(f"127.0.0.1:{pool.grpc_port}", OWN_CONNECTION)
                for _ in range(8)
            ]

            async def client(stub: Any) -> None:
                nonlocal count
                while not done.is_set():
                    i = next(next_id)
                    sent[i] = inputs(1, seed=i)
                    reply = await _call(stub, bundles.request(sent[i], request_id=str(i)))
                    outcomes.setdefault(i, []).append(reply)
                    async with answered:
                        count += 1
                        answered.notify_all()

            async def until(n: int) -> None:
                async with answered:
                    await answered.wait_for(lambda: count >= n)

            victim = pool.workers[0]
            first_pid = victim.pid
            async with asyncio.TaskGroup() as group:
                for c in range(concurrency):
                    group.create_task(client(inference_stub(channels[c % len(channels)])))
                await until(30)
                victim.started.clear()
                pool.kill(0, signal.SIGKILL)
                await asyncio.wait_for(victim.started.wait(), CALL_TIMEOUT_S)
                await asyncio.wait_for(victim.ready.wait(), CALL_TIMEOUT_S)
                at_restart = count
                await until(at_restart + 30)
                done.set()
            for channel in channels:
                await channel.close()
            assert victim.restarts == 1 and victim.pid != first_pid
            async with channel_to(pool, 0, bundles):  # the restarted worker serves
                pass
        return outcomes, sent, at_restart, count

    outcomes, sent, at_restart, total = asyncio.run(scenario())
    assert total > at_restart + 29
    unavailable = 0
    for i, replies in outcomes.items():
        (reply,) = replies  # exactly one outcome per query sent
        if reply.code is not None:
            # only calls in flight on the killed worker: its connections were reset
            assert reply.code == grpc.StatusCode.UNAVAILABLE, reply
            unavailable += 1
            continue
        assert reply.source == "original", reply
        assert_close(reply.output, reference.base(sent[i]))
    assert unavailable <= concurrency


async def _call(stub: Any, request: Any) -> Reply:
    """`call` that waits for a channel to (re)connect rather than failing at once."""
    try:
        response = await stub.ModelInfer(request, timeout=CALL_TIMEOUT_S, wait_for_ready=True)
    except grpc.aio.AioRpcError as exc:
        return Reply(0.0, code=exc.code(), message=exc.details() or "")
    return reply_of(response)


def test_sigterm_drains_a_worker_and_it_is_started_again(
    bundles: Bundles, containers: Containers, reference: Reference
) -> None:
    x = inputs(16, seed=7)  # 8 groups on 2 data instances at 100 ms: ~800 ms in flight

    async def scenario() -> tuple[Reply, int | None, int]:
        async with running(workers_config(bundles, containers)) as pool:
            async with channel_to(pool, 0, bundles) as stub:
                victim = pool.workers[0]
                process = victim.process
                assert process is not None
                big = asyncio.ensure_future(call(stub, bundles.request(x), CALL_TIMEOUT_S))
                await _until_outstanding(pool, "0")
                victim.started.clear()
                pool.kill(0, signal.SIGTERM)
                reply = await big
                await asyncio.wait_for(victim.started.wait(), CALL_TIMEOUT_S)
            return reply, process.exitcode, victim.restarts

    reply, code, restarts = asyncio.run(scenario())
    assert reply.code is None and reply.sources == ("original",) * len(x), reply
    assert_close(reply.output, reference.base(x))
    assert code == 0  # it drained and exited by itself
    assert restarts == 1


async def _until_outstanding(pool: FrontendWorkers, worker: str) -> None:
    """Wait (scraping) until ``worker`` holds admitted queries."""
    async with asyncio.timeout(CALL_TIMEOUT_S):
        while True:
            text = await pool.scrape()
            held = samples(text, "parm_outstanding_queries")
            if any(dict(labels)[WORKER] == worker and v > 0 for labels, v in held.items()):
                return
            await asyncio.sleep(0.01)
