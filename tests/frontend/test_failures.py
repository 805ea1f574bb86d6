"""Integration: an instance dies under load and no query is lost.

Three real containers (two data, one parity) serve the module; the test SIGKILLs the
``data-1`` process while queries are in flight.  Every query must still get exactly one
answer, an original or a reconstruction, and no error.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from frontend.server import Frontend
from tests.frontend.cluster import (
    Bundles,
    Containers,
    Reference,
    Reply,
    assert_close,
    call,
    coded_model,
    frontend_config,
    inputs,
    start_containers,
    with_frontend,
)

QUERIES = 300
CONCURRENCY = 8
KILL_AFTER = 100  # answers


@pytest.fixture(scope="module")
def containers(bundles: Bundles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containers]:
    running = start_containers(
        {
            "data-0": (bundles.base, ()),
            "data-1": (bundles.base, ()),
            "parity-0": (bundles.parity, ()),
        },
        tmp_path_factory.mktemp("container-logs"),
    )
    yield running
    statuses = running.stop()
    assert statuses["data-0"] == statuses["parity-0"] == 0


def test_killing_an_instance_under_load_loses_no_query(
    containers: Containers, bundles: Bundles
) -> None:
    model = coded_model(bundles, containers, ("data-0", "data-1"), ("parity-0",))
    x = inputs(QUERIES, seed=11)
    victim = containers["data-1"]

    async def scenario(frontend: Frontend, stub: Any) -> tuple[list[Reply], bool]:
        replies: dict[int, list[Reply]] = {i: [] for i in range(QUERIES)}
        todo = iter(range(QUERIES))
        answered = 0

        async def worker() -> None:
            nonlocal answered
            for i in todo:
                replies[i].append(await call(stub, bundles.request(x[i : i + 1])))
                answered += 1
                if answered == KILL_AFTER:
                    victim.proc.send_signal(signal.SIGKILL)  # mid-load: 7 more in flight

        async with asyncio.TaskGroup() as group:
            for _ in range(CONCURRENCY):
                group.create_task(worker())
        assert all(len(r) == 1 for r in replies.values())
        up = frontend.services[bundles.model].core.is_up("data-1")
        return [r for (r,) in replies.values()], up

    replies, data_1_up = with_frontend(frontend_config(model), scenario)
    assert victim.proc.wait(timeout=10) == -signal.SIGKILL and not data_1_up
    assert [(r.code, r.message) for r in replies if r.code is not None] == []
    assert {r.source for r in replies} <= {"original", "reconstructed"}
    # Originals are exact; a reconstruction is approximate, so it is only checked in
    # test_server.py, where each query's group partner is known.
    reference = Reference(bundles)
    originals = [i for i, r in enumerate(replies) if r.source == "original"]
    assert_close(
        np.concatenate([replies[i].output for i in originals if replies[i].output is not None]),
        reference.base(x[originals]),
    )
