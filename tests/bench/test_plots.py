"""The latency benchmark's plots: pooled raw latencies, one CDF per point, tail against rate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.plots import cdf_plots, extra_load, pooled_latencies, tail_vs_load, tail_vs_rate

MODES, RATES = ("coded", "equal-resources"), (90.0, 120.0)
ROWS: list[dict[str, Any]] = [
    {"mode": mode, "k": 2, "rate": rate, "raw": f"{mode}-{rate:g}-{repeat}.json"}
    for mode in MODES
    for rate in RATES
    for repeat in (0, 1)
]
RUNS = [
    {**row, "p999_ms": 40.0 + row["rate"] / 10, "load": row["rate"] / 400, "extra_load": 0.5}
    for row in ROWS
    if "-0." in row["raw"]
]


def write_raw(raw_dir: Path) -> None:
    for i, row in enumerate(ROWS):
        (raw_dir / row["raw"]).write_text(json.dumps({"latency_ms": [50.0 - i, 10.0 + i]}))


def test_repeats_are_pooled_and_sorted_per_point(tmp_path):
    write_raw(tmp_path)
    pooled = pooled_latencies(ROWS, tmp_path)
    assert set(pooled) == {(2, rate, mode) for mode in MODES for rate in RATES}
    assert pooled[2, 90.0, "coded"].tolist() == [10.0, 11.0, 49.0, 50.0]


def test_plots_are_drawn_one_cdf_per_point_and_one_tail_plot(tmp_path):
    write_raw(tmp_path)
    pngs = [*cdf_plots(ROWS, tmp_path, tmp_path, "shuffle"), tail_vs_rate(RUNS, tmp_path, "x")]
    assert [p.name for p in pngs] == ["cdf-k2-r90.png", "cdf-k2-r120.png", "p999-vs-rate.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)


def test_tail_against_load_and_extra_load_per_mode_are_drawn(tmp_path):
    pngs = [tail_vs_load(RUNS, tmp_path, "x"), extra_load(RUNS[1:], tmp_path, "x")]
    assert [p.name for p in pngs] == ["p999-vs-load.png", "extra-load.png"]
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in pngs)
