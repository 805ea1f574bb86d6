"""``parm bench`` and ``parm sim`` options: parsed into what each benchmark is given."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import pytest

import bench.latency
import bench.micro
import bench.overload
import bench.sim.calibrate
import bench.sim.cli
from cli.bench import add_bench, add_sim
from frontend.events import Mode

HOME = Path("/parm-home")


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="parm")
    sub = parser.add_subparsers(required=True)
    add_bench(sub.add_parser("bench").add_subparsers(required=True), lambda: HOME)
    add_sim(sub)
    return parser.parse_args(argv)


def run(monkeypatch: pytest.MonkeyPatch, module: Any, name: str, *argv: str) -> list[Any]:
    """Run the command with ``module.name`` replaced by a recorder; its arguments."""
    seen: list[Any] = []

    def record(*args: Any) -> int:
        seen.extend(args)
        return 0

    async def record_async(*args: Any) -> int:
        return record(*args)

    is_async = name in ("run_latency", "run_calibrate", "run_overload")
    monkeypatch.setattr(module, name, record_async if is_async else record)
    monkeypatch.setattr("sys.argv", ["parm", *argv])
    args = parse(*argv)
    assert args.run(args) == 0
    return seen


def test_latency_options_override_the_quick_plan(monkeypatch):
    monkeypatch.delenv("GRPC_ENABLE_FORK_SUPPORT", raising=False)
    argv = ("bench", "latency", "--quick", "--ks", "2,3", "--rates", "60,90.5",
            "--modes", "coded,none", "--contention", "pause", "--no-append")  # fmt: skip
    plan, out, results, home, command = run(monkeypatch, bench.latency, "run_latency", *argv)
    assert (plan.ks, plan.rates, plan.modes) == ((2, 3), (60.0, 90.5), (Mode.CODED, Mode.NONE))
    assert plan.contention.pause is not None
    assert plan.repeats == bench.latency.QUICK.repeats  # not given: the quick plan's
    assert (out, results, home) == (Path("bench/out/latency"), None, HOME)
    assert command == "parm " + " ".join(argv)
    assert os.environ["GRPC_ENABLE_FORK_SUPPORT"] == "false"  # before gRPC forks children


def test_codes_append_to_the_results_unless_told_not_to(monkeypatch):
    repeats, results, _ = run(monkeypatch, bench.micro, "run_micro", "bench", "codes")
    assert (repeats, results) == (2000, Path("bench/RESULTS.md"))
    argv = ("bench", "codes", "--repeats", "7", "--no-append")
    assert run(monkeypatch, bench.micro, "run_micro", *argv)[:2] == [7, None]


def test_calibrate_measures_into_the_shipped_calibration_by_default(monkeypatch):
    plan, out, home = run(monkeypatch, bench.sim.calibrate, "run_calibrate", "bench", "calibrate")
    assert (out, home) == (Path("bench/sim/calibration.json"), HOME)
    assert plan == bench.latency.QUICK  # 10 ms, coded, equal-resources and hedge
    assert plan.queries == 6000 and plan.network == "loopback"


def test_calibrate_on_netns_hosts_records_into_its_own_calibration(monkeypatch):
    argv = ("bench", "calibrate", "--network", "netns", "--rate", "220", "--queries", "5000")
    plan, out, _ = run(monkeypatch, bench.sim.calibrate, "run_calibrate", *argv)
    assert out == Path("bench/sim/calibration-netns.json")
    assert (plan.network, plan.rates_for(2), plan.queries) == ("netns", (220.0,), 5000)
    assert plan.modes == (Mode.CODED, Mode.EQUAL_RESOURCES, Mode.HEDGE)


def test_calibrate_pools_recordings_without_recording(tmp_path, capsys):
    from bench.sim.service import Calibration

    for name, rtt in (("a.json", 10.0), ("b.json", 12.0)):
        Calibration(10.0, (rtt,), 1.0, notes={"command": name}).save(tmp_path / name)
    out = tmp_path / "pooled.json"
    args = parse("bench", "calibrate", "--pool", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                 "--out", str(out))  # fmt: skip
    assert args.run(args) == 0
    pooled = Calibration.load(out)
    assert pooled.rtt_ms == (10.0, 12.0) and pooled.notes["command"] == "a.json + b.json"
    assert f"wrote {out}" in capsys.readouterr().out
    args = parse("bench", "calibrate", "--pool", str(out))
    with pytest.raises(SystemExit, match="--pool needs --out"):
        args.run(args)


def test_sim_takes_several_calibrations_to_pool(monkeypatch):
    argv = ("sim", "--calibration", "a.json", "--calibration", "b.json")
    args, _, _ = run(monkeypatch, bench.sim.cli, "run_sim", *argv)
    assert args.calibration == [Path("a.json"), Path("b.json")]


def test_sim_options_reach_the_simulator(monkeypatch):
    argv = ("sim", "--scenario", "local", "--ks", "2,4", "--rates", "100", "--replay")
    args, results, _ = run(monkeypatch, bench.sim.cli, "run_sim", *argv)
    assert (args.scenario, args.ks, args.rates, args.replay) == ("local", (2, 4), (100.0,), True)
    assert args.modes == ("coded", "equal-resources") and args.repeats == 3
    assert results == Path("bench/RESULTS.md")


def test_the_simulator_is_also_a_bench_command(monkeypatch):
    argv = ("bench", "sim", "--scenario", "netns", "--decode-grace", "auto,0")
    args, _, _ = run(monkeypatch, bench.sim.cli, "run_sim", *argv)
    assert (args.scenario, args.decode_grace) == ("netns", ("auto", "0"))


@pytest.mark.parametrize(
    "argv",
    [("bench", "latency", "--ks", "2,x"), ("sim", "--scenario", "moon"), ("bench", "nope")],
)
def test_bad_options_are_refused_by_argparse(argv, capsys):
    with pytest.raises(SystemExit):
        parse(*argv)
    assert "error" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "seconds", "deadline_s"),
    [((), bench.overload.QUICK.seconds, bench.overload.QUICK.deadline_s),
     (("--seconds", "2", "--deadline-ms", "100"), 2.0, 0.1)],
)  # fmt: skip
def test_overload_options(
    monkeypatch: pytest.MonkeyPatch, extra: tuple[str, ...], seconds: float, deadline_s: float
) -> None:
    argv = ("bench", "overload", "--quick", *extra)
    plan, results, home, command = run(monkeypatch, bench.overload, "run_overload", *argv)
    assert (plan.seconds, plan.deadline_s) == (seconds, deadline_s)
    assert plan.fair_queries == bench.overload.QUICK.fair_queries
    assert (results, home) == (Path("bench/RESULTS.md"), HOME)
    assert command == "parm " + " ".join(argv)
