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
    "coded, grace=0": "tab:cyan",
    "equal-resources": "tab:orange",
    "hedge": "tab:red",
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
    return _tail_against(runs, "rate", out_dir / "p999-vs-rate.png", label)


def tail_vs_load(runs: Sequence[dict[str, Any]], out_dir: Path, label: str) -> Path:
    """p99.9 against load (share of each k's capacity), one line per (mode, k)."""
    return _tail_against(runs, "load", out_dir / "p999-vs-load.png", label)


def _tail_against(runs: Sequence[dict[str, Any]], x: str, path: Path, label: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    lines: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    for run in runs:
        lines[run["mode"], run["k"]].append((run[x], run["p999_ms"]))
    for (mode, k), points in sorted(lines.items()):
        points.sort()
        xs, ys = zip(*points, strict=True)
        style = "-o" if mode.startswith("coded") else "--s"
        ax.plot(xs, ys, style, label=f"{mode} k={k}", color=COLOURS.get(mode))
    name = "rate (queries/s)" if x == "rate" else "load (share of capacity)"
    ax.set(xlabel=name, ylabel="p99.9 latency (ms)", title=f"p99.9 vs {x} ({label})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, plt, path)


def extra_load(runs: Sequence[dict[str, Any]], out_dir: Path, label: str) -> Path:
    """Instance requests beyond one per query, per mode: one bar per (k, rate)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    points = sorted({(r["k"], r["rate"]) for r in runs})
    modes = sorted({r["mode"] for r in runs})
    by = {(r["mode"], r["k"], r["rate"]): r.get("extra_load", 0.0) for r in runs}
    width = 0.8 / max(1, len(modes))
    for i, mode in enumerate(modes):
        xs = np.arange(len(points)) + i * width
        ys = [100 * by.get((mode, k, rate), 0.0) for k, rate in points]
        ax.bar(xs, ys, width, label=mode, color=COLOURS.get(mode))
    ax.set_xticks(np.arange(len(points)) + 0.4 - width / 2)
    ax.set_xticklabels([f"k={k}\n{rate:g} q/s" for k, rate in points], fontsize=8)
    ax.set(ylabel="extra load (% of queries)", title=f"extra instance requests ({label})")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, plt, out_dir / "extra-load.png")


def _save(fig: Any, plt: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
