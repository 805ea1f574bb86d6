"""The driver with a learned code: the frontend runs its encoder and decoder networks in a
worker thread, and the parity instances serve the base model.

Same harness as ``test_model`` (virtual time, in-memory instances).  The encoder and
decoder are random networks (`tests.common.learned_runs`): what the frontend sends and
answers is checked against the same `common.learned.LearnedCode` run offline.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.bundle import BundleMismatchError
from common.learned import LearnedCode
from frontend.config import InstanceAddress, ModelConfig
from frontend.events import Source
from frontend.grace import WARMUP_S
from frontend.model import ModelService
from tests.common.learned_runs import save_learned_run
from tests.frontend.model_harness import (
    Harness,
    base_model,
    drive,
    input_of,
    only,
    rows,
    settle,
)
from tests.frontend.rest_support import until
from tests.model_container.container_process import make_bundle


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, LearnedCode]:
    root = tmp_path_factory.mktemp("learned")
    base = make_bundle(root / "base")
    return base, root / "run", save_learned_run(root / "run", base, k=2, r=1)


def learned(base: Path, run: Path | None, k: int = 2, **settings: Any) -> ModelConfig:
    data = tuple(InstanceAddress(f"data-{i}", f"fake:{i}") for i in range(k))
    parity = (InstanceAddress("parity-0", "fake:9"),)
    return ModelConfig(
        "m", base, data, parity=parity, code="learned", code_bundle=run, k=k, **settings
    )


def test_the_encoder_and_decoder_run_off_the_loop_as_offline(
    bundles: tuple[Path, Path, LearnedCode],
) -> None:
    base, run, code = bundles
    x = rows(2, 21)  # (k, features): one query per slot

    async def scenario(h: Harness) -> None:
        await h.up()
        client = await h.ask(x)
        slow, fast, parity = h.links["data-0"], h.links["data-1"], h.links["parity-0"]
        assert parity.model_name == "mlp"  # the base model answers the parity query
        await until(lambda: bool(parity.sent))  # encoded in a worker thread
        request = parity.sent[only(parity)]
        assert request.model_name == "mlp"
        parity_in = code.encode(x[:, None])  # (B=1, features)
        np.testing.assert_allclose(input_of(request), parity_in, rtol=1e-5, atol=1e-6)
        fast.answer(only(fast))
        parity.answer(only(parity))
        await h.advance_to(WARMUP_S)
        straggler, original = await client  # decoded on the loop (a small network)
        assert (straggler.source, original.source) == (Source.RECONSTRUCTED, Source.ORIGINAL)
        outputs = base_model(x)[:, None]  # (k, 1, classes)
        (offline,) = code.decode_erasures([base_model(input_of(request))], outputs, [0])
        np.testing.assert_allclose(straggler.output, offline[0], rtol=1e-5, atol=1e-6)
        assert h.value("parm_encode_seconds_count") == 1
        assert h.value("parm_decode_seconds_count") == 1
        slow.answer(only(slow))
        await settle()

    drive(learned(base, run), scenario)


def test_a_code_trained_for_another_k_is_refused(
    bundles: tuple[Path, Path, LearnedCode],
) -> None:
    base, run, _ = bundles
    with pytest.raises(BundleMismatchError, match="trained for k=2, r=1, but k=3, r=1"):
        ModelService(learned(base, run, k=3), clock=None, links=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(("code", "bundle"), [("learned", False), ("sum", True)])
def test_a_code_bundle_goes_with_the_learned_code_only(
    bundles: tuple[Path, Path, LearnedCode], code: str, bundle: bool
) -> None:
    base, run, _ = bundles
    data = (InstanceAddress("data-0", "fake:0"),)
    with pytest.raises(ValueError, match="a code bundle goes with code 'learned'"):
        ModelConfig("m", base, data, code=code, code_bundle=run if bundle else None)


def test_a_parity_instance_lost_while_encoding_is_not_sent_to(
    bundles: tuple[Path, Path, LearnedCode],
) -> None:
    base, run, _ = bundles
    x = rows(2, 22)
    gate, encoded = threading.Event(), threading.Event()

    async def scenario(h: Harness) -> None:
        await h.up()
        code = h.service.code
        original = code.encode_all

        def held(inputs: np.ndarray) -> list[np.ndarray]:
            gate.wait(30)
            try:
                return original(inputs)
            finally:
                encoded.set()

        code.encode_all = held  # type: ignore[method-assign,assignment]
        client = await h.ask(x)
        slow, fast, parity = h.links["data-0"], h.links["data-1"], h.links["parity-0"]
        parity.go_down()
        gate.set()
        await until(encoded.is_set)
        await settle()
        assert not parity.sent  # the encoded query was dropped, not sent to a down link
        slow.answer(only(slow))
        fast.answer(only(fast))
        assert [r.source for r in await client] == [Source.ORIGINAL, Source.ORIGINAL]

    drive(learned(base, run), scenario)
