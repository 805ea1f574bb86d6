"""Latency statistics as the papers report them (milliseconds)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PERCENTILES = {"p50_ms": 50.0, "p99_ms": 99.0, "p995_ms": 99.5, "p999_ms": 99.9}


def summarize(latencies_s: Sequence[float]) -> dict[str, object]:
    """Count, mean and tail percentiles (ms) of latencies given in seconds."""
    if not latencies_s:
        return {"count": 0}
    ms = np.asarray(latencies_s) * 1000.0
    out: dict[str, object] = {"count": int(ms.size), "mean_ms": float(ms.mean())}
    for key, q in PERCENTILES.items():
        out[key] = float(np.percentile(ms, q))
    out["gap_p999_p50_ms"] = float(out["p999_ms"]) - float(out["p50_ms"])  # type: ignore[arg-type]
    return out
