"""The asyncio driver of one model, event by event: virtual time, in-memory instances.

A `ModelService` is built on real (small) bundles with a ``SimClock`` and fake links
(``tests.frontend.model_harness``): linear instances whose answers the test computes,
so reconstructions are checked to the number.  Nothing here opens a socket or waits on
real time.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from frontend.events import Source
from frontend.grace import WARMUP_S
from frontend.model import ZERO_FETCH_BACKOFF_S, QueryError
from frontend.outgoing import Outgoing
from proto import inference_pb2 as pb
from tests.frontend.model_harness import (
    Bundles,
    Harness,
    base_model,
    coded,
    drive,
    input_of,
    only,
    parity_model,
    plain,
    response,
    rows,
    running,
    settle,
)
from tests.frontend.rest_support import until
from tests.model_container.container_process import (
    CLASSES,
    IN_FEATURES,
    make_bundle,
    make_parity_bundle,
)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    root = tmp_path_factory.mktemp("model-bundles")
    base = make_bundle(root / "base")
    return Bundles(base, make_parity_bundle(root / "parity", base))


# ------------------------------------------------------------------ originals


def test_an_original_is_answered_with_the_instances_output(bundles: Bundles) -> None:
    x = rows(1, 1)

    async def scenario(h: Harness) -> None:
        await h.up()
        client = await h.ask(x)
        await settle()
        data = h.links["data-0"]
        (request,) = data.sent.values()
        assert request.model_name == "mlp" and list(request.inputs[0].shape) == [1, IN_FEATURES]
        np.testing.assert_array_equal(input_of(request), x)
        await h.advance_to(0.004)
        data.answer(only(data))
        (result,) = await client
        assert result.source is Source.ORIGINAL
        np.testing.assert_allclose(result.output, base_model(x)[0], rtol=1e-6)
        assert h.value("parm_answers_total", source="original") == 1
        assert h.value("parm_request_latency_seconds_sum", source="original") == 0.004
        assert h.value("parm_queueing_seconds_count") == 1
        service = {"pool": "data", "instance_name": "data-0"}
        assert h.value("parm_instance_service_seconds_sum", **service) == 0.004
        assert h.value("parm_outstanding_queries") == 0
        assert h.value("parm_instance_up", instance_name="data-0") == 1

    drive(plain(bundles), scenario)


def test_rows_are_batched_and_the_answer_is_split_back(bundles: Bundles) -> None:
    x = rows(3, 2)

    async def scenario(h: Harness) -> None:
        await h.up()
        client = await h.ask(x)
        await settle()
        first, second = h.links["data-0"], h.links["data-1"]
        assert [list(r.inputs[0].shape) for r in first.sent.values()] == [[2, IN_FEATURES]]
        assert not second.sent  # the third row waits for the batch timeout
        await h.advance_to(0.002)
        assert [list(r.inputs[0].shape) for r in second.sent.values()] == [[1, IN_FEATURES]]
        first.answer(only(first))
        second.answer(only(second))
        results = await client
        np.testing.assert_allclose(np.stack([r.output for r in results]), base_model(x), rtol=1e-5)
        assert h.value("parm_queueing_seconds_sum") == pytest.approx(0.002)

    drive(plain(bundles, data=2, batch_size=2, dynamic_batching=False), scenario)


def test_dynamic_batches_are_split_back_and_their_parity_has_the_largest_ones_rows(
    bundles: Bundles,
) -> None:
    """Rows that arrive together, or while both data instances are busy, go together to
    the first one free; the group's parity has as many rows as its larger task, not
    ``batch_size``."""
    x = rows(5, 3)

    async def scenario(h: Harness) -> None:
        await h.up()
        first, second, parity = h.links["data-0"], h.links["data-1"], h.links["parity-0"]
        clients = [await h.ask(x[:2])]
        await h.advance_to(0.0)  # the batch timer, due at once
        clients.append(await h.ask(x[2:3]))
        await h.advance_to(0.0)
        (a,), (b,) = first.sent, second.sent
        assert list(first.sent[a].inputs[0].shape) == [2, IN_FEATURES]  # arrived together
        assert list(second.sent[b].inputs[0].shape) == [1, IN_FEATURES]
        (request,) = parity.sent.values()  # the group's: as many rows as its larger task
        np.testing.assert_allclose(input_of(request), [x[0] + x[2], x[1]], rtol=1e-6)
        clients += [await h.ask(x[3:4]), await h.ask(x[4:5])]
        await h.advance_to(0.0)
        assert len(first.sent) == len(second.sent) == 1  # both busy: the two rows wait
        first.answer(a)
        await settle()
        c = list(first.sent)[-1]
        assert list(first.sent[c].inputs[0].shape) == [2, IN_FEATURES]
        second.answer(b)
        first.answer(c)
        results = [r for client in clients for r in await client]
        outputs = np.stack([r.output for r in results])
        np.testing.assert_allclose(outputs, base_model(x), rtol=1e-5, atol=1e-5)

    drive(coded(bundles, batch_size=4), scenario)


# ------------------------------------------------------------------ coding


def test_a_straggler_is_reconstructed_from_the_parity(bundles: Bundles) -> None:
    x = rows(2, 3)

    async def scenario(h: Harness) -> None:
        await h.up()
        client = await h.ask(x)
        await settle()
        slow, fast, parity = h.links["data-0"], h.links["data-1"], h.links["parity-0"]
        np.testing.assert_allclose(input_of(parity.sent[only(parity)]), x[:1] + x[1:], rtol=1e-6)
        fast.answer(only(fast))
        parity.answer(only(parity), parity_model)
        await settle()
        assert not client.done()  # decodable, but held: the original is not late yet
        await h.advance_to(WARMUP_S)  # auto grace, no samples yet: late 10 ms after send
        straggler, original = await client
        assert (straggler.source, original.source) == (Source.RECONSTRUCTED, Source.ORIGINAL)
        np.testing.assert_allclose(straggler.output, base_model(x)[0], rtol=1e-4, atol=1e-4)
        slow.answer(only(slow))  # late: checked against the reconstruction, never answered
        await settle()
        assert h.value("parm_reconstruction_checks_total", result="agree") == 1
        assert h.value("parm_reconstruction_relative_error_count") == 1
        assert h.value("parm_decode_grace_wait_seconds_count", outcome="reconstructed") == 1
        assert h.value("parm_groups_closed_total", kind="full") == 1
        assert h.value("parm_encode_seconds_count") == 1
        assert h.value("parm_decode_seconds_count") == 1
        assert h.value("parm_answers_total", source="reconstructed") == 1

    drive(coded(bundles), scenario)


def test_a_partial_group_is_padded_with_f0_and_still_reconstructs(bundles: Bundles) -> None:
    x = rows(1, 4)

    async def scenario(h: Harness) -> None:
        await h.up()
        client = await h.ask(x)
        await h.advance_to(0.009)
        parity = h.links["parity-0"]
        assert not parity.sent  # the group waits for a second query
        await h.advance_to(0.010)  # its fill timeout
        np.testing.assert_array_equal(input_of(parity.sent[only(parity)]), x)  # x + 0
        parity.answer(only(parity), parity_model)
        (result,) = await client
        assert result.source is Source.RECONSTRUCTED
        np.testing.assert_allclose(result.output, base_model(x)[0], rtol=1e-4, atol=1e-4)
        assert h.value("parm_groups_closed_total", kind="partial_padded") == 1
        assert h.value("parm_group_fill_seconds_sum") == pytest.approx(0.010)

    drive(coded(bundles), scenario)


# ------------------------------------------------------------------ deadlines


@pytest.mark.parametrize("default", [None, (7.0,) * CLASSES], ids=["error", "default"])
def test_the_deadline_answers_exactly_on_time(
    bundles: Bundles, default: tuple[float, ...] | None
) -> None:
    async def scenario(h: Harness) -> None:
        await h.up()
        client = await h.ask(rows(1, 5), timeout_s=0.5)
        await h.advance_to(0.5 - 1e-9)
        assert not client.done()
        await h.advance_to(0.5)
        assert client.done()
        if default is None:
            with pytest.raises(QueryError) as caught:
                await client
            assert caught.value.status == "DEADLINE_EXCEEDED"
            assert h.value("parm_deadline_misses_total", outcome="error") == 1
            assert h.value("parm_query_errors_total", code="DEADLINE_EXCEEDED") == 1
        else:
            (result,) = await client
            assert result.source is Source.DEFAULT
            np.testing.assert_array_equal(result.output, default)
            assert h.value("parm_deadline_misses_total", outcome="default") == 1

    drive(plain(bundles, default_output=default), scenario)


def test_rows_failed_together_raise_the_first_error(bundles: Bundles) -> None:
    async def scenario(h: Harness) -> None:
        await h.up()
        client = await h.ask(rows(2, 6), timeout_s=0.1)
        await h.advance_to(0.1)
        with pytest.raises(QueryError, match="deadline"):
            await client
        assert h.value("parm_query_errors_total", code="DEADLINE_EXCEEDED") == 2
        assert h.value("parm_abandoned_queries_total") == 0  # each got its answer

    drive(plain(bundles), scenario)


def test_a_request_over_the_admission_limit_is_refused_before_any_row_runs(
    bundles: Bundles,
) -> None:
    # Issue 10, finding 3: rows were admitted one by one, so the first ran and the
    # second was refused; now the request is refused whole and nothing is sent.
    async def scenario(h: Harness) -> None:
        await h.up()
        client = await h.ask(rows(2, 7))
        with pytest.raises(QueryError) as caught:
            await client
        assert caught.value.status == "RESOURCE_EXHAUSTED"
        assert "admission limit of 1" in caught.value.message
        assert h.links["data-0"].sent == {}
        assert h.value("parm_refusals_total", reason="admission") == 2
        assert h.value("parm_admission_refusals_total", cause="limit") == 2
        assert h.value("parm_outstanding_queries") == 0

    drive(plain(bundles, max_outstanding=1), scenario)


# ------------------------------------------------------------------ instances failing


def test_a_link_going_down_requeues_its_work_elsewhere(bundles: Bundles) -> None:
    x = rows(1, 8)

    async def scenario(h: Harness) -> None:
        await h.up()
        client = await h.ask(x)
        await settle()
        first, second = h.links["data-0"], h.links["data-1"]
        lost = only(first)
        assert not second.sent
        first.go_down()
        await settle()
        second.answer(only(second))
        (result,) = await client
        np.testing.assert_allclose(result.output, base_model(x)[0], rtol=1e-6)
        first.answer(lost)  # a straggling answer from before the reset: ignored
        await settle()
        down = {"instance_name": "data-0", "kind": "down"}
        assert h.value("parm_instance_failures_total", **down) == 1
        assert h.value("parm_queueing_seconds_count") == 1  # a retry's wait is not queueing
        assert h.value("parm_instance_up", instance_name="data-0") == 0

    drive(plain(bundles, data=2), scenario)


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (pb.ModelStreamInferResponse(error_message="boom"), "failed call: boom"),
        (pb.ModelStreamInferResponse(), "malformed answer: "),
    ],
    ids=["error", "no-output"],
)
def test_a_failed_call_takes_the_link_down_and_is_retried(
    bundles: Bundles, message: pb.ModelStreamInferResponse, why: str
) -> None:
    x = rows(1, 9)

    async def scenario(h: Harness) -> None:
        await h.up()
        client = await h.ask(x)
        await settle()
        first, second = h.links["data-0"], h.links["data-1"]
        first.deliver(only(first), message)
        assert first.failures and first.failures[0].startswith(why)
        await settle()
        second.answer(only(second))
        (result,) = await client
        assert result.source is Source.ORIGINAL
        call = {"instance_name": "data-0", "kind": "call"}
        assert h.value("parm_instance_failures_total", **call) == 1

    drive(plain(bundles, data=2), scenario)


# ------------------------------------------------------------------ F(0) and readiness


def test_f0_is_asked_again_with_backoff_until_an_instance_answers(bundles: Bundles) -> None:
    async def scenario(h: Harness) -> None:
        data = h.links["data-0"]
        waiting = asyncio.ensure_future(h.service.wait_ready())
        data.go_up()
        await settle()
        assert len(data.calls) == 1 and not h.service.ready
        data.calls[0].set_exception(ConnectionError("refused"))
        await settle()
        first = ZERO_FETCH_BACKOFF_S[0]
        await h.advance_to(first / 2 - 1e-9)  # jitter draws from [first/2, first]
        assert len(data.calls) == 1
        await h.advance_to(first)
        assert len(data.calls) == 2
        data.calls[1].set_result(pb.ModelInferResponse())  # no output: also retried
        await settle()
        await h.advance_to(first + 2 * first)
        assert len(data.calls) == 3 and not waiting.done()
        data.answer_zero()
        await settle()
        assert waiting.done() and h.service.ready
        assert h.value("parm_model_ready") == 1

    drive(coded(bundles), scenario)


def test_the_first_f0_answer_wins(bundles: Bundles) -> None:
    async def scenario(h: Harness) -> None:
        a, b = h.links["data-0"], h.links["data-1"]
        a.go_up()
        b.go_up()
        h.links["parity-0"].go_up()
        await settle()
        assert (len(a.calls), len(b.calls), h.links["parity-0"].calls) == (1, 1, [])
        a.answer_zero()
        b.calls[0].set_result(response(-1, np.full((1, CLASSES), 99.0, np.float32)))
        await settle()
        x = rows(1, 10)
        client = await h.ask(x)
        await h.advance_to(0.010)  # a padded group: F(0) fills the empty slot
        parity = h.links["parity-0"]
        parity.answer(only(parity), parity_model)
        (result,) = await client
        np.testing.assert_allclose(result.output, base_model(x)[0], rtol=1e-4, atol=1e-4)

    drive(coded(bundles), scenario)


def test_an_f0_fetch_stops_when_its_instance_goes_down(bundles: Bundles) -> None:
    async def scenario(h: Harness) -> None:
        data = h.links["data-0"]
        data.go_up()
        await settle()
        data.go_up()  # up again while its fetch is still out: no second fetch
        await settle()
        assert len(data.calls) == 1
        data.calls[0].set_exception(ConnectionError("refused"))
        await settle()
        data.go_down()
        await h.advance_to(ZERO_FETCH_BACKOFF_S[1])
        assert len(data.calls) == 1  # not asked again while down
        data.go_up()
        await settle()
        assert len(data.calls) == 2  # asked again once it is back

    drive(coded(bundles), scenario)


def test_a_model_with_no_instance_up_refuses_queries(bundles: Bundles) -> None:
    async def scenario(h: Harness) -> None:
        with pytest.raises(QueryError) as caught:
            await h.service.infer([rows(1, 11).tobytes()], 1.0)
        assert caught.value.status == "UNAVAILABLE"
        assert h.value("parm_refusals_total", reason="not_ready") == 1
        assert h.value("parm_model_ready") == 0
        waiting = asyncio.ensure_future(h.service.wait_ready())
        await settle()
        assert not waiting.done()
        h.links["data-0"].go_up()
        await settle()
        assert waiting.done()

    drive(plain(bundles), scenario)


def test_waiting_for_every_instance_outlasts_readiness(bundles: Bundles) -> None:
    async def scenario(h: Harness) -> None:
        ready = asyncio.ensure_future(h.service.wait_ready())
        every = asyncio.ensure_future(h.service.wait_ready(every_instance=True))
        h.links["data-0"].go_up()
        await settle()
        h.links["data-0"].answer_zero()
        await settle()
        assert ready.done() and not every.done() and not h.service.all_up
        h.links["data-1"].go_up()
        await settle()
        assert not every.done()  # the parity instance is not up yet
        h.links["parity-0"].go_up()
        await settle()
        assert every.done() and h.service.all_up

    drive(coded(bundles), scenario)


# ------------------------------------------------------------------ clients leaving


def test_a_client_leaving_abandons_its_queries(bundles: Bundles) -> None:
    async def scenario(h: Harness) -> None:
        await h.up()
        first = await h.ask(rows(1, 12))
        second = await h.ask(rows(2, 13))  # queued behind the first: one instance, one in flight
        await settle()
        assert h.value("parm_queue_depth", pool="data") == 2
        second.cancel()
        with pytest.raises(asyncio.CancelledError):
            await second
        assert h.value("parm_abandoned_queries_total") == 2
        assert h.value("parm_cancellations_total", pool="data") == 2
        assert h.value("parm_queue_depth", pool="data") == 0
        data = h.links["data-0"]
        data.answer(only(data))
        (result,) = await first
        assert result.source is Source.ORIGINAL

    # a window of 3: every row goes to the coordinator at once (none waits in admission)
    drive(plain(bundles, admission_window=3), scenario)


@pytest.mark.parametrize("outcome", ["answer", "deadline"])
def test_an_outcome_racing_a_client_leaving_is_dropped(bundles: Bundles, outcome: str) -> None:
    async def scenario(h: Harness) -> None:
        await h.up()
        client = await h.ask(rows(1, 14), timeout_s=0.1)
        client.cancel()  # the client's future is cancelled at once ...
        data = h.links["data-0"]
        if outcome == "answer":  # ... before its answer or its deadline comes in
            data.answer(only(data))
        else:
            h.clock.advance_to(0.1)
        with pytest.raises(asyncio.CancelledError):
            await client
        assert h.value("parm_request_latency_seconds_count", source="original") == 0
        assert h.value("parm_outstanding_queries") == 0

    drive(plain(bundles), scenario)


def test_stopping_the_service_drops_its_timer(bundles: Bundles) -> None:
    async def main() -> None:
        h = Harness(plain(bundles))
        async with running(h):
            await h.up()
            client = await h.ask(rows(1, 15))
            await settle()
            assert h.clock.next_timer() is not None  # the query's deadline
        assert h.clock.next_timer() is None
        client.cancel()
        with pytest.raises(asyncio.CancelledError):
            await client

    asyncio.run(main())


def test_a_later_wake_up_keeps_the_loop_timer_armed_and_moves_on_when_it_fires(
    bundles: Bundles,
) -> None:
    """The coordinator's next wake-up moves later as groups fill: the loop's timer is
    not re-armed each time, but, when it fires early, set for the time asked last."""
    x = rows(2, 6)

    async def scenario(h: Harness) -> None:
        await h.up()
        await h.ask(x[0:1], timeout_s=1.0)  # a group opens: its fill timeout, at 10 ms
        assert h.clock.next_timer() == pytest.approx(0.010)
        await h.ask(x[1:2], timeout_s=1.0)  # it fills: next is the first deadline
        assert h.clock.next_timer() == pytest.approx(0.010)  # kept, not re-armed
        await h.advance_to(0.010)
        assert h.clock.next_timer() == pytest.approx(1.0)

    drive(coded(bundles), scenario)


def test_a_batch_short_of_rows_is_encoded_with_zero_rows(bundles: Bundles) -> None:
    """fixed batches of 2: three queries make one full batch and one of a single row (sent at
    its batch timeout); the parity's second row is then the first batch's row alone."""
    x = rows(3, 8)

    async def scenario(h: Harness) -> None:
        await h.up()
        await h.ask(x, timeout_s=1.0)
        await h.advance_to(0.010)  # the batch timeout, then the group's fill timeout
        parity = h.links["parity-0"]
        sent = input_of(parity.sent[only(parity)])
        np.testing.assert_array_equal(sent, np.stack([x[0] + x[2], x[1]]))

    drive(coded(bundles, batch_size=2, dynamic_batching=False), scenario)


# ------------------------------------------------------------------ parity buffers


def test_a_large_group_is_encoded_in_a_worker_thread(
    bundles: Bundles, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``LARGE_GROUP_BYTES`` of inputs a group's parity is summed off the event loop
    (here the threshold is lowered to the tiny model's group); what is sent is the same."""
    import threading

    import frontend.model

    monkeypatch.setattr(frontend.model, "LARGE_GROUP_BYTES", 1)
    threads: list[str] = []
    from common.codes import encode_into

    def recorded(*args: object) -> None:
        threads.append(threading.current_thread().name)
        encode_into(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(frontend.model, "encode_into", recorded)
    x = rows(2, 31)

    async def scenario(h: Harness) -> None:
        await h.up()
        assert h.service._off_loop == {"encode"}
        client = await h.ask(x)
        parity = h.links["data-0"], h.links["data-1"], h.links["parity-0"]
        await until(lambda: bool(parity[2].sent))
        np.testing.assert_allclose(input_of(parity[2].sent[only(parity[2])]), x[:1] + x[1:])
        for link in parity[:2]:
            link.answer(only(link))
        await client
        parity[2].answer(only(parity[2]), parity_model)
        await settle()

    drive(coded(bundles), scenario)
    assert threads and threading.main_thread().name not in threads


def test_a_parity_buffer_is_not_reused_while_a_send_still_holds_it(bundles: Bundles) -> None:
    """A transport that could not write a parity at once keeps a view of its buffer
    until the socket drains; the next parity must not be encoded into that buffer."""
    x = rows(6, 7)

    async def scenario(h: Harness) -> None:
        await h.up()
        parity = h.links["parity-0"]
        queued: list[memoryview] = []  # what a transport's unsent writes would hold
        send = parity.send

        def holding(task_id: int, request: Outgoing) -> None:
            queued.append(memoryview(request.raw))
            send(task_id, request)

        parity.send = holding  # type: ignore[method-assign]
        await h.ask(x[0:2])  # one coding group: its parity is x0 + x1
        await h.ask(x[2:4])  # the next group, sent while the first is still queued
        assert len(queued) == 2
        sums = [np.frombuffer(view, np.float32).reshape(1, -1) for view in queued]
        np.testing.assert_array_equal(sums[0], x[0:1] + x[1:2])
        np.testing.assert_array_equal(sums[1], x[2:3] + x[3:4])
        pool = h.service._parity_buffers
        held = len(pool)
        sums.clear()
        queued.clear()  # both writes drained: their buffers are free again
        await h.ask(x[4:6])
        assert len(pool) == held  # reused, not allocated
        only_sent = list(parity.sent.values())[-1]
        np.testing.assert_array_equal(input_of(only_sent), x[4:5] + x[5:6])

    drive(coded(bundles, max_inflight=4), scenario)
