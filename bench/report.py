"""Turning benchmark runs into ``results.json``, a CSV and a Markdown section.

Each point (mode, k, rate) was run several times; as in the papers, the reported figure
is the median over the repeats, statistic by statistic.  Answer sources are summed over
the repeats and given as shares.
"""

from __future__ import annotations

import csv
import datetime
import json
import os
import platform
import statistics
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from frontend.events import Mode

STATS = ("p50_ms", "mean_ms", "p99_ms", "p995_ms", "p999_ms", "gap_p999_p50_ms")
#: per run, medians over repeats where the runs have them (older results do not)
EXTRAS = ("load", "extra_load")
CSV_FIELDS = (
    "mode", "k", "rate", *EXTRAS, "contention", "repeats", *STATS, "original", "reconstructed",
)  # fmt: skip


def aggregate(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (mode, k, rate): medians over repeats, sources summed."""
    groups: dict[tuple[str, int, float], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["mode"], row["k"], row["rate"]].append(row)
    runs = []
    for (mode, k, rate), reps in groups.items():
        entry: dict[str, Any] = {
            "mode": mode,
            "k": k,
            "rate": rate,
            "contention": reps[0]["contention"],
            "repeats": len(reps),
        }
        for stat in STATS:
            entry[stat] = statistics.median(r[stat] for r in reps)
        for extra in EXTRAS:
            if all(extra in r for r in reps):
                entry[extra] = statistics.median(r[extra] for r in reps)
        counts: Counter[str] = Counter()
        for r in reps:
            counts.update(r["sources"])
        total = sum(counts.values()) or 1
        entry["sources"] = {s: n / total for s, n in sorted(counts.items())}
        entry["errors"] = sum(sum(r.get("errors", {}).values()) for r in reps)
        runs.append(entry)
    return runs


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.system()} {platform.machine()} ({cpu}), {os.cpu_count()} cores, "
        f"{mem:.0f} GiB, Python {platform.python_version()}, no GPU"
    )


def write_outputs(
    out_dir: Path, runs: list[dict[str, Any]], rows: list[dict[str, Any]], meta: dict[str, Any]
) -> None:
    """``results.json`` (aggregated runs, every repeat, the plan) and ``results.csv``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {"runs": runs, "repeats": rows, "meta": meta}
    (out_dir / "results.json").write_text(json.dumps(doc, indent=1))
    with (out_dir / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for run in runs:
            sources = run["sources"]
            writer.writerow(
                {
                    **run,
                    "original": sources.get("original", 0.0),
                    "reconstructed": sources.get("reconstructed", 0.0),
                }
            )


def comparisons(runs: list[dict[str, Any]]) -> list[str]:
    """Coded against equal-resources at each (k, rate): p99.9 reduction, median gap."""
    by = {(r["mode"], r["k"], r["rate"]): r for r in runs}
    lines = []
    for (mode, k, rate), variant in sorted(by.items()):
        coded = by.get(("coded", k, rate))
        if mode.startswith("coded, ") and coded is not None:
            ratio = coded["p999_ms"] / variant["p999_ms"]
            lines.append(
                f"k={k}, {rate:g} queries/s: coded p99.9 {coded['p999_ms']:.1f} ms vs "
                f"{mode} {variant['p999_ms']:.1f} ms ({ratio:.2f}x); reconstructed "
                f"{coded['sources'].get('reconstructed', 0):.1%} vs "
                f"{variant['sources'].get('reconstructed', 0):.1%}"
            )
    for (mode, k, rate), coded in sorted(by.items()):
        er = by.get(("equal-resources", k, rate))
        if not mode.startswith("coded") or er is None:
            continue
        cut = 1 - coded["p999_ms"] / er["p999_ms"]
        gap = coded["p50_ms"] - er["p50_ms"]
        name = "ParM" if mode == "coded" else f"ParM ({mode[len('coded, ') :]})"
        change = f"{cut:.0%} lower" if cut >= 0 else f"{-cut:.0%} higher"
        lines.append(
            f"k={k}, {rate:g} queries/s: {name} p99.9 {coded['p999_ms']:.1f} ms vs "
            f"Equal-Resources {er['p999_ms']:.1f} ms ({change}); "
            f"median {coded['p50_ms']:.2f} vs {er['p50_ms']:.2f} ms ({gap:+.2f} ms)"
        )
    return lines + against_hedging(by)


def against_hedging(by: dict[tuple[str, int, float], dict[str, Any]]) -> list[str]:
    """Each coded variant against hedged requests at each (k, rate): p50, p99.9, extra load."""
    lines = []
    for (mode, k, rate), coded in sorted(by.items()):
        hedge = by.get(("hedge", k, rate))
        if not mode.startswith("coded") or hedge is None:
            continue
        ratio = coded["p999_ms"] / hedge["p999_ms"]
        winner = "ParM" if ratio < 1 else "hedging"
        lines.append(
            f"k={k}, {rate:g} queries/s: {mode} vs hedge: p50 {coded['p50_ms']:.2f} vs "
            f"{hedge['p50_ms']:.2f} ms, p99.9 {coded['p999_ms']:.1f} vs "
            f"{hedge['p999_ms']:.1f} ms ({ratio:.2f}x, {winner} lower), extra load "
            f"{_share(coded.get('extra_load'))} vs {_share(hedge.get('extra_load'))}"
        )
    return lines


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def variants(modes: Sequence[Mode], graces: Sequence[str]) -> list[tuple[str, Mode, str]]:
    """(label, mode, decode grace) of each run: coded once per grace, the first labelled
    plain ``coded`` (other modes never decode: the grace does not matter to them)."""
    out = []
    for mode in modes:
        for i, grace in enumerate(graces if mode is Mode.CODED else graces[:1]):
            label = mode.value if i == 0 else f"{mode.value}, grace={grace}"
            out.append((label, mode, grace))
    return out


def estimated_accuracy(sources: dict[str, float], a_a: float, a_d: float) -> float:
    """Overall accuracy the answers should have: originals at A_a, reconstructions at A_d,
    weighted by their shares (defaults and errors count as wrong)."""
    return sources.get("original", 0.0) * a_a + sources.get("reconstructed", 0.0) * a_d


def accuracy_lines(runs: list[dict[str, Any]], accuracy: dict[str, dict[str, float]]) -> list[str]:
    """Per run, the sources' shares and the estimated overall accuracy (A_a/A_d of k)."""
    lines = []
    for r in sorted(runs, key=lambda r: (r["k"], r["rate"], r["mode"])):
        acc = accuracy.get(str(r["k"]))
        if acc is None:
            continue
        shares = ", ".join(f"{k} {v:.1%}" for k, v in sorted(r["sources"].items()))
        est = estimated_accuracy(r["sources"], acc["A_a"], acc["A_d"])
        lines.append(
            f"k={r['k']}, {r['rate']:g} queries/s, {r['mode']}: {shares}; estimated accuracy "
            f"{est:.2%} (A_a {acc['A_a']:.2%}, A_d {acc['A_d']:.2%})"
        )
    return lines


def table(runs: Sequence[dict[str, Any]], groups: int) -> list[str]:
    """Markdown table rows, one per (k, rate, mode)."""
    lines = [
        "| mode | k | instances | rate q/s | load | p50 ms | mean ms | p99 ms | p99.5 ms "
        "| p99.9 ms | p99.9-p50 ms | reconstructed | extra load |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: |",
    ]
    for r in sorted(runs, key=lambda r: (r["k"], r["rate"], r["mode"])):
        inst = r["k"] * groups + groups
        lines.append(
            f"| {r['mode']} | {r['k']} | {inst:,} | {r['rate']:,g} | {_share(r.get('load'))} "
            f"| {r['p50_ms']:.2f} | {r['mean_ms']:.2f} | {r['p99_ms']:.2f} | {r['p995_ms']:.2f} "
            f"| {r['p999_ms']:.2f} | {r['gap_p999_p50_ms']:.2f} "
            f"| {r['sources'].get('reconstructed', 0):.1%} | {_share(r.get('extra_load'))} |"
        )
    return lines


def markdown(title: str, command: str, meta: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    """A RESULTS.md section: command, machine, date, setting, table, comparisons."""
    lines = [
        f"### {title} ({datetime.date.today().isoformat()})",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine()}; client, frontend and every instance share it.  ",
        f"Service time: {meta['service_time_ms']:g} ms per inference, padded by sleeping "
        "(stands in for an accelerator; not GPU time).  ",
        f"Contention: `{meta['contention']}` = {meta['contention_description']}.  ",
        *_load_line(meta),
        f"Each point: median of {meta['repeats']} runs of {meta['queries']} measured "
        f"queries (after {meta['warmup']} warm-up), open-loop Poisson arrivals, v2 gRPC.",
        "",
        *table(runs, meta["groups"]),
    ]
    found = [*comparisons(runs), *accuracy_lines(runs, meta.get("accuracy", {}))]
    lines += ["", *(f"- {line}" for line in found), ""]
    return "\n".join(lines)


def _load_line(meta: dict[str, Any]) -> list[str]:
    """Where the plan gave loads: what the shares are shares of."""
    if not meta.get("loads"):
        return []
    capacity = ", ".join(f"k={k}: {c:g} q/s" for k, c in meta["capacity"].items())
    return [f"Load: share of capacity ({capacity}), {meta['capacity_method']}.  "]


def publish(text: str, results_md: Path | None) -> None:
    """Print a results section, and append it to ``results_md`` unless that is None.

    Append, never rewrite: RESULTS.md holds every earlier section too.
    """
    print(text)
    if results_md is None:
        return
    with results_md.open("a") as f:
        f.write("\n" + text)
    print(f"appended to {results_md}")
