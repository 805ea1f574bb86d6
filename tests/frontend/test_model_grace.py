"""Decode grace and the live check, in the asyncio driver, on virtual time.

The coordinator decides when a reconstruction may answer (``tests/frontend/
test_core_grace.py``); here the driver carries it out: an original within grace answers,
a held reconstruction answers when the clock reaches its due time, and every late
original is compared with the reconstruction sent for it.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest

from frontend.events import Source
from frontend.model import Result
from frontend.quality import QualityWatch
from tests.frontend.model_harness import (
    Bundles,
    Harness,
    base_model,
    coded,
    drive,
    only,
    parity_model,
    rows,
    settle,
)
from tests.model_container.container_process import make_bundle, make_parity_bundle

GRACE_MS = 5.0


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    root = tmp_path_factory.mktemp("grace-bundles")
    return Bundles(base := make_bundle(root / "base"), make_parity_bundle(root / "parity", base))


async def decodable(h: Harness, x: np.ndarray) -> asyncio.Task[list[Result]]:
    """Every instance up; ``x`` asked; data-1 and the parity answered at t=0, so data-0's
    output can be decoded from now on.  The client's request, still waiting."""
    await h.up()
    client = await h.ask(x)
    fast, parity = h.links["data-1"], h.links["parity-0"]
    fast.answer(only(fast))
    parity.answer(only(parity), parity_model)
    return client


def test_an_original_within_grace_answers_and_the_reconstruction_is_dropped(
    bundles: Bundles,
) -> None:
    x = rows(2, 11)

    async def scenario(h: Harness) -> None:
        client = await decodable(h, x)
        await h.advance_to(0.004)  # 4 ms after the sends: data-0 is not late yet
        assert not client.done()
        slow = h.links["data-0"]
        slow.answer(only(slow))
        first, second = await client
        assert (first.source, second.source) == (Source.ORIGINAL, Source.ORIGINAL)
        np.testing.assert_allclose(first.output, base_model(x)[0], rtol=1e-5)
        assert h.value("parm_decode_grace_wait_seconds_count", outcome="original") == 1
        assert h.value("parm_answers_total", source="reconstructed") == 0
        assert h.value("parm_decode_seconds_count") == 0  # never decoded

    drive(coded(bundles, decode_grace=GRACE_MS), scenario)


def test_a_late_original_is_reconstructed_when_the_grace_runs_out(
    bundles: Bundles,
) -> None:
    x = rows(2, 12)

    async def scenario(h: Harness) -> None:
        client = await decodable(h, x)
        await h.advance_to(0.0049)
        assert not client.done()
        await h.advance_to(0.005)
        straggler, _ = await client
        assert straggler.source is Source.RECONSTRUCTED

    drive(coded(bundles, decode_grace=GRACE_MS), scenario)


def test_eager_grace_answers_the_reconstruction_without_waiting(
    bundles: Bundles,
) -> None:
    x = rows(2, 13)

    async def scenario(h: Harness) -> None:
        client = await decodable(h, x)
        straggler, _ = await client  # no time passes
        assert straggler.source is Source.RECONSTRUCTED
        assert h.value("parm_decode_grace_wait_seconds_count", outcome="reconstructed") == 0

    drive(coded(bundles, decode_grace=0), scenario)


def test_a_disagreeing_reconstruction_is_counted_and_warned_about(
    bundles: Bundles,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A parity model that is wrong for this base model: the live check catches it."""
    x = rows(2, 14)

    async def scenario(h: Harness) -> None:
        h.service.quality = QualityWatch(level=0.9, min_checks=1)
        await h.up()
        client = await h.ask(x)
        slow, fast, parity = h.links["data-0"], h.links["data-1"], h.links["parity-0"]
        fast.answer(only(fast))
        parity.answer(only(parity), lambda p: -10.0 * parity_model(p) - 1.0)  # wrong
        straggler, _ = await client
        assert straggler.source is Source.RECONSTRUCTED
        with caplog.at_level(logging.WARNING, logger="frontend.model"):
            slow.answer(only(slow))
            await settle()
        assert h.value("parm_reconstruction_checks_total", result="disagree") == 1
        assert h.value("parm_reconstruction_relative_error_sum") > 1.0
        assert "reconstructions agree with their late originals" in caplog.text

    drive(coded(bundles, decode_grace=0), scenario)
