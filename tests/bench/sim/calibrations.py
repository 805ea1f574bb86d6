"""A small calibration for the simulator's tests: given numbers, nothing measured."""

from __future__ import annotations

from bench.sim.service import Calibration

CAL = Calibration(
    service_time_ms=10.0,
    rtt_ms=(10.2, 10.4, 10.9, 11.5),
    overhead_ms=1.5,
    shuffle_rtt_ms=(20.4, 21.0, 22.0, 23.0),
    shuffle_transfer_s=(0.5, 0.7),
)
