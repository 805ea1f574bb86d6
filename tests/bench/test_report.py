"""Aggregating repeats, the comparison lines, the output files and the markdown section."""

from __future__ import annotations

import csv
import json

import pytest

from bench.latency import QUICK, QUICK_NETNS
from bench.report import aggregate, comparisons, markdown, write_outputs


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


def test_the_markdown_names_command_setting_and_figures():
    meta = {**QUICK.describe(), "groups": 1}
    text = markdown("Tail latency", "parm bench latency --quick", meta, aggregate(ROWS))
    assert "`parm bench latency --quick`" in text
    assert "padded by sleeping" in text and "not GPU time" in text
    assert "| coded | 2 | 3 | 90 | - |" in text


def test_a_tail_above_equal_resources_is_called_higher():
    worse = [{**r, "p999_ms": 120.0} if r["mode"] == "coded" else r for r in ROWS]
    (line,) = comparisons(aggregate(worse))
    assert "120.0 ms vs Equal-Resources 80.0 ms (50% higher)" in line


def with_extras(row: dict[str, object], extra: float) -> dict[str, object]:
    return {**row, "load": 0.3, "extra_load": extra}


def test_load_and_extra_load_are_medians_and_reach_the_csv_and_table(tmp_path):
    rows = [with_extras(r, 0.5 if r["mode"] == "coded" else 0.0) for r in ROWS]
    runs = aggregate(rows)
    assert {r["mode"]: (r["load"], r["extra_load"]) for r in runs} == {
        "coded": (0.3, 0.5), "equal-resources": (0.3, 0.0),
    }  # fmt: skip
    write_outputs(tmp_path, runs, rows, {})
    with (tmp_path / "results.csv").open() as f:
        assert [r["extra_load"] for r in csv.DictReader(f)] == ["0.5", "0.0"]
    meta = {**QUICK_NETNS.describe(), "groups": 1}
    text = markdown("Tail latency", "parm bench latency", meta, runs)
    assert "| 30.0% | 12.00 |" in text and "| 10.0% | 50.0% |" in text
    assert "Load: share of capacity (k=2: 400 q/s), derived" in text


def test_every_coded_variant_is_set_against_equal_resources_and_hedging():
    hedged = [
        {**row("hedge", i, p, 11.0), "extra_load": 0.05} for i, p in enumerate((60.0, 50.0, 55.0))
    ]
    eager = [{**r, "mode": "coded, grace=0"} for r in ROWS if r["mode"] == "coded"]
    lines = comparisons(aggregate([*ROWS, *eager, *hedged]))
    assert "k=2, 90 queries/s: ParM (grace=0) p99.9 40.0 ms vs Equal-Resources" in "".join(lines)
    against = [line for line in lines if "vs hedge" in line]
    assert len(against) == 2
    assert "p50 12.00 vs 11.00 ms, p99.9 40.0 vs 55.0 ms (0.73x, ParM lower)" in against[0]
    assert against[0].endswith("extra load - vs 5.0%")
