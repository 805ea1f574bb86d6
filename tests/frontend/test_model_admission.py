"""Admission in the model service (issue 10, findings 3, 4 and 9), on virtual time.

Whole requests are admitted or refused before any row runs; clients share the limit
and the coordinator's room round robin; a request the queue cannot serve before its
deadline is refused; rows whose deadline passes while they wait are never sent; a
deadline under the clock's resolution has passed.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from frontend.events import Source
from frontend.model import QueryError
from tests.frontend.model_harness import Bundles, Harness, drive, input_of, plain, rows, settle
from tests.model_container.container_process import CLASSES, make_bundle, make_parity_bundle


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    root = tmp_path_factory.mktemp("model-bundles")
    base = make_bundle(root / "base")
    return Bundles(base, make_parity_bundle(root / "parity", base))


async def refused(client: asyncio.Task[object]) -> QueryError:
    with pytest.raises(QueryError) as caught:
        await client
    return caught.value


def answer_next(h: Harness, sent: list[np.ndarray], at: float) -> None:
    """Move to ``at`` and answer the one request data-0 holds (recording its input)."""
    h.clock.advance_to(at)
    data = h.links["data-0"]
    task_id = max(data.sent)
    sent.append(input_of(data.sent[task_id])[0])
    data.answer(task_id)


# ------------------------------------------------------------------ finding 3: shares


def test_a_batch_over_its_clients_share_is_refused_whole(bundles: Bundles) -> None:
    async def scenario(h: Harness) -> None:
        await h.up()
        small = await h.ask(rows(1, 1), client="b")
        # two clients active: each may hold ceil(8 / 2) = 4, though 5 more would fit in 8
        big = await h.ask(rows(5, 2), client="a")
        error = await refused(big)
        assert error.status == "RESOURCE_EXHAUSTED"
        assert "client 'a' is at its share of the admission limit: 4 queries" in error.message
        assert h.value("parm_admission_refusals_total", cause="client_share") == 5
        fits = await h.ask(rows(4, 3), client="a")
        assert h.service.outstanding == 5
        for task in (small, fits):
            task.cancel()
        await settle()
        assert h.service.outstanding == 0

    drive(plain(bundles, max_outstanding=8), scenario)


def test_a_lone_client_may_use_the_whole_limit_and_a_fixed_cap_bounds_it(
    bundles: Bundles,
) -> None:
    async def scenario(h: Harness) -> None:
        await h.up()
        alone = await h.ask(rows(6, 1), client="a")  # no one else: the fair split is 8
        over_cap = await h.ask(rows(1, 2), client="a")
        assert "share of the admission limit: 6 queries" in (await refused(over_cap)).message
        alone.cancel()
        await settle()

    drive(plain(bundles, max_outstanding=8, max_outstanding_per_client=6), scenario)


def test_clients_take_turns_so_a_big_batch_does_not_delay_a_small_one(bundles: Bundles) -> None:
    # Before: a 6-row batch took the queue and the other client's row went out last.
    x_big, x_small = rows(6, 4), rows(1, 5)

    async def scenario(h: Harness) -> None:
        await h.up()
        big = await h.ask(x_big, client="a")
        small = await h.ask(x_small, client="b")
        assert h.service.admission.waiting == 5  # the window of 2: 1 sent, 1 queued
        sent: list[np.ndarray] = []
        for step in range(7):
            answer_next(h, sent, at=0.001 * (step + 1))
            await settle()
        order = [0 if any((s == r).all() for r in x_big) else 1 for s in sent]
        assert order == [0, 0, 0, 1, 0, 0, 0]  # behind one row of a's, not all of them
        (result,) = await small
        assert result.source is Source.ORIGINAL
        assert len(await big) == 6

    drive(plain(bundles), scenario)


# ------------------------------------------------------------------ finding 4: deadlines


async def measure_rate(h: Harness, sent: list[np.ndarray]) -> None:
    """A backlog answered at 100 rows/s for 0.3 s: the service rate is measured."""
    await h.ask(rows(50, 6), timeout_s=10.0, client="a")
    for step in range(30):
        answer_next(h, sent, at=0.01 * (step + 1))
        await settle()
    assert h.service.admission.rate.rate == pytest.approx(100.0)


def test_a_query_whose_deadline_the_queue_cannot_meet_is_refused(bundles: Bundles) -> None:
    async def scenario(h: Harness) -> None:
        await h.up()
        sent: list[np.ndarray] = []
        await measure_rate(h, sent)
        sends = len(h.links["data-0"].sent)
        # b's row goes out after the 2 the coordinator holds and 1 of a's: 40 ms
        hurried = await h.ask(rows(1, 7), timeout_s=0.03, client="b")
        error = await refused(hurried)
        assert error.status == "RESOURCE_EXHAUSTED"
        assert "the queue would take about 40.0 ms, past the query's deadline in 30.0 ms" in (
            error.message
        )
        patient = await h.ask(rows(1, 8), timeout_s=0.05, client="b")
        # the coordinator's 2, a's 18 waiting, 10 more of a's, and b's 1 in turn: 310 ms
        more = await h.ask(rows(10, 9), timeout_s=0.2, client="a")
        assert "about 310.0 ms" in (await refused(more)).message
        assert h.value("parm_admission_refusals_total", cause="deadline") == 11
        assert len(h.links["data-0"].sent) == sends  # refusals sent nothing
        patient.cancel()
        await settle()

    drive(plain(bundles), scenario)


def test_an_idle_gap_does_not_count_as_service_rate(bundles: Bundles) -> None:
    async def scenario(h: Harness) -> None:
        await h.up()
        for step in range(30):  # answers that never found a backlog
            client = await h.ask(rows(1, step), client="a")
            answer_next(h, [], at=0.01 * (step + 1))
            await client
        assert h.service.admission.rate.rate is None

    drive(plain(bundles), scenario)


@pytest.mark.parametrize("default", [None, (7.0,) * CLASSES], ids=["error", "default"])
def test_rows_whose_deadline_passes_in_the_queue_are_never_sent(
    bundles: Bundles, default: tuple[float, ...] | None
) -> None:
    async def scenario(h: Harness) -> None:
        await h.up()
        client = await h.ask(rows(4, 10), timeout_s=0.05)
        assert h.service.admission.waiting == 2
        await h.advance_to(0.05)
        if default is None:
            assert (await refused(client)).status == "DEADLINE_EXCEEDED"
            assert h.value("parm_query_errors_total", code="DEADLINE_EXCEEDED") == 4
        else:
            assert [r.source for r in await client] == [Source.DEFAULT] * 4
            assert h.value("parm_deadline_misses_total", outcome="default") == 4
        assert len(h.links["data-0"].sent) == 1  # the coordinator's queued one was cancelled
        assert h.value("parm_cancellations_total", pool="data") == 1
        assert h.service.admission.waiting == 0 and h.service.outstanding == 0

    drive(plain(bundles, default_output=default), scenario)


def test_a_client_leaving_takes_its_waiting_rows_out_of_the_queue(bundles: Bundles) -> None:
    async def scenario(h: Harness) -> None:
        await h.up()
        client = await h.ask(rows(4, 11))
        client.cancel()
        await settle()
        assert h.service.admission.waiting == 0 and h.service.outstanding == 0
        assert h.value("parm_abandoned_queries_total") == 4
        await h.advance_to(2.0)  # its deadline timer was cancelled: nothing fires
        assert len(h.links["data-0"].sent) == 1

    drive(plain(bundles), scenario)


# ------------------------------------------------------------------ finding 9


@pytest.mark.parametrize("timeout_s", [1e-6, 1e-4, 0.000999])
def test_a_deadline_under_the_clocks_resolution_has_passed(
    bundles: Bundles, timeout_s: float
) -> None:
    # Before: the query was sent, and answered OK when the instance beat the
    # millisecond timer.
    async def scenario(h: Harness) -> None:
        await h.up()
        error = await refused(await h.ask(rows(2, 12), timeout_s=timeout_s))
        assert error.status == "DEADLINE_EXCEEDED"
        assert "nearer than the frontend's clock resolution (1 ms)" in error.message
        assert h.links["data-0"].sent == {}
        assert h.value("parm_query_errors_total", code="DEADLINE_EXCEEDED") == 2
        assert h.value("parm_deadline_misses_total", outcome="error") == 2

    drive(plain(bundles), scenario)


def test_a_millisecond_deadline_is_admitted(bundles: Bundles) -> None:
    async def scenario(h: Harness) -> None:
        await h.up()
        client = await h.ask(rows(1, 13), timeout_s=0.001)
        assert len(h.links["data-0"].sent) == 1
        await h.advance_to(0.001)
        assert (await refused(client)).status == "DEADLINE_EXCEEDED"

    drive(plain(bundles), scenario)
