"""r = 2 parities end to end: two stragglers in one group are both reconstructed.

The base model is linear (no bias, identity preprocessing), so a parity model that is
the base model itself computes exactly what the linear code asks of parity i:
F(sum_j A[i][j] X_j) = sum_j A[i][j] F(X_j).  Reconstructions must then equal the
originals, which checks the coordinator's r > 1 decoding and the frontend's use of the
code module's solver with real instances.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from common.bundle import ParityInfo, TensorSpec, read_manifest
from common.models import build, load_model, save_bundle
from frontend.config import InstanceAddress, ModelConfig
from frontend.server import Frontend
from tests.frontend.cluster import (
    Containers,
    address,
    call,
    frontend_config,
    request,
    start_containers,
    with_frontend,
)

K, R = 2, 2
ARCH = {"in_features": 64, "num_classes": 10, "hidden": [], "bias": False}


def write(path: Path, name: str, role: str, parity: ParityInfo | None, weights_from: Any) -> Path:
    save_bundle(
        path, name=name, role=role, architecture="mlp", arch_args=ARCH, module=weights_from,
        input_spec=TensorSpec("input", "FP32", (64,)),
        output_spec=TensorSpec("logits", "FP32", (10,)),
        preprocessing={"mean": [0.0], "std": [1.0]}, parity=parity,
    )  # fmt: skip
    return path


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("linear")
    torch.manual_seed(0)
    net = build("mlp", **ARCH)
    base = write(root / "base", "lin", "base", None, net)
    sha = read_manifest(base).weights_sha256
    parities = [
        write(
            root / f"parity-{i}",
            f"lin-parity-{i}",
            "parity",
            ParityInfo(K, "linear", sha, "lin", R, i),
            net,
        )
        for i in range(R)
    ]
    return base, parities


@pytest.fixture(scope="module")
def containers(bundles: tuple[Path, list[Path]], tmp_path_factory: pytest.TempPathFactory) -> Any:
    base, parities = bundles
    slow = ["--delay-ms", "1000"]
    specs: dict[str, tuple[Path, Sequence[str]]] = {
        "data-0": (base, slow),
        "data-1": (base, slow),
        "parity-0": (parities[0], []),
        "parity-1": (parities[1], []),
    }
    running = start_containers(specs, tmp_path_factory.mktemp("logs"))
    yield running
    running.stop()


def test_two_slow_instances_in_one_group_are_both_reconstructed(
    bundles: tuple[Path, list[Path]], containers: Containers
) -> None:
    base, parities = bundles
    parity = tuple(address(f"parity-{i}", containers[f"parity-{i}"]) for i in range(R))
    model = ModelConfig(
        name="lin", base_bundle=base, parity_bundles=tuple(parities), code="linear", k=K, r=R,
        data=(address("data-0", containers["data-0"]), address("data-1", containers["data-1"])),
        parity=tuple(
            InstanceAddress(a.name, a.grpc, a.stream, parity_index=i) for i, a in enumerate(parity)
        ),
    )  # fmt: skip
    x = np.random.default_rng(1).random((K, 1, 64)).astype(np.float32)

    async def scenario(frontend: Frontend, stub: Any) -> list[Any]:
        return list(
            await asyncio.gather(*(call(stub, request("lin", x[j], "input")) for j in range(K)))
        )

    replies = with_frontend(frontend_config(model), scenario)
    _, net = load_model(base)
    with torch.no_grad():
        expected = net(torch.from_numpy(x[:, 0])).numpy()
    for j, reply in enumerate(replies):
        assert reply.source == "reconstructed", reply
        assert reply.latency < 0.5  # both data instances take 1 s
        np.testing.assert_allclose(reply.output[0], expected[j], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"parity_bundles": ()}, r"r=2 needs 2 parity bundle\(s\)"),
        ({"parity_index": 2}, r"parity_index of \['parity-0'\] not in \[0, 2\)"),
    ],
)
def test_r_parities_need_r_bundles_and_valid_indices(
    bundles: tuple[Path, list[Path]], change: dict[str, Any], message: str
) -> None:
    base, parities = bundles
    index = change.pop("parity_index", 0)
    settings: dict[str, Any] = {"parity_bundles": tuple(parities), **change}
    with pytest.raises(ValueError, match=message):
        ModelConfig(
            name="lin", base_bundle=base, code="linear", k=K, r=R,
            data=(InstanceAddress("data-0", "127.0.0.1:1"),),
            parity=(InstanceAddress("parity-0", "127.0.0.1:2", parity_index=index),),
            **settings,
        )  # fmt: skip
