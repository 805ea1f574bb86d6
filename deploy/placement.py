"""Where each container of a deployment runs, across Docker hosts: pure planning, no I/O.

Theory of operation.  A model's instances are cut into *stripes*: k data instances and
the parity instance that covers them (stripe i: data ``[i*k, (i+1)*k)`` and parity i),
the instances one coding group spans.  `place` puts the members of each stripe on
different hosts wherever there are enough hosts, so one host's trouble costs a group
at most one of its k+1 outputs: exactly the one failure a parity model repairs.  Within
that rule it balances load, counting a host with g GPUs as g slots, and rotates where
each stripe starts so that stripes do not pile up on the first hosts.

The guarantee is exact when a group's tasks run on its stripe: the usual deployment of
k data instances and one parity instance (one stripe), and round-robin dispatch.  With
a single shared queue and more instances than one stripe, a group's tasks go to
whichever instances are free, so spreading stripes (and the instances of each pool)
over hosts is the best a static placement can do.

`plan_ports` then gives each container its ports on its host (containers use the host's
network, so the frontend on another host reaches an instance at ``host:port``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from deploy.spec import Deployment, DeploymentError, ModelDeployment


@dataclass(frozen=True)
class Host:
    """One Docker engine: its URL (as ``DOCKER_HOST``), its address, its GPUs."""

    url: str  # unix:///var/run/docker.sock, ssh://user@gpu1, tcp://10.0.0.5:2376
    address: str  # how the frontend (on any host) reaches containers on this one
    gpus: int = 0  # GPUs to hand out, one per instance; 0: the CPU image

    @classmethod
    def parse(cls, text: str) -> Host:
        """``URL[,address=A][,gpus=N]``; the address defaults to the URL's host name
        (127.0.0.1 for a local socket)."""
        url, *options = text.split(",")
        values = dict(option.partition("=")[::2] for option in options)
        unknown = set(values) - {"address", "gpus"}
        if unknown or not url:
            raise DeploymentError(f"expected URL[,address=A][,gpus=N], got {text!r}")
        parts = urlsplit(url)
        if parts.scheme not in ("unix", "ssh", "tcp", "http", "https"):
            raise DeploymentError(f"host {url!r}: expected a unix://, ssh:// or tcp:// URL")
        address = values.get("address") or parts.hostname or "127.0.0.1"
        try:
            gpus = int(values.get("gpus", "0"))
        except ValueError:
            raise DeploymentError(f"host {url!r}: gpus must be an integer") from None
        return cls(url, address, gpus)


@dataclass(frozen=True)
class Slot:
    """One instance placed: on which host, and which GPU there (None: CPU)."""

    model: str
    instance: str  # data-0, parity-0, ...
    host: Host
    gpu: int | None
    stripe: int


def stripes(model: ModelDeployment) -> list[list[str]]:
    """The model's instances by stripe: k data instances, then their parity instance."""
    data = [f"data-{i}" for i in range(model.data_instances)]
    parity = [f"parity-{i}" for i in range(model.parity_instances)]
    count = max(math.ceil(len(data) / model.k), len(parity))
    return [
        data[i * model.k : (i + 1) * model.k] + parity[i : i + 1]
        for i in range(count)
        if data[i * model.k : (i + 1) * model.k] or parity[i : i + 1]
    ]


def place(deployment: Deployment, hosts: Sequence[Host]) -> list[Slot]:
    """Every instance of every model on a host; see the module's theory of operation."""
    if not hosts:
        raise DeploymentError("no Docker host to place containers on")
    load = [0] * len(hosts)  # instances placed per host
    slots: list[Slot] = []
    turn = 0
    for model in deployment.models:
        for number, stripe in enumerate(stripes(model)):
            for instance, h in zip(
                stripe, _stripe_hosts(len(stripe), hosts, load, turn), strict=True
            ):
                gpu = load[h] % hosts[h].gpus if hosts[h].gpus else None
                load[h] += 1
                slots.append(Slot(model.name, instance, hosts[h], gpu, number))
            turn += 1
    return slots


def _stripe_hosts(size: int, hosts: Sequence[Host], load: Sequence[int], turn: int) -> list[int]:
    """Host indexes for a stripe's members: distinct while hosts last, least loaded first
    (per GPU), ties broken by rotating from ``turn``."""
    n = len(hosts)
    chosen: list[int] = []
    planned = list(load)
    for i in range(size):
        used = set(chosen[(i // n) * n :])  # this round of n members: distinct hosts
        free = [h for h in range(n) if h not in used]
        best = min(free, key=lambda h: (planned[h] / max(hosts[h].gpus, 1), (h - turn) % n))
        chosen.append(best)
        planned[best] += 1
    return chosen


def worst_stripe_share(slots: Sequence[Slot]) -> int:
    """The most members of one stripe on one host (1: every stripe fully spread)."""
    counts: dict[tuple[str, int, str], int] = {}
    for slot in slots:
        key = (slot.model, slot.stripe, slot.host.url)
        counts[key] = counts.get(key, 0) + 1
    return max(counts.values(), default=0)


@dataclass(frozen=True)
class Ports:
    grpc: int
    stream: int
    metrics: int


def plan_ports(slots: Sequence[Slot], base: int = 9000) -> list[Ports]:
    """Ports for each slot, in order: three per container, counting up per host."""
    used: dict[str, int] = {}
    ports = []
    for slot in slots:
        n = used.get(slot.host.url, 0)
        used[slot.host.url] = n + 1
        first = base + 3 * n
        ports.append(Ports(first, first + 1, first + 2))
    return ports
