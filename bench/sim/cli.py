"""``parm sim``: run a scenario in every mode, write results like the real benchmark's.

Each (k, rate) runs every mode with the same seeds, ``repeats`` times; as for the real
cluster, the reported figure is the median over repeats.  With ``--compare`` (a real
``results.json``), p99 of the simulation and of the real run are set side by side.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import (
    aggregate,
    comparisons,
    machine,
    publish,
    table,
    variants,
    write_outputs,
)
from bench.sim.engine import ORIGINAL, RECONSTRUCTED, SimResult, Simulation
from bench.sim.scenarios import SCENARIOS, Scenario, setup_for
from bench.sim.service import Calibration, summary
from bench.stats import summarize
from frontend.config import decode_grace_seconds
from frontend.events import Mode


def result_row(result: SimResult) -> dict[str, Any]:
    """The loadgen-style summary of one simulated run."""
    row = summarize(result.latency_s[~np.isnan(result.latency_s)].tolist())
    row["sources"] = {
        "original": int((result.source == ORIGINAL).sum()),
        "reconstructed": int((result.source == RECONSTRUCTED).sum()),
    }
    row["errors"] = {"failed": result.failed} if result.failed else {}
    if "extra_load" in result.stats:
        row["extra_load"] = result.stats["extra_load"]
    return row


def simulate(
    scenario: Scenario,
    ks: tuple[int, ...],
    modes: tuple[Mode, ...],
    repeats: int,
    cal: Calibration,
    seed: int,
    replay: bool = False,
    graces: tuple[str, ...] = ("auto",),
) -> list[dict[str, Any]]:
    """Every run of the scenario; one row per (k, rate, repeat, mode and decode grace)."""
    rows = []
    for k in ks:
        for rate in scenario.rates:
            for repeat in range(repeats):
                for label, mode, grace in variants(modes, graces):
                    began = time.perf_counter()
                    setup = setup_for(scenario, k, mode, rate, repeat, cal, seed, replay=replay)
                    setup = replace(setup, decode_grace=decode_grace_seconds(grace))
                    result = Simulation(setup).run()
                    row = result_row(result)
                    row.update(
                        mode=label, k=k, rate=rate, repeat=repeat,
                        contention=scenario.contention, events=result.events,
                        wall_s=time.perf_counter() - began,
                    )  # fmt: skip
                    print(
                        f"  k={k} {label:<16} rate={rate:g} rep={repeat}: "
                        f"p50 {row['p50_ms']:.2f} p99 {row['p99_ms']:.2f} "
                        f"p99.9 {row['p999_ms']:.2f} ms ({row['wall_s']:.1f} s wall, "
                        f"{row['events'] / row['wall_s']:,.0f} events/s)",
                        flush=True,
                    )
                    rows.append(row)
    return rows


def real_runs(compare: Path | None, cal: Calibration) -> list[dict[str, Any]]:
    """What to check the simulation against: a results.json, else the calibration's runs."""
    if compare is not None:
        runs: list[dict[str, Any]] = json.loads(compare.read_text())["runs"]
        return runs
    return [{"mode": mode, **figures} for mode, figures in cal.real.items()]


def agreement(sim_runs: list[dict[str, Any]], real: list[dict[str, Any]]) -> list[str]:
    """p99 of matching (mode, k, rate) points: simulated against real."""
    by = {(r["mode"], r["k"], r["rate"]): r for r in real}
    lines, diffs = [], []
    for s in sim_runs:
        r = by.get((s["mode"], s["k"], s["rate"]))
        if r is None:
            continue
        diff = s["p99_ms"] / r["p99_ms"] - 1
        diffs.append(abs(diff))
        lines.append(
            f"{s['mode']} k={s['k']} {s['rate']:g} q/s: p99 simulated {s['p99_ms']:.2f} ms vs "
            f"real {r['p99_ms']:.2f} ms ({diff:+.1%}); p50 {s['p50_ms']:.2f} vs "
            f"{r['p50_ms']:.2f} ms; p99.9 {s['p999_ms']:.2f} vs {r['p999_ms']:.2f} ms"
        )
    if diffs:
        within = sum(d <= AGREEMENT for d in diffs)
        lines.append(
            f"p99 within {AGREEMENT:.0%} of the real run at {within} of {len(diffs)} points "
            f"(largest difference {max(diffs):.1%})"
        )
    return lines


#: how close a simulated p99 should be to the real one (the netns study's target)
AGREEMENT = 0.15


def markdown(
    scenario: Scenario,
    cal: Calibration,
    command: str,
    runs: list[dict[str, Any]],
    extra: list[str],
    replay: bool,
) -> str:
    service = (
        "replayed from the recorded trace by time (machine-wide slow moments kept)"
        if replay
        else "independent draws from the recorded round trips (busy and idle apart)"
    )
    if cal.shuffle_profiles and not replay:
        service = (
            "idle ones drawn from the recorded round trips; each simulated transfer "
            "replays a recorded one (a task sent t s into it takes what a real task sent "
            "t s into that transfer, on the same side, took)"
        )
    title = f"Simulated: {scenario.name}" + (", replayed trace" if replay else "")
    lines = [
        f"### {title} ({datetime.date.today().isoformat()})",
        "",
        f"Command: `{command}`  ",
        f"Machine (simulation and calibration): {machine()}.  ",
        f"Scenario: {scenario.about}; contention `{scenario.contention}`.  ",
        f"Calibration ({scenario.calibration.name} unless --calibration): {summary(cal)}.  ",
        f"Task times: {service}.  ",
        f"Each point: median over repeats of {scenario.queries:,} measured queries "
        f"(after {scenario.warmup:,} warm-up), Poisson arrivals; the frontend's own "
        "coordinator and single-queue policy in simulated time.",
        "",
        *table(runs, scenario.groups),
        "",
        *(f"- {line}" for line in comparisons(runs) + extra),
        "",
    ]
    return "\n".join(lines)


def run_sim(args: argparse.Namespace, results_md: Path | None, command: str) -> int:
    scenario = SCENARIOS[args.scenario]
    overrides = {"rates": args.rates, "groups": args.groups, "queries": args.queries}
    scenario = replace(scenario, **{k: v for k, v in overrides.items() if v is not None})
    if args.contention is not None:
        scenario = replace(scenario, contention=args.contention)
    paths = args.calibration or [scenario.calibration]
    cal = Calibration.pooled([Calibration.load(path) for path in paths])
    modes = tuple(Mode(m) for m in args.modes)
    print(f"scenario {scenario.name}: {scenario.about}", flush=True)
    graces = tuple(args.decode_grace)
    rows = simulate(
        scenario, tuple(args.ks), modes, args.repeats, cal, args.seed, args.replay, graces
    )
    runs = aggregate(rows)
    meta = {
        "scenario": scenario.name,
        "about": scenario.about,
        "calibration": summary(cal),
        "service": "replayed by time" if args.replay else "independent draws",
        "decode_graces": list(graces),
    }
    write_outputs(args.out, runs, rows, meta)
    extra = agreement(runs, real_runs(args.compare, cal))
    publish(markdown(scenario, cal, command, runs, extra, args.replay), results_md)
    return 0
