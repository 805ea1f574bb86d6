"""Aggregating repeats, the comparison lines, the output files and the markdown section."""

from __future__ import annotations

import csv
import json

import pytest

from bench.latency import QUICK
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
    assert "| coded | 2 | 3 | 90 |" in text
