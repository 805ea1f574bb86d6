"""A learned code served for real: ``parm up``'s launcher, real processes on loopback.

A deployment with ``code = "learned"`` and a code bundle (a learned code's training run):
the frontend runs the encoder and decoder networks, the parity instance runs the base
model, data-0 is slow, and the query it holds is answered by a reconstruction equal to
what ``parm eval`` decodes offline (``train.evaluate.decode_pattern``) for the same group
(in either slot order: two concurrent clients do not fix which query arrives first).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from common.bundle import read_manifest
from common.learned import load_learned_code
from common.models import load_model
from deploy.spec import Injection, ModelDeployment
from tests.common.learned_runs import save_learned_run
from tests.frontend.test_berrut_served import serve_two
from tests.model_container.container_process import IN_FEATURES, make_bundle
from train.evaluate import decode_pattern


def test_a_slow_instance_is_reconstructed_as_parm_eval_decodes_it(tmp_path: Path) -> None:
    base = make_bundle(tmp_path / "base", name="m")
    save_learned_run(tmp_path / "run", base, k=2, r=1, seed=3)
    model = ModelDeployment(
        "m", base,
        settings={"code": "learned", "code_bundle": tmp_path / "run", "decode_grace": 0,
                  "group_timeout_ms": 5000.0},
        inject={"data-0": Injection(delay_ms=2000)},
    )  # fmt: skip
    assert model.bundle_for("parity-0") == base and model.r == 1  # r: the code's own
    x = np.random.default_rng(7).random((2, IN_FEATURES)).astype(np.float32)
    replies, late = serve_two(model, x, tmp_path / "logs")
    # parm eval's offline decode of the same group.  Slots are taken in arrival order,
    # which the two concurrent clients do not fix: the late query held slot 0 or slot 1,
    # and its reconstruction is the offline decode of one of the two.
    _, net = load_model(base)
    code = load_learned_code(tmp_path / "run", read_manifest(base), 2, 1)
    decodes = []
    for slot in (0, 1):
        order = [x[late], x[1 - late]] if slot == 0 else [x[1 - late], x[late]]
        group = torch.from_numpy(np.stack(order)[:, None])  # (k, 1, features)
        with torch.no_grad():
            outputs = net(group[:, 0])[:, None]  # (k, 1, classes)
            parity_out = net(code.encode(group))  # the base model on the encoded query
        (offline,) = decode_pattern(code, outputs, [parity_out], ((slot,), ()))
        decodes.append(offline[0].numpy())
    assert not np.allclose(decodes[0], decodes[1], atol=1e-3)  # the slot matters
    assert any(np.allclose(replies[late][1], d, rtol=1e-4, atol=1e-4) for d in decodes)
