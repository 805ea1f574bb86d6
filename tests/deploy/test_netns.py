"""Hosts in real network namespaces: reachability, cut-offs, rates, teardown, stale sets.

These build real namespaces, veth links, a bridge, tc and iptables rules, so they need
root; elsewhere they are skipped, saying so.  All traffic stays between the namespaces
a test creates and this one.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy import netns
from deploy.netns import HostNetwork, NetworkError, NetworkSpec, namespaces

root_only = pytest.mark.skipif(netns.unavailable() is not None, reason=netns.unavailable() or "")

#: listens on 0.0.0.0:PORT in its namespace, answers each connection with b"hi", exits
#: after one; prints "ready" once listening
SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(); print("ready", flush=True)
c, _ = s.accept(); c.sendall(b"hi"); c.close()
"""
PORT = 7007


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def network(state: Path) -> Iterator[HostNetwork]:
    with HostNetwork(["m/a", "m/b"], NetworkSpec(rate_mbit=100), state_dir=state) as net:
        yield net


@contextlib.contextmanager
def serving(prefix: list[str]) -> Iterator[None]:
    """A one-connection server on a host while the block runs (then it must be done)."""
    with subprocess.Popen(
        [*prefix, sys.executable, "-c", SERVER, str(PORT)], stdout=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        try:
            yield
        finally:
            proc.kill()


def fetch(address: str, prefix: list[str] | None = None) -> str:
    """Connect from this namespace (or through ``prefix``) and read: the reply or error."""
    code = (
        "import socket, sys\n"
        "try:\n"
        f"    c = socket.create_connection(({address!r}, {PORT}), timeout=1.0)\n"
        "    print(c.recv(16).decode())\n"
        "except OSError as e:\n"
        "    print(type(e).__name__)\n"
    )
    argv = [*(prefix or []), sys.executable, "-c", code]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()


def links() -> str:
    return subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout


@root_only
def test_each_host_has_its_own_address_reachable_from_here_and_from_the_others(
    network: HostNetwork,
) -> None:
    a, b = network.host("m/a"), network.host("m/b")
    assert a.address != b.address and a.namespace != b.namespace
    with serving(network.exec_prefix("m/a")):
        assert fetch(a.address) == "hi"
    with serving(network.exec_prefix("m/a")):
        assert fetch(a.address, network.exec_prefix("m/b")) == "hi"  # host to host
    assert fetch("127.0.0.1", network.exec_prefix("m/b")) == "ConnectionRefusedError"


@root_only
def test_a_cut_host_answers_nothing_until_healed(network: HostNetwork) -> None:
    address = network.host("m/a").address
    with serving(network.exec_prefix("m/a")):
        network.cut("m/a")
        network.cut("m/a")  # twice: still one rule
        assert network.is_cut("m/a")
        assert fetch(address) == "TimeoutError"  # dropped: no RST, no FIN
        network.heal("m/a")
        network.heal("m/a")
        assert fetch(address) == "hi"


@root_only
def test_a_squeezed_link_gets_its_new_rate_both_ways(network: HostNetwork) -> None:
    host = network.host("m/a")
    network.set_rate("m/a", 10)
    here = subprocess.run(
        ["tc", "-n", host.namespace, "qdisc", "show", "dev", "eth0"], capture_output=True, text=True
    ).stdout
    switch = subprocess.run(
        ["tc", "-n", f"parm{network.index}", "qdisc", "show", "dev", host.link],
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert "rate 10Mbit" in here and "rate 10Mbit" in switch
    with pytest.raises(ValueError, match="positive rate"):
        network.set_rate("m/a", 0)


@root_only
def test_close_leaves_no_namespace_link_or_state(state: Path) -> None:
    net = HostNetwork(["a", "b", "c"], state_dir=state).create()
    index = net.index
    assert f"parm{index}" in namespaces() and f"pr{index}" in links()
    net.close()
    net.close()  # twice is harmless
    assert not [n for n in namespaces() if n == f"parm{index}" or n.startswith(f"parm{index}-")]
    assert f"pr{index}:" not in links() and f"pr{index} " not in links()
    assert list(state.iterdir()) == []


@root_only
def test_a_set_left_by_a_dead_run_is_removed_at_the_next_start(state: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = HostNetwork(["a", "b"], state_dir=state).create()  # never closed: as if killed
    index = left.index
    (state / str(index)).write_text(f"{dead.pid}\n")
    with HostNetwork(["c"], state_dir=state) as fresh:
        assert fresh.index == index  # its subnet was freed and claimed again
        mine = sorted(n for n in namespaces() if n.startswith(f"parm{index}"))
        assert mine == [f"parm{index}", f"parm{index}-h0"]  # the dead run's h1 is gone
        assert (state / str(index)).read_text() == f"{os.getpid()}\n"


@root_only
def test_a_set_whose_owner_lives_is_left_alone(state: Path, network: HostNetwork) -> None:
    assert netns.clean_stale(state) == []
    assert f"parm{network.index}" in namespaces()


@root_only
def test_two_networks_get_different_subnets(state: Path, network: HostNetwork) -> None:
    with HostNetwork(["x"], state_dir=state) as other:
        assert other.index != network.index
        assert other.host("x").address.split(".")[2] == str(other.index)


def test_without_root_the_error_says_what_is_needed(
    monkeypatch: pytest.MonkeyPatch, state: Path
) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NetworkError, match="needs root"):
        HostNetwork(["a"], state_dir=state).create()
    assert not state.exists()  # nothing was claimed


def test_without_the_commands_the_error_names_them(
    monkeypatch: pytest.MonkeyPatch, state: Path
) -> None:
    monkeypatch.setattr(shutil, "which", lambda c: None if c == "tc" else "/bin/" + c)
    with pytest.raises(NetworkError, match="needs the tc command"):
        HostNetwork(["a"], state_dir=state).create()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate_mbit": 0}, "positive link rates"),
        ({"queue_ms": -1}, "positive link rates"),
        ({"rates": {"a": -5}}, "positive link rates"),
    ],
)
def test_bad_specs_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NetworkSpec(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("names", "spec", "message"),
    [
        ([], None, "unique host names"),
        (["a", "a"], None, "unique host names"),
        (["a"], NetworkSpec(rates={"b": 10}), "unknown hosts"),
    ],
)
def test_bad_host_lists_are_refused(
    names: list[str], spec: NetworkSpec | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        HostNetwork(names, spec)


def test_a_per_host_rate_overrides_the_default() -> None:
    spec = NetworkSpec(rate_mbit=100, rates={"m/a": 5})
    assert (spec.rate("m/a"), spec.rate("m/b")) == (5, 100)


def test_an_unknown_host_is_named_with_the_known_ones(state: Path) -> None:
    with pytest.raises(KeyError, match=r"no host 'z'; hosts: \[\]"):
        HostNetwork(["a"], state_dir=state).host("z")
