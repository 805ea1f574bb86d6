"""Benchmarks that compare against an older commit's code: skip where a clone lacks it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def needs_baseline(commit: str, path: str) -> pytest.MarkDecorator:
    """Skip the test unless ``path`` at ``commit`` is in this clone's git history."""
    found = subprocess.run(
        ["git", "cat-file", "-e", f"{commit}:{path}"], cwd=ROOT, capture_output=True
    )
    return pytest.mark.skipif(found.returncode != 0, reason="a clone without the baseline commit")
