"""The Berrut code served for real: ``parm up``'s launcher, real processes on loopback.

A deployment with ``code = "berrut"`` and no parity bundle: the parity instance runs the
base model, data-0 is slow, and the query it holds is answered by a reconstruction
equal to what ``parm eval`` decodes offline (``train.evaluate.decode_pattern``) for the
same group, with the same (non-linear) model.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import numpy as np
import torch

from common.codes import BerrutCode
from common.models import load_model
from deploy.local import LocalCluster
from deploy.spec import Deployment, Injection, ModelDeployment
from proto.tensors import get_parameters, make_infer_request, tensor_from_raw
from tests.model_container.container_process import IN_FEATURES, inference_stub, make_bundle
from train.evaluate import decode_pattern


async def ask(port: int, x: np.ndarray) -> tuple[str, np.ndarray]:
    """One query; (its source, its output row)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        request = make_infer_request("m", {"input": x[None]})
        response = await inference_stub(channel).ModelInfer(request)
    source = get_parameters(response.parameters)["parm_source"]
    out = response.outputs[0]
    row = tensor_from_raw(out.datatype, out.shape, response.raw_output_contents[0])[0]
    assert isinstance(source, str)
    return source, np.array(row)


def serve_two(
    model: ModelDeployment, x: np.ndarray, logs: Path
) -> tuple[list[tuple[str, np.ndarray]], int]:
    """Serve ``model`` (data-0 slow), ask ``x[0]`` and ``x[1]`` at once; the replies
    (source, output) and which of the two was reconstructed."""
    cluster = LocalCluster(Deployment((model,), grpc_port=0), logs)

    async def scenario() -> list[tuple[str, np.ndarray]]:
        async with cluster:  # returns once every instance is up: the group spans both
            port = cluster.frontend.grpc_port
            return list(await asyncio.gather(ask(port, x[0]), ask(port, x[1])))

    replies = asyncio.run(scenario())
    assert sorted(source for source, _ in replies) == ["original", "reconstructed"]
    (late,) = [j for j, (source, _) in enumerate(replies) if source == "reconstructed"]
    return replies, late


def test_a_slow_instance_is_reconstructed_as_parm_eval_decodes_it(tmp_path: Path) -> None:
    base = make_bundle(tmp_path / "base", name="m")
    model = ModelDeployment(
        "m", base, settings={"code": "berrut", "decode_grace": 0, "group_timeout_ms": 5000.0},
        inject={"data-0": Injection(delay_ms=2000)},
    )  # fmt: skip
    assert model.bundle_for("parity-0") == base  # no parity model exists
    x = np.random.default_rng(5).random((2, IN_FEATURES)).astype(np.float32)
    replies, late = serve_two(model, x, tmp_path / "logs")
    # parm eval's offline decode of the same group, the late query in slot 0 (k=2 is
    # symmetric: the parity is the mean, and slot order does not change the decode)
    _, net = load_model(base)
    group = torch.from_numpy(np.stack([x[late], x[1 - late]])[:, None])  # (k, 1, features)
    code = BerrutCode(2)
    with torch.no_grad():
        outputs = net(group[:, 0])[:, None]  # (k, 1, classes)
        parity_out = net(code.encode(group))  # the base model on the interpolated query
    (offline,) = decode_pattern(code, outputs, [parity_out], ((0,), ()))
    np.testing.assert_allclose(replies[late][1], offline[0].numpy(), rtol=1e-4, atol=1e-4)
    assert not np.allclose(offline[0].numpy(), outputs[0, 0].numpy(), atol=1e-3)  # approximate
