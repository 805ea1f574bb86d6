"""One latency run on a netns network: instances and their shuffle sidecars on hosts of
their own, shuffles through the rate-limited links, hosts cut off and healed.

Real namespaces and processes (needs root; skipped elsewhere, saying so).  Nothing here
times anything: the run's figures are the benchmark's; the test checks the wiring.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from bench.contention import parse_contention
from bench.contention.shuffle import sidecar_bytes
from bench.latency import QUICK, clusters_for, run_point
from deploy import netns
from deploy.netns import namespaces
from frontend.events import Mode
from tests.model_container.container_process import make_bundle, make_parity_bundle

pytestmark = pytest.mark.skipif(netns.unavailable() is not None, reason=netns.unavailable() or "")
K = 2
#: one 100 Mbit/s link carries a 12.8 MB transfer (128 MB scaled) in about a second;
#: the cut-off schedule's first episode (seed 0) falls 54 ms in, inside the settle time
CONTENTION = "shuffle:concurrency=1,min_mb=128,max_mb=128+cutoff:rate=5,min_ms=50,max_ms=100"


def test_a_run_on_hosts_shuffles_through_their_links_and_cuts_them(tmp_path: Path) -> None:
    base = make_bundle(tmp_path / "base", name="digits")
    bundles = (base, make_parity_bundle(tmp_path / "parity", base, K))
    plan = dataclasses.replace(
        QUICK, modes=(Mode.CODED,), groups=1, rates=(40.0,), repeats=1, queries=40, warmup=10,
        settle_s=0.5, network="netns", link_mbit=100.0, contention=parse_contention(CONTENTION),
    )  # fmt: skip

    async def scenario() -> tuple[dict[str, Any], list[tuple[int, int]], set[str], int]:
        async with clusters_for(K, plan, bundles, tmp_path / "logs") as running:
            (mc,) = running
            assert mc.cluster.network is not None
            index = mc.cluster.network.index
            assert index is not None
            hosts = {mc.cluster.network.host(i.key).address for i in mc.cluster.instances.values()}
            row = await run_point(mc, plan, 40.0, 0, tmp_path / "raw")
            moved = [await sidecar_bytes(s) for s in mc.sidecars_at.values()]
            sidecar_hosts = {address for address, _ in mc.sidecars_at.values()}
            assert sidecar_hosts == hosts  # each sidecar on its instance's host
            assert mc.cluster.network.is_cut("digits/data-0") is False
        return row, moved, sidecar_hosts, index

    (tmp_path / "raw").mkdir()
    row, moved, hosts, index = asyncio.run(scenario())
    assert row["network"] == "netns" and row["injected"]["cutoff_episodes"] >= 1
    assert sum(received for received, _ in moved) > 0  # bytes crossed the links
    assert sum(row["sources"].values()) == 40  # every measured query answered
    assert row["load"] == pytest.approx(40.0 / plan.capacity(K)) and row["extra_load"] > 0
    assert len(hosts) == 3
    assert not [n for n in namespaces() if n.startswith(f"parm{index}")]
