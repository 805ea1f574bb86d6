"""The calibration's recorder: it passes the coordinator's work through and files round trips."""

from __future__ import annotations

from bench.sim.calibrate import Recorded, Recorder, _ms, _profiles, _trace
from frontend.events import (
    Action,
    Answer,
    Event,
    QueryArrived,
    SendData,
    Source,
    TaskCompleted,
    Tick,
)


class ScriptedCore:
    """Answers each event with the actions scripted for its type."""

    def __init__(self, script: dict[type, list[Action]]) -> None:
        self.script = script
        self.seen: list[tuple[Event, float]] = []
        self.config = "the core's own attribute"

    def handle(self, event: Event, now: float) -> list[Action]:
        self.seen.append((event, now))
        return self.script.get(type(event), [])


SCRIPT: dict[type, list[Action]] = {
    QueryArrived: [SendData(1, "data-0", (None,)), SendData(2, "data-1", (None,))],
    TaskCompleted: [Answer(7, Source.ORIGINAL)],
}


def test_the_recorder_is_transparent_to_the_driver():
    core = ScriptedCore(SCRIPT)
    recorder = Recorder(core, busy=lambda name: None)
    assert recorder.handle(QueryArrived(7, None), 1.5) == SCRIPT[QueryArrived]
    assert recorder.handle(Tick(), 2.0) == []
    assert core.seen == [(QueryArrived(7, None), 1.5), (Tick(), 2.0)]
    assert recorder.config == "the core's own attribute"


def test_round_trips_are_filed_busy_or_idle_by_the_instance_at_send_time():
    in_transfer = (3, 1, 0.0)  # transfer 3, receiving, began at perf_counter 0
    recorder = Recorder(ScriptedCore(SCRIPT), busy=lambda n: in_transfer if n == "data-1" else None)
    recorder.handle(QueryArrived(7, None), 0.0)
    recorder.handle(TaskCompleted(2, "data-1", None), 0.0)
    recorder.handle(TaskCompleted(1, "data-0", None), 0.0)
    recorder.handle(TaskCompleted(1, "data-0", None), 0.0)  # a duplicate: nothing to time
    assert (len(recorder.busy_s), len(recorder.idle_s)) == (1, 1)
    assert [busy for _, _, busy in recorder.trace] == [True, False]
    assert len(recorder.held_s) == 1  # query 7 was answered once, the second answer unknown
    assert min(recorder.busy_s + recorder.idle_s + recorder.held_s) >= 0
    [(number, side, phase, rtt)] = recorder.phases  # the busy task, timed into its transfer
    assert (number, side, rtt) == (3, 1, recorder.busy_s[0]) and phase > 0


def test_profiles_name_transfers_by_their_duration_and_drop_unfinished_ones():
    recorder = Recorder(ScriptedCore(SCRIPT), busy=lambda name: None)
    recorder.phases = [(7, 0, 0.25, 0.0501), (4, 1, 0.5, 0.011), (9, 0, 0.1, 0.02)]
    run = Recorded(recorder, {}, durations=[1.5, 2.5], completed=[4, 7])  # 9 never finished
    assert _profiles(run) == ((0, 1, 0.5, 11.0), (1, 0, 0.25, 50.1))


def test_a_trace_is_sorted_by_send_time_and_starts_at_zero():
    records = [(12.5, 0.0101, True), (10.0, 0.0123456, False)]
    assert _trace(records) == ((0.0, 12.346, 0), (2.5, 10.1, 1))
    assert _trace([]) == ()
    assert _ms([0.0104567, 1.0]) == (10.457, 1000.0)
