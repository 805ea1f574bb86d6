"""Process-level helpers for entry points: parm's home folder, and running a coroutine."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def parm_home() -> Path:
    """Where parm caches demo bundles and writes logs (``$PARM_HOME``, else ~/.cache/parm)."""
    return Path(os.environ.get("PARM_HOME", Path.home() / ".cache" / "parm"))


def run_loop(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` to completion on uvloop when installed, else on plain asyncio."""
    try:
        import uvloop
    except ImportError:  # optional: plain asyncio works, a little slower
        return asyncio.run(coro)
    return uvloop.run(coro)
