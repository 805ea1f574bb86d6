"""Per-request cost of parsing a v2 inference body: the schema parser against a baseline.

``python -m bench.json_parse`` times `frontend.rest.parse_v2` (the pydantic schema that
also documents the body) side by side, in one process, with the hand-written parser of
an earlier commit (``--baseline``, read from git, default the last commit before the
schema).  Bodies are realistic: one 1x64 FP32 request and one 16x784 FP32 request, as
JSON and with the binary tensor extension.  Each figure is the best of ``--repeat``
rounds of as many calls as fit in ``--budget-s``, in microseconds per request.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from frontend import rest

#: the hand-written parser, before the one schema replaced it
BASELINE = "95a61e2"
ROOT = Path(__file__).resolve().parent.parent

Parse = Callable[[bytes, str | None], object]


def body(rows: int, features: int, binary: bool) -> tuple[bytes, str | None]:
    """A v2 request for ``rows`` x ``features`` FP32 values and its header length."""
    x = np.random.default_rng(0).standard_normal((rows, features)).astype(np.float32)
    tensor: dict[str, Any] = {"name": "input", "datatype": "FP32", "shape": [rows, features]}
    request: dict[str, Any] = {"id": "q-1", "inputs": [tensor], "parameters": {"timeout_ms": 50}}
    if not binary:
        tensor["data"] = x.ravel().tolist()
        return json.dumps(request).encode(), None
    raw = x.tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    header = json.dumps(request).encode()
    return header + raw, str(len(header))


def baseline_module(commit: str) -> ModuleType:
    """``frontend/rest.py`` as it was at ``commit``, imported under another name."""
    text = subprocess.run(
        ["git", "show", f"{commit}:frontend/rest.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    module = ModuleType("baseline_rest")
    sys.modules[module.__name__] = module  # dataclasses look their module up there
    exec(compile(text, f"{commit}:frontend/rest.py", "exec"), module.__dict__)
    return module


def per_call_us(
    parse: Parse, data: bytes, length: str | None, budget_s: float, repeat: int
) -> float:
    """Best-of-``repeat`` microseconds per call of ``parse(data, length)``."""
    timer = timeit.Timer(lambda: parse(data, length))
    number, _ = timer.autorange()
    number = max(1, int(number * budget_s / 0.2))
    return min(timer.repeat(repeat, number)) / number * 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", default=BASELINE, help="commit of the hand-written parser")
    p.add_argument("--budget-s", type=float, default=0.5, help="per round, roughly")
    p.add_argument("--repeat", type=int, default=5)
    a = p.parse_args(argv)
    parsers: dict[str, Parse] = {
        f"hand ({a.baseline})": baseline_module(a.baseline).parse_v2,
        "schema (pydantic)": rest.parse_v2,
    }
    print("| body | " + " | ".join(f"{name} us" for name in parsers) + " | ratio |")
    print("| --- | " + " | ".join("---:" for _ in parsers) + " | ---: |")
    for rows, features in ((1, 64), (16, 784)):
        for binary in (False, True):
            data, length = body(rows, features, binary)
            kind = "binary" if binary else "JSON"
            times = [per_call_us(f, data, length, a.budget_s, a.repeat) for f in parsers.values()]
            cells = " | ".join(f"{t:.1f}" for t in times)
            label = f"{rows}x{features} FP32 {kind} ({len(data)} B)"
            print(f"| {label} | {cells} | {times[1] / times[0]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
