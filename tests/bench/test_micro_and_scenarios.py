"""The code micro-benchmark and the simulator's scenarios and calibration."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.contention import DelaySpec
from bench.micro import measure, report
from bench.sim.cli import agreement, real_runs, result_row
from bench.sim.engine import Simulation
from bench.sim.scenarios import SCENARIOS, setup_for, with_delays
from bench.sim.service import Calibration, constant, summary
from frontend.events import Mode

CAL = Calibration(
    service_time_ms=10.0,
    rtt_ms=(10.2, 10.4, 10.9, 11.5),
    overhead_ms=1.5,
    shuffle_rtt_ms=(20.4, 21.0, 22.0, 23.0),
    shuffle_transfer_s=(0.5, 0.7),
)


@pytest.mark.parametrize("k", [2, 4])
def test_the_micro_benchmark_times_every_operation(k):
    row = measure(k, repeats=5, pool_bytes=8 << 20)
    for name in ("encode", "encode_serving", "copy_floor", "decode"):
        assert 0 < row[f"{name}_p50_us"] <= row[f"{name}_p99_us"]
    assert "| 2 |" in report({2: row}, "parm bench codes") or k != 2


def test_a_calibration_round_trips_through_json(tmp_path):
    path = tmp_path / "cal.json"
    CAL.save(path)
    assert Calibration.load(path) == CAL
    assert "during a shuffle transfer the round trip is p50 21.50 ms" in summary(CAL)
    assert CAL.busy_service(0)(100).min() == pytest.approx(0.0204)


@pytest.mark.parametrize("scenario", ["local", "papers", "scale"])
def test_every_mode_of_a_run_meets_the_same_contention(scenario):
    sc = SCENARIOS[scenario]
    coded = setup_for(sc, 2, Mode.CODED, sc.rates[0], 0, CAL, seed=1, queries=1000)
    er = setup_for(sc, 2, Mode.EQUAL_RESOURCES, sc.rates[0], 0, CAL, seed=1, queries=1000)
    assert coded.timelines == er.timelines and coded.busy == er.busy
    assert coded.data + coded.parity == 3 * sc.groups
    assert len(coded.busy) == 3 * sc.groups


def test_a_small_papers_run_protects_the_tail():
    sc = SCENARIOS["papers"]
    heavy = Calibration(10.0, CAL.rtt_ms, 1.5, (12.0, 15.0, 20.0, 40.0, 90.0, 150.0), (0.5, 1.0))
    rows = {}
    for mode in (Mode.CODED, Mode.EQUAL_RESOURCES):
        setup = setup_for(sc, 2, mode, 390.0, 0, heavy, seed=0, queries=20_000)
        rows[mode] = result_row(Simulation(setup).run())
    assert rows[Mode.CODED]["p999_ms"] < rows[Mode.EQUAL_RESOURCES]["p999_ms"]
    assert rows[Mode.CODED]["sources"]["reconstructed"] > 0


def test_injected_delays_lengthen_some_tasks():
    draws = with_delays(constant(0.01), parse_delay(), seed=0)(10_000)
    assert draws.min() == 0.01
    assert 0.05 < float(np.mean(draws > 0.01)) < 0.15


def parse_delay() -> DelaySpec:
    return DelaySpec(prob=0.1, mean_ms=20.0)


def test_agreement_lines_compare_p99(tmp_path):
    real = tmp_path / "results.json"
    run = {"mode": "coded", "k": 2, "rate": 90.0, "p50_ms": 12.0, "p99_ms": 40.0, "p999_ms": 60.0}
    real.write_text(json.dumps({"runs": [run]}))
    (line,) = agreement([{**run, "p99_ms": 44.0}], real_runs(real, CAL))
    assert "p99 simulated 44.00 ms vs real 40.00 ms (+10.0%)" in line
