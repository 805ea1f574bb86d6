"""parm's home folder and the event-loop runner of entry points."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from common.runtime import parm_home, run_loop


def test_parm_home_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PARM_HOME", str(tmp_path))
    assert parm_home() == tmp_path
    monkeypatch.delenv("PARM_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "h"))
    assert parm_home() == tmp_path / "h" / ".cache" / "parm"


def test_run_loop_returns_the_coroutine_result() -> None:
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert run_loop(answer()) == 42


def test_free_ports_are_never_handed_out_twice() -> None:
    from common.runtime import free_port

    # the kernel often gives a just-closed socket's port to the next bind to port 0
    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
