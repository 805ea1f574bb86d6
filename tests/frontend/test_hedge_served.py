"""Hedge mode served for real: ``parm up``'s launcher, real processes on loopback.

Three instances of the base model (hedge mode gives the parity instance to the data
pool, as equal-resources does); data-0 answers 2 s late.  Three queries sent together
land on the three idle instances, so one of them waits on data-0; each carries a 1 s
deadline, so it can only be answered in time by its backup copy, sent to another
instance after the 50 ms hedge delay.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from deploy.local import LocalCluster
from deploy.spec import Deployment, Injection, ModelDeployment
from frontend.events import Mode
from proto.tensors import get_parameters, make_infer_request
from tests.model_container.container_process import IN_FEATURES, inference_stub, make_bundle

DEADLINE_MS = 1000.0


async def ask(port: int, x: np.ndarray) -> str:
    """One query with a deadline; its source."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        request = make_infer_request(
            "m", {"input": x[None]}, parameters={"timeout_ms": DEADLINE_MS}
        )
        response = await inference_stub(channel).ModelInfer(request)
    source = get_parameters(response.parameters)["parm_source"]
    assert isinstance(source, str)
    return source


def hedges_total(metrics_text: str) -> float:
    (family,) = [f for f in text_string_to_metric_families(metrics_text) if f.name == "parm_hedges"]
    return sum(sample.value for sample in family.samples if sample.name == "parm_hedges_total")


def test_the_query_on_a_slow_instance_is_answered_by_its_backup(tmp_path: Path) -> None:
    base = make_bundle(tmp_path / "base", name="m")
    model = ModelDeployment(
        "m", base, mode=Mode.HEDGE, settings={"hedge_delay": 50.0},
        inject={"data-0": Injection(delay_ms=2000)},
    )  # fmt: skip
    cluster = LocalCluster(Deployment((model,), grpc_port=0), tmp_path / "logs")
    x = np.random.default_rng(3).random((3, IN_FEATURES)).astype(np.float32)

    async def scenario() -> tuple[list[str], float]:
        async with cluster:  # returns once every instance is up
            port = cluster.frontend.grpc_port
            sources = await asyncio.gather(*(ask(port, row) for row in x))
            text = cluster.frontend.metrics.render()
            return list(sources), hedges_total(text)

    sources, hedges = asyncio.run(scenario())
    assert sources == ["original"] * 3  # none missed its deadline: DEADLINE_EXCEEDED raises
    assert hedges >= 1
