"""A local cluster on a netns network: every instance on a host of its own.

Real namespaces, real processes (needs root; skipped elsewhere, saying so).  k=2 with 2
data and 1 parity instance.  A host cut off (DROP both ways: the frontend's connection to
it neither breaks nor answers) has its query answered by reconstruction, long before the
client's deadline; once healed, its late original arrives and it serves again.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import pytest

from deploy import netns
from deploy.local import LocalCluster
from deploy.netns import NetworkSpec, namespaces
from deploy.spec import Deployment, ModelDeployment
from proto.tensors import get_parameters, make_infer_request
from tests.frontend.rest_support import until
from tests.model_container.container_process import (
    IN_FEATURES,
    inference_stub,
    make_bundle,
    make_parity_bundle,
)

pytestmark = pytest.mark.skipif(netns.unavailable() is not None, reason=netns.unavailable() or "")
DEADLINE_MS = 10_000.0


async def ask(port: int, x: np.ndarray) -> str:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        deadline = {"timeout_ms": DEADLINE_MS}
        request = make_infer_request("m", {"input": x[None]}, parameters=deadline)
        response = await inference_stub(channel).ModelInfer(request)
    source = get_parameters(response.parameters)["parm_source"]
    assert isinstance(source, str)
    return source


def test_a_cut_host_is_reconstructed_around_and_rejoins_after_the_heal(tmp_path: Path) -> None:
    base = make_bundle(tmp_path / "base", name="m")
    parity = make_parity_bundle(tmp_path / "parity", base)
    # an original is late after 1 s (not the learned few ms: a loaded CI machine is slow)
    model = ModelDeployment("m", base, parity, settings={"decode_grace": 1000.0})
    deployment = Deployment((model,), grpc_port=0)
    spec = NetworkSpec(rate_mbit=100)
    cluster = LocalCluster(deployment, tmp_path / "logs", network=spec)
    x = np.random.default_rng(9).random((6, IN_FEATURES)).astype(np.float32)

    async def scenario() -> tuple[list[str], list[str], list[str], int]:
        async with cluster:
            assert cluster.network is not None
            index = cluster.network.index
            assert index is not None
            port = cluster.frontend.grpc_port
            data0 = cluster.instances["m", "data-0"]
            assert data0.host == cluster.network.host("m/data-0").address != "127.0.0.1"
            healthy = await asyncio.gather(ask(port, x[0]), ask(port, x[1]))
            core = cluster.frontend.services["m"].core
            cluster.network.cut("m/data-0")
            # two queries at once: one lands on each data instance, data-0's is stuck
            cut = await asyncio.gather(ask(port, x[2]), ask(port, x[3]))
            assert core.inflight("data-0") == 1
            cluster.network.heal("m/data-0")
            await until(lambda: core.inflight("data-0") == 0)  # its late original came
            after = await asyncio.gather(ask(port, x[4]), ask(port, x[5]))
        return list(healthy), list(cut), list(after), index

    healthy, cut, after, index = asyncio.run(scenario())
    assert healthy == ["original", "original"]
    assert sorted(cut) == ["original", "reconstructed"]
    assert after == ["original", "original"]
    assert not [n for n in namespaces() if n.startswith(f"parm{index}")]  # torn down
