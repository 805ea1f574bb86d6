"""Hosts on a real (virtual) network: one network namespace per instance, rate-limited links.

``HostNetwork(names)`` gives every named instance its own *host*: a Linux network
namespace with its own address, joined by a veth pair to a bridge.  The bridge lives in
a *switch* namespace of its own, and the namespace this process runs in (where the
frontend and the benchmarks' clients live) joins the same bridge through one more veth
pair.  Every host's link is rate-limited both ways with tc's token bucket filter
(``tbf``): what a host sends queues on its own end, what it receives queues on the
switch's end, so a bulk transfer congests the sender's and the receiver's links, as on
the papers' EC2 hosts, and the requests that share those links wait behind it.

::

    this namespace (frontend)            switch namespace             host namespaces
    pr<n>  10.213.n.1 ---- veth ---- ps<n>  [bridge pb<n>]  pv<n>h<i> ---- eth0 10.213.n.(i+2)
                                                             (tbf)          (tbf)

Faults: ``cut(name)`` drops everything in and out of a host (iptables DROP inside its
namespace: no RST, no FIN, as a pulled cable), ``heal(name)`` lifts it;
``set_rate(name, mbit)`` squeezes (or restores) a host's link.

Nothing here touches this namespace's firewall or any address outside the subnet it
picks (``10.213.n.0/24``, the first one no route uses yet).  ``close()`` deletes the
namespaces (which takes their links with them) and this namespace's veth end.  A run
killed before it could clean up leaves a state file (``STATE_DIR/<n>``, naming the
owner's pid); the next ``HostNetwork`` removes every set whose owner is gone before it
builds its own.  Root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and the ``ip``, ``tc`` and
``iptables`` commands are needed: without them ``NetworkError`` says so.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

STATE_DIR = Path("/run/parm-netns")
SUBNETS = ipaddress.ip_network("10.213.0.0/16")
DEFAULT_RATE_MBIT = 1000.0
#: how long a full link queue takes to drain: what a request waits behind a transfer
DEFAULT_QUEUE_MS = 20.0
COMMANDS = ("ip", "tc", "iptables")
MAX_HOSTS = 250


class NetworkError(RuntimeError):
    """The network could not be built (permissions, missing commands) or changed."""


@dataclass(frozen=True)
class NetworkSpec:
    """What ``--network netns`` builds: every host's link rate (both ways), how long a
    full link queue takes to drain, and per-host rates (by host name) where they differ."""

    rate_mbit: float = DEFAULT_RATE_MBIT
    queue_ms: float = DEFAULT_QUEUE_MS
    rates: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        rates = [self.rate_mbit, *self.rates.values()]
        if min(rates) <= 0 or self.queue_ms <= 0:
            raise ValueError(
                f"network: expected positive link rates and queue time, got rates {rates} "
                f"Mbit/s and queue {self.queue_ms} ms"
            )

    def rate(self, name: str) -> float:
        return self.rates.get(name, self.rate_mbit)


@dataclass(frozen=True)
class Host:
    """One instance's host: its namespace, its address, its link (switch-side end)."""

    name: str
    namespace: str
    address: str
    link: str


class HostNetwork:
    """Namespaces, links and the bridge for ``names``; a context manager."""

    def __init__(
        self,
        names: Sequence[str],
        spec: NetworkSpec | None = None,
        *,
        state_dir: Path = STATE_DIR,
    ) -> None:
        if not names or len(set(names)) != len(names) or len(names) > MAX_HOSTS:
            raise ValueError(f"expected 1 to {MAX_HOSTS} unique host names, got {list(names)}")
        self.names = list(names)
        self.spec = spec or NetworkSpec()
        unknown = set(self.spec.rates) - set(names)
        if unknown:
            raise ValueError(f"network: rates for unknown hosts {sorted(unknown)}")
        self.state_dir = state_dir
        self.index: int | None = None  # the subnet's third octet, once created
        self.hosts: dict[str, Host] = {}
        self.gateway = ""  # this namespace's address on the bridge
        self._cut: set[str] = set()

    # -- lifecycle ------------------------------------------------------------------

    def create(self) -> HostNetwork:
        """Build everything (after clearing what dead runs left); undone on failure."""
        require_privileges()
        clean_stale(self.state_dir)
        self.index = _claim_subnet(self.state_dir)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Delete the namespaces, links and state file; safe to call twice."""
        if self.index is None:
            return
        remove_set(self.index)
        (self.state_dir / str(self.index)).unlink(missing_ok=True)
        self.index = None
        self.hosts.clear()

    def __enter__(self) -> HostNetwork:
        return self.create()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- what runs on the hosts -------------------------------------------------------

    def host(self, name: str) -> Host:
        try:
            return self.hosts[name]
        except KeyError:
            raise KeyError(f"no host {name!r}; hosts: {sorted(self.hosts)}") from None

    def exec_prefix(self, name: str) -> list[str]:
        """Prepend to a command line to run it on host ``name``."""
        return ["ip", "netns", "exec", self.host(name).namespace]

    # -- faults -------------------------------------------------------------------------

    def cut(self, name: str) -> None:
        """Drop every packet in and out of host ``name`` until ``heal``."""
        if name in self._cut:
            return
        for chain in ("INPUT", "OUTPUT"):
            _run([*self.exec_prefix(name), "iptables", "-I", chain, "-j", "DROP"])
        self._cut.add(name)

    def heal(self, name: str) -> None:
        if name not in self._cut:
            return
        for chain in ("INPUT", "OUTPUT"):
            _run([*self.exec_prefix(name), "iptables", "-D", chain, "-j", "DROP"])
        self._cut.discard(name)

    def is_cut(self, name: str) -> bool:
        return name in self._cut

    def set_rate(self, name: str, mbit: float) -> None:
        """Change host ``name``'s link rate, both ways."""
        if mbit <= 0:
            raise ValueError(f"expected a positive rate, got {mbit}")
        host = self.host(name)
        _tbf("change", host.namespace, "eth0", mbit, self.spec.queue_ms)
        _tbf("change", _switch(self._index), host.link, mbit, self.spec.queue_ms)

    # -- building -----------------------------------------------------------------------

    @property
    def _index(self) -> int:
        if self.index is None:
            raise NetworkError("the network is not created")
        return self.index

    def _build(self) -> None:
        n = self._index
        net = _subnet(n)
        addresses = list(net.hosts())
        switch, bridge = _switch(n), f"pb{n}"
        _ip("netns", "add", switch)
        _ip("-n", switch, "link", "set", "lo", "up")
        _ip("-n", switch, "link", "add", bridge, "type", "bridge")
        _ip("-n", switch, "link", "set", bridge, "up")
        # this namespace's way onto the bridge
        here, there = f"pr{n}", f"ps{n}"
        _ip("link", "add", here, "type", "veth", "peer", "name", there, "netns", switch)
        _ip("-n", switch, "link", "set", there, "master", bridge, "up")
        self.gateway = str(addresses[0])
        _ip("addr", "add", f"{self.gateway}/24", "dev", here)
        _ip("link", "set", here, "up")
        for i, name in enumerate(self.names):
            namespace = f"{switch}-h{i}"
            link = f"pv{n}h{i}"
            address = str(addresses[i + 1])
            _ip("netns", "add", namespace)
            _ip("-n", namespace, "link", "set", "lo", "up")
            _ip("-n", switch, "link", "add", link, "type", "veth", "peer", "name", "eth0",
                "netns", namespace)  # fmt: skip
            _ip("-n", switch, "link", "set", link, "master", bridge, "up")
            _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
            _ip("-n", namespace, "link", "set", "eth0", "up")
            rate = self.spec.rate(name)
            _tbf("add", namespace, "eth0", rate, self.spec.queue_ms)
            _tbf("add", switch, link, rate, self.spec.queue_ms)
            self.hosts[name] = Host(name, namespace, address, link)
        log.info(
            "network %s: %d hosts at %s, links %g Mbit/s", switch, len(self.names), net,
            self.spec.rate_mbit,
        )  # fmt: skip


# ---------------------------------------------------------------- stale sets


def clean_stale(state_dir: Path = STATE_DIR) -> list[int]:
    """Remove every set whose owner process is gone; the subnets freed."""
    freed = []
    for path in sorted(state_dir.glob("*")) if state_dir.is_dir() else []:
        if not path.name.isdigit():
            continue
        try:
            owner = int(path.read_text().strip() or 0)
        except (OSError, ValueError):
            owner = 0
        if owner and _alive(owner):
            continue
        index = int(path.name)
        log.warning("removing the network left by process %s (subnet %d)", owner or "?", index)
        remove_set(index)
        path.unlink(missing_ok=True)
        freed.append(index)
    return freed


def remove_set(index: int) -> None:
    """Delete set ``index``'s namespaces (their links go with them) and this side's veth."""
    switch = _switch(index)
    for namespace in namespaces():
        if namespace == switch or namespace.startswith(f"{switch}-h"):
            _ip("netns", "delete", namespace, check=False)
    _ip("link", "delete", f"pr{index}", check=False)


def namespaces() -> list[str]:
    out = _run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def unavailable() -> str | None:
    """Why hosts cannot be built here (missing commands, not root); None if they can."""
    missing = [c for c in COMMANDS if shutil.which(c) is None]
    if missing:
        return (
            f"--network netns needs the {', '.join(missing)} command(s): install iproute2 "
            "and iptables (Debian: apt-get install iproute2 iptables)"
        )
    if os.geteuid() != 0:
        return (
            "--network netns builds network namespaces, veth links and tc rate limits: it "
            "needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN); run as root, or without --network"
        )
    return None


def require_privileges() -> None:
    reason = unavailable()
    if reason is not None:
        raise NetworkError(reason)


def _claim_subnet(state_dir: Path) -> int:
    """The first subnet no state file and no route claims; claimed with a state file."""
    state_dir.mkdir(parents=True, exist_ok=True)
    routes = _run(["ip", "route", "show"]).stdout
    taken = set(namespaces())  # a run with another state folder (tests) may hold some
    for index, net in enumerate(SUBNETS.subnets(new_prefix=24)):
        if index == 0 or str(net) in routes or _switch(index) in taken:
            continue
        try:  # O_EXCL: two runs starting together never claim the same subnet
            fd = os.open(state_dir / str(index), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        return index
    raise NetworkError(f"no free /24 left in {SUBNETS}")


def _subnet(index: int) -> ipaddress.IPv4Network:
    net = list(SUBNETS.subnets(new_prefix=24))[index]
    assert isinstance(net, ipaddress.IPv4Network)
    return net


def _switch(index: int) -> str:
    return f"parm{index}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _tbf(verb: str, namespace: str, dev: str, mbit: float, queue_ms: float) -> None:
    # burst: at least a GSO packet (64 KiB), so large segments are never dropped whole
    burst = max(64 * 1024 + 1514, int(mbit * 1e6 / 8 / 250))
    _run(["tc", "-n", namespace, "qdisc", verb, "dev", dev, "root", "tbf",
          "rate", f"{mbit}mbit", "burst", str(burst), "latency", f"{queue_ms}ms"])  # fmt: skip


def _ip(*args: str, check: bool = True) -> None:
    _run(["ip", *args], check=check)


def _run(argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise NetworkError(f"{' '.join(argv)}: {done.stderr.strip() or done.returncode}")
    return done
