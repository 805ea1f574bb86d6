"""parm's home folder and the event-loop runner of entry points."""

from __future__ import annotations

import asyncio
import random
import socket
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


def test_free_ports_come_from_below_the_ephemeral_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outgoing connections take ports of the ephemeral range: one could take a port
    between its choice and its server's bind."""
    import common.runtime as runtime

    (tmp_path / "range").write_text("40000\t60999\n")
    monkeypatch.setattr(runtime, "EPHEMERAL_RANGE", tmp_path / "range")
    ports = [runtime.free_port() for _ in range(50)]
    assert all(runtime.PORTS_FROM <= port < 40000 for port in ports)


def test_a_port_in_use_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import common.runtime as runtime

    (tmp_path / "range").write_text("40000 60999")
    monkeypatch.setattr(runtime, "EPHEMERAL_RANGE", tmp_path / "range")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        free = runtime.free_port()  # a port just handed out is free: draw it again
        draws = iter([taken, free])
        monkeypatch.setattr(random, "randrange", lambda a, b: next(draws))
        runtime._handed_out.discard(free)
        assert runtime.free_port() == free


def test_without_the_ephemeral_range_the_kernel_chooses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import common.runtime as runtime

    monkeypatch.setattr(runtime, "EPHEMERAL_RANGE", tmp_path / "missing")
    port = runtime.free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # it was free
