"""Contention injected into a benchmark's instances, the same for every mode compared.

Five kinds, combinable with ``+`` on the command line (``KIND[:key=value,...]``):

- ``shuffle``: the papers' background network load, bulk transfers between random pairs
  of instances through sidecar processes, one next to each instance, which the
  benchmark starts (``bench.contention.shuffle``);
- ``pause``: SIGSTOP/SIGCONT episodes of random instances (``bench.contention.pause``);
- ``cpu``: busy-loop processes sharing a random instance's core (``bench.contention.cpu``);
- ``cutoff``: a random host cut off the network for a while, then healed (needs a netns
  network, ``bench.contention.cutoff``);
- ``delay``: each answer delayed, with probability ``prob``, by a draw from a constant or
  exponential distribution of mean ``mean_ms``, inside the container (its fault
  settings, `model_container.faults`).

``none`` injects nothing.  ``Contention.describe()`` is what a benchmark reports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.contention.cpu import CpuHogs, CpuSpec
from bench.contention.cutoff import CutoffSpec, Cutter, Switchboard
from bench.contention.pause import Pauser, PauseSpec
from bench.contention.shuffle import Endpoint, Shuffler, ShuffleSpec
from model_container.config import ContainerConfig
from model_container.faults import FaultSettings


@dataclass(frozen=True)
class DelaySpec:
    prob: float = 0.01
    mean_ms: float = 50.0
    dist: str = "exp"

    def __post_init__(self) -> None:
        if not 0 <= self.prob <= 1 or self.mean_ms <= 0 or self.dist not in ("const", "exp"):
            raise ValueError(f"invalid delay settings: {self}")

    def describe(self) -> str:
        kind = "exponential" if self.dist == "exp" else "constant"
        return (
            f"injected delays: each answer, with probability {self.prob:g}, held for a "
            f"{kind} draw of mean {self.mean_ms:g} ms (in the container)"
        )

    def faults(self, base: FaultSettings) -> FaultSettings:
        """``base`` with these delays (its failures and seed kept)."""
        return dataclasses.replace(
            base, delay_ms=self.mean_ms, delay_prob=self.prob, delay_dist=self.dist
        )


KINDS: dict[str, type[Any]] = {
    "shuffle": ShuffleSpec,
    "pause": PauseSpec,
    "cpu": CpuSpec,
    "delay": DelaySpec,
    "cutoff": CutoffSpec,
}


@dataclass(frozen=True)
class Contention:
    shuffle: ShuffleSpec | None = None
    pause: PauseSpec | None = None
    cpu: CpuSpec | None = None
    delay: DelaySpec | None = None
    cutoff: CutoffSpec | None = None
    text: str = "none"  # as given on the command line

    def specs(self) -> list[Any]:
        kinds = (self.shuffle, self.pause, self.cpu, self.delay, self.cutoff)
        return [s for s in kinds if s is not None]

    def scaled_to(self, link_mbit: float) -> Contention:
        """The shuffles' sizes scaled from 1 Gbit/s links to ``link_mbit`` ones: each
        transfer lasts as long, so the same share of hosts is busy at any moment."""
        if self.shuffle is None:
            return self
        factor = link_mbit / 1000.0
        shuffle = dataclasses.replace(
            self.shuffle, min_mb=self.shuffle.min_mb * factor, max_mb=self.shuffle.max_mb * factor
        )
        return dataclasses.replace(self, shuffle=shuffle)

    def describe(self) -> str:
        return "; ".join(s.describe() for s in self.specs()) or "no injected contention"

    def configure(self, config: ContainerConfig) -> ContainerConfig:
        """An instance's container configuration under this contention."""
        if self.delay is None:
            return config
        return config.with_faults(self.delay.faults(config.faults))


def parse_contention(text: str) -> Contention:
    """``none`` or ``KIND[:key=value,...][+KIND...]``, e.g. ``shuffle:concurrency=2+pause``."""
    if text.strip() in ("", "none"):
        return Contention()
    parts: dict[str, Any] = {}
    for item in text.split("+"):
        kind, _, rest = item.strip().partition(":")
        if kind not in KINDS:
            raise ValueError(f"contention {item!r}: expected one of {sorted(KINDS)} or none")
        parts[kind] = KINDS[kind](**_settings(KINDS[kind], rest, item))
    return Contention(**parts, text=text)


def _settings(spec: type[Any], rest: str, item: str) -> dict[str, Any]:
    fields = {f.name: f.type for f in dataclasses.fields(spec)}
    values: dict[str, Any] = {}
    for pair in filter(None, rest.split(",")):
        key, eq, value = pair.partition("=")
        if not eq or key not in fields:
            raise ValueError(
                f"contention {item!r}: expected key=value with key in {sorted(fields)}"
            )
        kind = fields[key]
        values[key] = value if kind == "str" else int(value) if kind == "int" else float(value)
    return values


class ActiveContention:
    """The runtime injectors of one benchmark run: start them, then stop them all."""

    def __init__(
        self,
        contention: Contention,
        pids: Sequence[int],
        sidecars: Sequence[int | Endpoint],
        seed: int,
        network: Switchboard | None = None,
        hosts: Sequence[str] = (),
    ) -> None:
        self.injectors: list[Shuffler | Pauser | CpuHogs | Cutter] = []
        if contention.shuffle is not None:
            self.injectors.append(Shuffler(sidecars, contention.shuffle, seed))
        if contention.pause is not None:
            self.injectors.append(Pauser(pids, contention.pause, seed + 1))
        if contention.cpu is not None:
            self.injectors.append(CpuHogs(pids, contention.cpu, seed + 2))
        if contention.cutoff is not None:
            if network is None:
                raise ValueError("cutoff contention needs hosts on a network: --network netns")
            self.injectors.append(Cutter(network, hosts, contention.cutoff, seed + 3))

    def start(self) -> None:
        for injector in self.injectors:
            injector.start()

    async def stop(self) -> None:
        for injector in self.injectors:
            await injector.stop()

    def stats(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for injector in self.injectors:
            if isinstance(injector, Shuffler):
                out.update(shuffle_transfers=injector.transfers, shuffle_mb=injector.moved / 2**20)
            elif isinstance(injector, Pauser):
                out["pause_episodes"] = injector.episodes
            elif isinstance(injector, Cutter):
                out["cutoff_episodes"] = injector.episodes
            else:
                out["cpu_episodes"] = injector.episodes
        return out
