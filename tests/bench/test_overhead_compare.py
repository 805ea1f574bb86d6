"""Frontend CPU per query beside earlier commits: the program each checkout runs, the table."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import bench.overhead_compare as compare


def test_the_program_run_in_each_checkout_uses_only_what_every_commit_has() -> None:
    imported = {
        node.module
        for node in ast.walk(ast.parse(compare.PROGRAM))
        if isinstance(node, ast.ImportFrom)
    }
    assert imported == {
        "bench.closed_loop", "common.runtime", "deploy.local", "deploy.spec", "train.demo"
    }  # fmt: skip


def test_a_folder_that_is_no_checkout_is_named_by_its_folder(tmp_path: Path) -> None:
    assert compare.revision(tmp_path / "old") == "old"


def rows(cpu: float) -> list[dict[str, Any]]:
    return [
        {"door": door, "cpu_us": cpu * scale, "p50_ms": 1.0, "throughput_qps": 900.0}
        for (door, _), scale in zip(compare.POINTS, (1.0, 1.0, 2.0), strict=True)
    ]


def test_each_commit_is_set_beside_the_first_and_the_one_before() -> None:
    runs = {"old": [rows(700), rows(800), rows(710)], "mid": [rows(600)], "new": [rows(350)]}
    text = compare.report(runs, "parm bench overhead --baseline /tmp/old", 1.5)
    assert "`parm bench overhead --baseline /tmp/old`" in text
    assert "| grpc | 16 | old | 710 | 1.00x | 1.00x | 1.00 | 900 |" in text
    assert "| grpc | 16 | mid | 600 | 0.85x | 0.85x | 1.00 | 900 |" in text
    assert "| grpc | 16 | new | 350 | 0.49x | 0.58x | 1.00 | 900 |" in text
    assert "| grpc | 1 | new | 700 | 0.49x | 0.58x | 1.00 | 900 |" in text
