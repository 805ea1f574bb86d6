"""``parm bench codes``: encode and decode latency of the serving path's code arithmetic.

The papers report (C++, median) encoding 93 / 153 / 193 us and decoding 8 / 14 / 19 us at
k = 2 / 3 / 4, for 3x224x224 float32 images and 1000-class outputs.  Here the same
operations go through ``common.codes`` (NumPy, as the frontend runs them):

- ``encode``: ``SumCode.encode`` of k inputs ``(k, 1, 3, 224, 224)`` into one parity
  input, and the serving path's whole packing as ``frontend.model`` does it: the
  queries' wire bytes summed straight into a pooled buffer (``common.codes.encode_into``,
  ``frontend.buffers``) and framed for the instance without a copy
  (``frontend.outgoing``); both the code alone and the whole packing are timed;
- ``decode``: ``SumCode.decode`` of one missing ``(1, 1000)`` output from the parity
  output and the k-1 others.

Against the memory-bandwidth floor measured here: a plain copy (``np.copyto``) of the
bytes the encoder reads.  Inputs rotate through a pool of 128 MiB, larger than the
caches, so every call reads memory as a new query's input would.
"""

from __future__ import annotations

import datetime
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import numpy.typing as npt

from bench.report import publish
from common.codes import encode_into, make_code
from frontend.buffers import BufferPool
from frontend.outgoing import Buffer, Outgoing

SHAPE = (3, 224, 224)
CLASSES = 1000
POOL_BYTES = 128 << 20
PAPERS_US = {2: (93.0, 8.0), 3: (153.0, 14.0), 4: (193.0, 19.0)}  # (encode, decode)
F32 = np.float32


def _timed(call: Callable[[int], object], repeats: int, warmup: int = 20) -> tuple[float, float]:
    """(median, p99) of ``call(i)`` in microseconds."""
    for i in range(warmup):
        call(i)
    samples = np.empty(repeats)
    for i in range(repeats):
        began = time.perf_counter_ns()
        call(i)
        samples[i] = time.perf_counter_ns() - began
    median, p99 = np.percentile(samples / 1000, [50, 99])
    return float(median), float(p99)


def _pool(k: int, pool_bytes: int) -> list[npt.NDArray[np.float32]]:
    """Distinct (k, 1, 3, 224, 224) input sets totalling ``pool_bytes``."""
    one = k * int(np.prod(SHAPE)) * 4
    rng = np.random.default_rng(0)
    return [rng.random((k, 1, *SHAPE), F32) for _ in range(max(2, pool_bytes // one))]


def measure(k: int, repeats: int, pool_bytes: int = POOL_BYTES) -> dict[str, float]:
    """Median and p99 (us) of encode, serving-path encode, decode and the copy floor."""
    code = make_code("sum", k)
    pool = _pool(k, pool_bytes)
    wires = [[x[slot, 0].tobytes() for slot in range(k)] for x in pool[:64]]
    dst = np.empty_like(pool[0])

    buffers = BufferPool((1, *SHAPE), F32)

    def pack(i: int) -> tuple[bytes, Buffer]:  # as frontend.model's _send_parity does
        parity = buffers.take()
        slots = [np.frombuffer(raw, F32).reshape(SHAPE) for raw in wires[i % len(wires)]]
        encode_into(code, slots, parity[0])
        return Outgoing.of(i, "parity", "input", "FP32", parity.shape, parity.data).frame()

    outs = np.random.default_rng(1).random((k, 1, CLASSES), F32)
    parity_out = outs.sum(0)
    out: dict[str, float] = {}
    for name, call in (
        ("encode", lambda i: code.encode(pool[i % len(pool)])),
        ("encode_serving", pack),
        ("copy_floor", lambda i: np.copyto(dst, pool[i % len(pool)])),
        ("decode", lambda i: code.decode(parity_out, outs, i % k)),
    ):
        out[f"{name}_p50_us"], out[f"{name}_p99_us"] = _timed(call, repeats)
    return out


def report(rows: dict[int, dict[str, float]], command: str) -> str:
    from bench.report import machine

    lines = [
        f"### Encode/decode micro-benchmarks ({datetime.date.today().isoformat()})",
        "",
        f"Command: `{command}`  ",
        f"Machine: {machine()}.  ",
        "NumPy through `common.codes`; 3x224x224 float32 inputs (602 KB each) rotating "
        "through 128 MiB, 1000-class float32 outputs; median (p99) in microseconds.  "
        "Copy floor: `np.copyto` of the k inputs' bytes the encoder reads.  Each k in a "
        "fresh process.",
        "",
        "| k | encode | serving-path packing | copy floor | encode / floor | packing / floor "
        "| papers' encode | decode | papers' decode |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for k, r in sorted(rows.items()):
        enc, dec = PAPERS_US[k]
        ratio = r["encode_p50_us"] / r["copy_floor_p50_us"]
        packing = r["encode_serving_p50_us"] / r["copy_floor_p50_us"]
        lines.append(
            f"| {k} | {r['encode_p50_us']:.0f} ({r['encode_p99_us']:.0f}) | "
            f"{r['encode_serving_p50_us']:.0f} ({r['encode_serving_p99_us']:.0f}) | "
            f"{r['copy_floor_p50_us']:.0f} ({r['copy_floor_p99_us']:.0f}) | {ratio:.2f}x | "
            f"{packing:.2f}x | "
            f"{enc:.0f} | {r['decode_p50_us']:.1f} ({r['decode_p99_us']:.1f}) | {dec:.0f} |"
        )
    return "\n".join([*lines, ""])


def measure_fresh(k: int, repeats: int) -> dict[str, float]:
    """``measure`` in a new process: a frontend serves one k, and the allocator's state
    (glibc raises its mmap threshold as large blocks are freed) must not carry over
    from one k's measurement to the next."""
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        return pool.submit(measure, k, repeats).result()


def run_micro(repeats: int, results_md: Path | None, command: str) -> int:
    rows = {k: measure_fresh(k, repeats) for k in (2, 3, 4)}
    publish(report(rows, command), results_md)
    return 0
