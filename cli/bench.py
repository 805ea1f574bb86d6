"""Command-line options of the benchmarks and the simulator, for ``cli.main``.

Only argparse here: the heavy modules are imported when a command runs, so ``parm``
starts fast whatever the command.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli.deploy import add_network

Home = Callable[[], Path]


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(","))


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(","))


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split(","))


def _no_grpc_fork_handlers() -> None:
    """Keep gRPC's fork handlers out of the launcher, before grpc is first imported.

    The launcher forks instance and client processes while its frontend's gRPC threads
    run; gRPC's fork handlers then run in the child between fork and exec, and were
    seen to abort it there (``ev_epoll1_linux.cc: Check failed: next_worker->state ==
    KICKED``).  The children exec at once and need none of gRPC's state.
    """
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")


def _command() -> str:
    return "parm " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "parm"


def add_latency(bench: Any, home: Home) -> None:
    """``parm bench latency``."""
    p = bench.add_parser("latency", help="tail latency of every mode, side by side")
    p.add_argument(
        "--quick",
        action="store_true",
        help="k=2, coded vs equal-resources and hedge, 1 rate (netns: every mode, 2 loads)",
    )
    p.add_argument("--out", type=Path, default=Path("bench/out/latency"), help="output folder")
    p.add_argument("--ks", type=_ints, help="e.g. 2,3,4")
    p.add_argument("--modes", type=_words, help="e.g. coded,equal-resources,replicate,none")
    p.add_argument("--rates", type=_floats, help="queries/s, e.g. 60,90,120")
    p.add_argument(
        "--loads",
        type=_floats,
        help="shares of each k's capacity (k*G data instances x 1000/service time), e.g. "
        "0.3,0.55,0.8; replaces --rates (default on netns)",
    )
    p.add_argument("--repeats", type=int)
    p.add_argument("--queries", type=int, help="measured queries per run")
    p.add_argument("--warmup", type=int)
    p.add_argument("--groups", type=int, help="instances: k*G data + G parity")
    p.add_argument("--service-time-ms", type=float, help="padded per-inference time")
    p.add_argument("--contention", help="none, or KIND[:k=v,...][+KIND...]; see bench.contention")
    p.add_argument("--seed", type=int)
    p.add_argument("--transport", choices=["grpc", "http"], help="client protocol (gRPC)")
    add_network(p)
    p.add_argument(
        "--decode-grace",
        type=_words,
        help="coded mode once per value, side by side: auto, milliseconds, 0 (eager); "
        "e.g. auto,0 (default: auto)",
    )
    p.add_argument("--results", type=Path, default=Path("bench/RESULTS.md"))
    p.add_argument("--no-append", action="store_true", help="do not append to --results")

    def run(args: argparse.Namespace) -> int:
        _no_grpc_fork_handlers()
        from bench.latency import plan_from_options, run_latency
        from common.runtime import run_loop

        keys = (
            "ks",
            "modes",
            "rates",
            "loads",
            "repeats",
            "queries",
            "warmup",
            "groups",
            "seed",
            "transport",
            "network",
            "link_mbit",
            "link_queue_ms",
        )
        overrides = {key: getattr(args, key) for key in keys}
        overrides.update(service_time_ms=args.service_time_ms, contention=args.contention)
        overrides.update(decode_graces=args.decode_grace)
        plan = plan_from_options(args.quick, **overrides)
        results = None if args.no_append else args.results
        return run_loop(run_latency(plan, args.out, results, home(), _command()))

    p.set_defaults(run=run)


def add_codes(bench: Any, home: Home) -> None:
    """``parm bench codes``: encode/decode micro-benchmarks (and the loop's lag)."""
    p = bench.add_parser("codes", help="encode/decode latency against the memory-copy floor")
    p.add_argument("--repeats", type=int, default=2000)
    p.add_argument("--results", type=Path, default=Path("bench/RESULTS.md"))
    p.add_argument("--no-append", action="store_true")
    p.add_argument(
        "--loop-lag",
        action="store_true",
        help="instead: the frontend's event-loop lag while serving 3x224x224 queries",
    )
    p.add_argument("--ks", type=_ints, default=(2, 4), help="--loop-lag: k values")
    p.add_argument("--queries", type=int, default=1000, help="--loop-lag: queries per k")
    p.add_argument("--concurrency", type=int, default=8, help="--loop-lag: closed loop")

    def run(args: argparse.Namespace) -> int:
        results = None if args.no_append else args.results
        if args.loop_lag:
            _no_grpc_fork_handlers()
            from bench.loop_lag import report, run_loop_lag
            from bench.report import publish
            from common.runtime import run_loop

            rows = run_loop(run_loop_lag(args.ks, args.queries, args.concurrency, home()))
            publish(report(rows, _command()), results)
            return 0
        from bench.micro import run_micro

        return run_micro(args.repeats, results, _command())

    p.set_defaults(run=run)


def add_calibrate(bench: Any, home: Home) -> None:
    """``parm bench calibrate``: measure real instances for the simulator."""
    p = bench.add_parser("calibrate", help="measure real instances to calibrate the simulator")
    p.add_argument("--service-time-ms", type=float, default=10.0)
    p.add_argument("--queries", type=int, default=6000, help="queries in the recorded run")
    p.add_argument("--rate", type=float, help="queries/s (default: the quick plan's first)")
    p.add_argument("--contention", help="as for parm bench latency (default: its quick plan's)")
    p.add_argument("--decode-grace", type=_words, help="coded mode once per value, e.g. auto,0")
    add_network(p)
    p.add_argument(
        "--out",
        type=Path,
        help="default: bench/sim/calibration.json (netns: bench/sim/calibration-netns.json)",
    )
    p.add_argument(
        "--pool",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="record nothing: pool these recordings of one setup into --out",
    )

    def run(args: argparse.Namespace) -> int:
        _no_grpc_fork_handlers()
        from bench.latency import plan_from_options
        from bench.sim.calibrate import run_calibrate
        from bench.sim.service import Calibration, summary
        from common.runtime import run_loop

        if args.pool:
            if args.out is None:
                raise SystemExit("--pool needs --out")
            cal = Calibration.pooled([Calibration.load(path) for path in args.pool])
            cal.save(args.out)
            print(f"{summary(cal)}\nwrote {args.out}")
            return 0

        plan = plan_from_options(
            True,
            modes=("coded", "equal-resources", "hedge"),
            rates=(args.rate,) if args.rate else None,
            service_time_ms=args.service_time_ms,
            queries=args.queries,
            contention=args.contention,
            decode_graces=args.decode_grace,
            network=args.network,
            link_mbit=args.link_mbit,
            link_queue_ms=args.link_queue_ms,
        )
        name = "calibration-netns.json" if plan.network == "netns" else "calibration.json"
        out = args.out or Path("bench/sim") / name
        return run_loop(run_calibrate(plan, out, home()))

    p.set_defaults(run=run)


def add_overload(bench: Any, home: Home) -> None:
    """``parm bench overload``: goodput at 1x-3x capacity, and fairness to a small client."""
    p = bench.add_parser("overload", help="goodput under overload (gRPC, HTTP) and fairness")
    p.add_argument("--quick", action="store_true", help="short runs: about 2 minutes")
    p.add_argument("--seconds", type=float, help="length of each open-loop run")
    p.add_argument("--deadline-ms", type=float, help="each open-loop query's deadline")
    p.add_argument(
        "--client-cpus",
        type=_ints,
        help="run the load clients on these CPUs only (e.g. 1) and the frontend and its "
        "instances on the others, as clients on other machines would",
    )
    p.add_argument("--results", type=Path, default=Path("bench/RESULTS.md"))
    p.add_argument("--no-append", action="store_true", help="do not append to --results")

    def run(args: argparse.Namespace) -> int:
        _no_grpc_fork_handlers()
        from dataclasses import replace

        from bench.overload import QUICK, OverloadPlan, run_overload
        from common.runtime import run_loop

        plan = QUICK if args.quick else OverloadPlan()
        if args.seconds is not None:
            plan = replace(plan, seconds=args.seconds)
        if args.deadline_ms is not None:
            plan = replace(plan, deadline_s=args.deadline_ms / 1000)
        if args.client_cpus:
            plan = replace(plan, client_cpus=tuple(args.client_cpus))
        results = None if args.no_append else args.results
        return run_loop(run_overload(plan, results, home(), _command()))

    p.set_defaults(run=run)


def add_bench(bench: Any, home: Home) -> None:
    """Every ``parm bench`` command defined here."""
    add_latency(bench, home)
    add_overload(bench, home)
    add_calibrate(bench, home)
    add_codes(bench, home)
    add_sim(bench)  # also ``parm bench sim``: the same command


def add_sim(sub: Any) -> None:
    """``parm sim``: the discrete-event simulator over the frontend's own coordinator."""
    p = sub.add_parser("sim", help="simulate a cluster beyond one machine (same coordinator)")
    p.add_argument("--scenario", default="papers", choices=["local", "papers", "scale", "netns"])
    p.add_argument("--ks", type=_ints, default=(2,))
    p.add_argument("--modes", type=_words, default=("coded", "equal-resources"))
    p.add_argument("--rates", type=_floats, help="queries/s")
    p.add_argument("--groups", type=int, help="instances: k*G data + G parity")
    p.add_argument("--queries", type=int, help="measured queries per run")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--contention", help="as for parm bench latency (default: the scenario's)")
    p.add_argument(
        "--decode-grace",
        type=_words,
        default=("auto",),
        help="coded mode once per value: auto, milliseconds, 0 (eager); e.g. auto,0",
    )
    p.add_argument(
        "--calibration",
        type=Path,
        action="append",
        help="from parm bench calibrate (default: the scenario's shipped one); "
        "repeated: the recordings pooled",
    )
    p.add_argument("--compare", type=Path, help="a real results.json: p99 side by side")
    p.add_argument(
        "--replay", action="store_true", help="replay the calibration's trace by time (local)"
    )
    p.add_argument("--out", type=Path, default=Path("bench/out/sim"))
    p.add_argument("--results", type=Path, default=Path("bench/RESULTS.md"))
    p.add_argument("--no-append", action="store_true")

    def run(args: argparse.Namespace) -> int:
        from bench.sim.cli import run_sim

        return run_sim(args, None if args.no_append else args.results, _command())

    p.set_defaults(run=run)
