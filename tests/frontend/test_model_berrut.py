"""The driver with the training-free Berrut code: parity instances serve the base model.

Same harness as ``test_model`` (virtual time, in-memory linear instances).  The fake
base model is affine, so the reconstructions are the originals (the ``solve`` decoder
inverts the encoder); they are also checked against ``common.codes.BerrutCode``
decoding the same numbers offline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from common.bundle import BundleMismatchError
from common.codes import make_code
from frontend.config import InstanceAddress, ModelConfig
from frontend.events import Source
from frontend.grace import WARMUP_S
from tests.frontend.model_harness import (
    Harness,
    base_model,
    drive,
    input_of,
    only,
    rows,
    settle,
)
from tests.model_container.container_process import make_bundle


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("berrut") / "base")


def berrut(
    base: Path, k: int = 2, r: int = 1, code: str = "berrut", **settings: Any
) -> ModelConfig:
    data = tuple(InstanceAddress(f"data-{i}", f"fake:{i}") for i in range(k))
    parity = tuple(InstanceAddress(f"parity-{i}", "fake:9", parity_index=i) for i in range(r))
    return ModelConfig("m", base, data, parity=parity, code=code, k=k, r=r, **settings)


def test_the_parity_instance_serves_the_base_model_and_rebuilds_exactly(base: Path) -> None:
    x = rows(2, 11)

    async def scenario(h: Harness) -> None:
        await h.up()
        client = await h.ask(x)
        slow, fast, parity = h.links["data-0"], h.links["data-1"], h.links["parity-0"]
        assert parity.model_name == slow.model_name == "mlp"  # no parity model exists
        request = parity.sent[only(parity)]
        assert request.model_name == "mlp"
        np.testing.assert_allclose(input_of(request), x.mean(0, keepdims=True), rtol=1e-6)
        fast.answer(only(fast))
        parity.answer(only(parity))  # the base model answers the interpolated query
        await h.advance_to(WARMUP_S)
        straggler, original = await client
        assert (straggler.source, original.source) == (Source.RECONSTRUCTED, Source.ORIGINAL)
        np.testing.assert_allclose(straggler.output, base_model(x)[0], rtol=1e-4, atol=1e-4)
        slow.answer(only(slow))
        await settle()
        assert h.value("parm_reconstruction_checks_total", result="agree") == 1

    drive(berrut(base), scenario)


@pytest.mark.parametrize("name", ["berrut", "berrut-interpolate"])
def test_two_stragglers_decode_as_the_code_does_offline(base: Path, name: str) -> None:
    k, r = 3, 2
    code = make_code(name, k, r)
    x = rows(k, 12)

    async def scenario(h: Harness) -> None:
        await h.up()
        client = await h.ask(x)
        fast = h.links["data-2"]
        parities = [h.links[f"parity-{i}"] for i in range(r)]
        for i, link in enumerate(parities):
            expected = code.encode_all(x[:, None])[i]  # (1, features)
            np.testing.assert_allclose(input_of(link.sent[only(link)]), expected, rtol=1e-5)
        fast.answer(only(fast))
        for link in parities:
            link.answer(only(link))
        await h.advance_to(WARMUP_S)
        first, second, original = await client
        assert [a.source for a in (first, second)] == [Source.RECONSTRUCTED] * 2
        assert original.source is Source.ORIGINAL
        outputs = base_model(x)[:, None]  # (k, 1, classes)
        answers = [base_model(p) for p in code.encode_all(x[:, None])]
        offline = code.decode_erasures(answers, outputs, [0, 1])
        np.testing.assert_allclose(first.output, offline[0][0], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(second.output, offline[1][0], rtol=1e-4, atol=1e-4)
        # the fake base model is affine: inverting the encoder gives the originals back
        exact = np.allclose(first.output, outputs[0, 0], rtol=1e-3, atol=1e-3)
        assert exact is (name == "berrut")

    drive(berrut(base, k, r, name), scenario)


def test_a_partial_group_interpolates_with_zero_padding(base: Path) -> None:
    x = rows(1, 13)

    async def scenario(h: Harness) -> None:
        await h.up()
        client = await h.ask(x)
        await h.advance_to(0.010)  # the group's fill timeout: padded with a zero query
        parity = h.links["parity-0"]
        np.testing.assert_allclose(input_of(parity.sent[only(parity)]), x / 2, rtol=1e-6)
        parity.answer(only(parity))
        (result,) = await client
        assert result.source is Source.RECONSTRUCTED  # from F(x/2) and the known F(0)
        np.testing.assert_allclose(result.output, base_model(x)[0], rtol=1e-4, atol=1e-4)

    drive(berrut(base), scenario)


def test_a_parity_bundle_with_berrut_is_refused(base: Path) -> None:
    with pytest.raises(ValueError, match="berrut code takes no parity bundle"):
        berrut(base, parity_bundle=base)


def test_a_base_model_with_integer_inputs_is_refused(base: Path, tmp_path: Path) -> None:
    ints = shutil.copytree(base, tmp_path / "ints")
    manifest = json.loads((ints / "manifest.json").read_text())
    manifest["inputs"][0]["datatype"] = "UINT8"
    (ints / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleMismatchError, match="takes UINT8"):
        Harness(berrut(ints))
