"""PNG plots of a latency benchmark: latency CDFs per mode, and p99.9 against rate.

matplotlib draws off-screen (the Agg backend): no display is needed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

COLOURS = {
    "coded": "tab:blue",
    "equal-resources": "tab:orange",
    "replicate": "tab:green",
    "none": "tab:gray",
}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def pooled_latencies(
    rows: Sequence[dict[str, Any]], raw_dir: Path
) -> dict[tuple[int, float, str], Any]:
    """Every repeat's measured latencies (ms), pooled per (k, rate, mode)."""
    pooled: dict[tuple[int, float, str], list[float]] = defaultdict(list)
    for row in rows:
        raw = json.loads((raw_dir / row["raw"]).read_text())
        pooled[row["k"], row["rate"], row["mode"]].extend(raw["latency_ms"])
    return {key: np.sort(np.asarray(v)) for key, v in pooled.items()}


def cdf_plots(
    rows: Sequence[dict[str, Any]], raw_dir: Path, out_dir: Path, label: str
) -> list[Path]:
    """One PNG per (k, rate): the latency CDF of each mode, tail on a log scale."""
    plt = _pyplot()
    pooled = pooled_latencies(rows, raw_dir)
    written = []
    for k, rate in sorted({(k, r) for k, r, _ in pooled}):
        fig, (ax, tail) = plt.subplots(1, 2, figsize=(11, 4))
        for (kk, rr, mode), lat in sorted(pooled.items()):
            if (kk, rr) != (k, rate) or not len(lat):
                continue
            share = np.arange(1, len(lat) + 1) / len(lat)
            colour = COLOURS.get(mode)
            ax.plot(lat, share, label=mode, color=colour)
            tail.plot(lat, 1 - share + 1 / len(lat), label=mode, color=colour)
        ax.set(xlabel="latency (ms)", ylabel="CDF", title=f"k={k}, {rate:g} queries/s")
        ax.set_xscale("log")
        tail.set(xlabel="latency (ms)", ylabel="1 - CDF", title=f"tail ({label})")
        tail.set_xscale("log")
        tail.set_yscale("log")
        for axis in (ax, tail):
            axis.grid(True, which="both", alpha=0.3)
            axis.legend()
        path = out_dir / f"cdf-k{k}-r{rate:g}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def tail_vs_rate(runs: Sequence[dict[str, Any]], out_dir: Path, label: str) -> Path:
    """p99.9 (median over repeats) against rate, one line per (mode, k)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    lines: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    for run in runs:
        lines[run["mode"], run["k"]].append((run["rate"], run["p999_ms"]))
    for (mode, k), points in sorted(lines.items()):
        points.sort()
        xs, ys = zip(*points, strict=True)
        style = "-o" if mode == "coded" else "--s"
        ax.plot(xs, ys, style, label=f"{mode} k={k}", color=COLOURS.get(mode))
    ax.set(xlabel="rate (queries/s)", ylabel="p99.9 latency (ms)", title=f"p99.9 vs rate ({label})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    path = out_dir / "p999-vs-rate.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
