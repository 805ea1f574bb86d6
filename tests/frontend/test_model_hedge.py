"""Hedge mode in the asyncio driver, on virtual time: the backup goes to the other
instance once the first copy runs past the delay, the first answer wins, and the
backup is counted (the extra load hedging costs)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from frontend.events import Mode, Source
from tests.frontend.model_harness import Bundles, Harness, base_model, drive, only, plain, rows
from tests.model_container.container_process import make_bundle

DELAY_MS = 5.0


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    root = tmp_path_factory.mktemp("hedge-bundles")
    base = make_bundle(root / "base")
    return Bundles(base, base)


def test_a_slow_first_copy_is_hedged_and_the_backup_answers(bundles: Bundles) -> None:
    config = dataclasses.replace(plain(bundles, data=2, hedge_delay=DELAY_MS), mode=Mode.HEDGE)
    x = rows(1, 21)

    async def scenario(h: Harness) -> None:
        await h.up()
        client = await h.ask(x)
        first, second = h.links["data-0"], h.links["data-1"]
        assert (len(first.sent), len(second.sent)) == (1, 0)
        await h.advance_to(DELAY_MS / 1000 / 2)
        assert not second.sent and h.value("parm_hedges_total") == 0
        await h.advance_to(DELAY_MS / 1000)
        assert h.value("parm_hedges_total") == 1
        second.answer(only(second))
        (result,) = await client
        assert result.source is Source.ORIGINAL
        np.testing.assert_allclose(result.output, base_model(x)[0], rtol=1e-5)
        first.answer(only(first))  # the loser's answer changes nothing

    drive(config, scenario)
