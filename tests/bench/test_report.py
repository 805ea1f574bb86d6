"""Aggregating repeats, the output files and plots, and the plan's options."""

from __future__ import annotations

import csv
import json

import pytest

from bench.latency import QUICK, plan_from_options
from bench.plots import cdf_plots, tail_vs_rate
from bench.report import aggregate, comparisons, markdown, write_outputs
from frontend.events import Mode


def row(mode: str, repeat: int, p999: float, p50: float = 12.0) -> dict[str, object]:
    return {
        "mode": mode, "k": 2, "rate": 90.0, "repeat": repeat, "contention": "shuffle",
        "p50_ms": p50, "mean_ms": p50 + 1, "p99_ms": p999 / 2, "p995_ms": p999 / 1.5,
        "p999_ms": p999, "gap_p999_p50_ms": p999 - p50,
        "sources": {"original": 90, "reconstructed": 10} if mode == "coded" else {"original": 100},
        "errors": {}, "raw": f"{mode}-{repeat}.json",
    }  # fmt: skip


ROWS = [
    row("coded", 0, 30.0), row("coded", 1, 90.0), row("coded", 2, 40.0),
    row("equal-resources", 0, 80.0, 11.5), row("equal-resources", 1, 70.0, 11.5),
    row("equal-resources", 2, 100.0, 11.5),
]  # fmt: skip


@pytest.mark.parametrize(("mode", "p999"), [("coded", 40.0), ("equal-resources", 80.0)])
def test_each_point_is_the_median_of_its_repeats(mode, p999):
    runs = {r["mode"]: r for r in aggregate(ROWS)}
    assert runs[mode]["p999_ms"] == p999
    assert runs[mode]["repeats"] == 3


def test_sources_are_shares_over_all_repeats():
    runs = {r["mode"]: r for r in aggregate(ROWS)}
    assert runs["coded"]["sources"] == {"original": 0.9, "reconstructed": 0.1}
    assert runs["equal-resources"]["sources"] == {"original": 1.0}


def test_the_comparison_line_states_the_reduction_and_the_median_gap():
    (line,) = comparisons(aggregate(ROWS))
    assert "40.0 ms vs Equal-Resources 80.0 ms (50% lower)" in line
    assert "+0.50 ms" in line


def test_outputs_are_written(tmp_path):
    runs = aggregate(ROWS)
    write_outputs(tmp_path, runs, ROWS, {"plan": "test"})
    doc = json.loads((tmp_path / "results.json").read_text())
    keys = {"mode", "k", "rate", "contention", "p50_ms", "p99_ms", "p999_ms", "mean_ms", "sources"}
    assert all(keys <= set(r) for r in doc["runs"])
    with (tmp_path / "results.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 2


def test_plots_are_drawn(tmp_path):
    for r in ROWS:
        (tmp_path / str(r["raw"])).write_text(json.dumps({"latency_ms": [10.0, 12.0, 50.0]}))
    pngs = cdf_plots(ROWS, tmp_path, tmp_path, "shuffle")
    pngs.append(tail_vs_rate(aggregate(ROWS), tmp_path, "shuffle"))
    assert [p.name for p in pngs] == ["cdf-k2-r90.png", "p999-vs-rate.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_the_markdown_names_command_setting_and_figures():
    meta = {**QUICK.describe(), "groups": 1}
    text = markdown("Tail latency", "parm bench latency --quick", meta, aggregate(ROWS))
    assert "`parm bench latency --quick`" in text
    assert "padded by sleeping" in text and "not GPU time" in text
    assert "| coded | 2 | 3 | 90 |" in text


def test_the_quick_plan_is_small_and_options_override_it():
    assert QUICK.ks == (2,) and QUICK.modes == (Mode.CODED, Mode.EQUAL_RESOURCES)
    assert len(QUICK.rates) == 1
    plan = plan_from_options(True, rates=(50.0,), modes=("none",), contention="pause", seed=None)
    assert plan.rates == (50.0,) and plan.modes == (Mode.NONE,)
    assert plan.contention.pause is not None and plan.seed == QUICK.seed
    assert plan_from_options(False).modes == (
        Mode.CODED, Mode.EQUAL_RESOURCES, Mode.REPLICATE, Mode.NONE,
    )  # fmt: skip
