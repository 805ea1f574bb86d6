"""Integration: decode grace and the live check with real model containers on loopback.

data-0 answers every request 300 ms late.  Clients give each query a 250 ms deadline
and the model has no default output, so a query that is answered at all was answered
before its original could have come: reconstructed.  The late originals still arrive,
and each is compared with the reconstruction answered for it
(``parm_reconstruction_checks_total``).  No assertion here reads a clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from frontend.server import Frontend
from tests.frontend.cluster import (
    Bundles,
    Containers,
    SendLog,
    call,
    coded_model,
    frontend_config,
    inputs,
    start_containers,
    with_frontend,
)
from tests.frontend.rest_support import all_up, until

DELAY_MS = 300
DEADLINE_MS = 250
PAIRS = 6


@pytest.fixture(scope="module")
def containers(bundles: Bundles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Containers]:
    running = start_containers(
        {
            "late": (bundles.base, ("--delay-ms", str(DELAY_MS))),
            "fast": (bundles.base, ()),
            "parity": (bundles.parity, ()),
        },
        tmp_path_factory.mktemp("grace-logs"),
    )
    yield running
    assert running.stop() == dict.fromkeys(running.running, 0)


def checks(frontend: Frontend, result: str) -> float:
    """The value of parm_reconstruction_checks_total{result=...} now."""
    for family in text_string_to_metric_families(frontend.metrics.render()):
        for sample in family.samples:
            if sample.name == "parm_reconstruction_checks_total" and (
                sample.labels.get("result") == result
            ):
                return float(sample.value)
    return 0.0


@pytest.mark.parametrize("grace", ["auto", 20.0], ids=["auto", "fixed-20ms"])
def test_late_instance_is_reconstructed_and_its_originals_are_checked(
    containers: Containers, bundles: Bundles, grace: str | float
) -> None:
    model = coded_model(
        bundles, containers, ("late", "fast"), ("parity",),
        group_timeout_ms=100.0,  # two queries sent together always form one group
        decode_grace=grace,
    )  # fmt: skip
    x = inputs(2 * PAIRS, seed=5)

    async def scenario(frontend: Frontend, stub: Any) -> tuple[list[str | None], list[int]]:
        await all_up(frontend)
        sends = SendLog(frontend.services[bundles.model])
        sources: list[str | None] = []
        for i in range(0, 2 * PAIRS, 2):
            pair = await asyncio.gather(
                *(
                    call(stub, bundles.request(x[row : row + 1], timeout_ms=DEADLINE_MS))
                    for row in (i, i + 1)
                )
            )
            sources += [r.source if r.code is None else str(r.code) for r in pair]
        late = sends.rows_sent_to("data-0", x)
        # every late original comes back 300 ms after its send and is checked
        await until(lambda: checks(frontend, "agree") + checks(frontend, "disagree") >= len(late))
        return sources, late

    sources, late = with_frontend(frontend_config(model), scenario)
    assert late, "data-0 got no query"
    for row in late:
        assert sources[row] == "reconstructed"  # answered within 250 ms: not the original
    assert set(sources) <= {"original", "reconstructed"}
