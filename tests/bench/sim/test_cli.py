"""``parm sim``'s runs: one row per simulated run, the comparison with a real run, outputs."""

from __future__ import annotations

import argparse
import json

import numpy as np

from bench.sim.cli import agreement, markdown, real_runs, result_row, run_sim
from bench.sim.engine import ORIGINAL, RECONSTRUCTED, SimResult
from bench.sim.scenarios import SCENARIOS
from bench.sim.service import Calibration
from tests.bench.sim.calibrations import CAL


def test_agreement_lines_compare_p99(tmp_path):
    real = tmp_path / "results.json"
    run = {"mode": "coded", "k": 2, "rate": 90.0, "p50_ms": 12.0, "p99_ms": 40.0, "p999_ms": 60.0}
    real.write_text(json.dumps({"runs": [run]}))
    line, verdict = agreement([{**run, "p99_ms": 44.0}], real_runs(real, CAL))
    assert "p99 simulated 44.00 ms vs real 40.00 ms (+10.0%)" in line
    assert verdict == "p99 within 15% of the real run at 1 of 1 points (largest difference 10.0%)"


def test_without_a_results_file_the_calibrations_runs_are_the_reference():
    figures = {"k": 2, "rate": 90.0, "p50_ms": 1.0, "p99_ms": 2.0, "p999_ms": 3.0}
    cal = Calibration(10.0, (10.0,), 1.0, real={"coded": figures})
    assert real_runs(None, cal) == [{"mode": "coded", **figures}]
    assert agreement([{"mode": "none", "k": 2, "rate": 90.0}], real_runs(None, cal)) == []


def test_a_result_row_counts_sources_and_failures_and_skips_unanswered_queries():
    result = SimResult(
        latency_s=np.array([0.010, np.nan, 0.030]),
        source=np.array([ORIGINAL, 2, RECONSTRUCTED], np.int8),
        failed=1,
    )
    row = result_row(result)
    assert row["count"] == 2 and row["mean_ms"] == 20.0
    assert row["sources"] == {"original": 1, "reconstructed": 1}
    assert row["errors"] == {"failed": 1}


def test_a_tiny_local_run_writes_the_benchmarks_outputs(tmp_path, capsys):
    args = argparse.Namespace(
        scenario="local", rates=(60.0,), groups=1, queries=300, contention="none",
        calibration=None, modes=("coded", "equal-resources"), ks=(2,), repeats=1, seed=0,
        replay=False, out=tmp_path / "out", compare=None, decode_grace=("auto", "0"),
    )  # fmt: skip
    assert run_sim(args, None, "parm sim --test") == 0
    runs = json.loads((tmp_path / "out" / "results.json").read_text())["runs"]
    assert sorted(r["mode"] for r in runs) == ["coded", "coded, grace=0", "equal-resources"]
    assert all(r["k"] == 2 and r["rate"] == 60.0 and r["p99_ms"] > 0 for r in runs)
    printed = capsys.readouterr().out
    assert "### Simulated: local" in printed and "`parm sim --test`" in printed


def test_the_section_says_how_busy_task_times_were_drawn():
    recorded = Calibration(10.0, (10.0,), 1.0, (20.0,), (1.0,), ((0, 0, 0.1, 50.0),))
    plain = Calibration(10.0, (10.0,), 1.0, (20.0,), (1.0,))
    sc = SCENARIOS["netns"]
    assert "replays a recorded one" in markdown(sc, recorded, "parm sim", [], [], False)
    assert "independent draws" in markdown(sc, plain, "parm sim", [], [], False)
    assert "by time" in markdown(sc, recorded, "parm sim", [], [], True)
