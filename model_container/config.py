"""Everything one model container needs to start, and its command line, both ways.

`ContainerConfig.argv` turns a configuration into the flags of ``python -m
model_container``; `parser` and `ContainerConfig.from_argv` read them back.  Launchers
(``deploy/``, the benchmarks) build a configuration and call ``argv()``: no one writes
the container's flags by hand.  Each field is the flag of the same name, with dashes.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from model_container.faults import DELAY_DISTS, FaultSettings

FAULT_FIELDS = tuple(f.name for f in dataclasses.fields(FaultSettings))


@dataclass(frozen=True)
class ContainerConfig:
    """Everything one container needs; the CLI flags map one to one onto these fields.

    ``stream_port`` 0 disables the framed TCP server; ``port`` 0 binds any free port.
    ``name`` overrides the model name requests must use (default: the manifest's name).
    The fault fields (``delay_ms``, ``delay_prob``, ``fail_prob``, ``delay_dist``,
    ``seed``) are those of `model_container.faults.FaultSettings`, read by `faults`.
    """

    bundle: Path
    port: int
    stream_port: int = 0
    host: str = "127.0.0.1"
    device: str = "auto"
    threads: int = 1
    delay_ms: float = 0.0
    delay_prob: float | None = None
    fail_prob: float = 0.0
    seed: int | None = None
    name: str | None = None
    #: pad each inference to this many ms (an accelerator's service time on a CPU
    #: machine); the remainder is slept asynchronously, so padding burns no CPU
    service_time_ms: float = 0.0
    delay_dist: str = "const"
    #: Prometheus ``/metrics`` on this port (0: off)
    metrics_port: int = 0

    def __post_init__(self) -> None:
        if self.service_time_ms < 0:
            raise ValueError(f"service_time_ms: expected >= 0, got {self.service_time_ms}")
        if self.threads < 1:
            raise ValueError(f"threads: expected >= 1, got {self.threads}")
        _ = self.faults  # the fault settings validate themselves
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ValueError(f"device: expected auto, cpu or cuda[:N], got {self.device!r}")

    @property
    def faults(self) -> FaultSettings:
        """The fault injection settings."""
        return FaultSettings(**{name: getattr(self, name) for name in FAULT_FIELDS})

    @property
    def effective_delay_prob(self) -> float:
        """The probability a response is delayed, after applying the default."""
        return self.faults.effective_delay_prob

    def with_faults(self, faults: FaultSettings) -> ContainerConfig:
        """This configuration with every fault setting taken from ``faults``."""
        return dataclasses.replace(self, **dataclasses.asdict(faults))

    def argv(self) -> list[str]:
        """The flags of ``python -m model_container`` for this configuration.

        Required fields always, others only where they differ from their default.
        """
        args: list[str] = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.default is dataclasses.MISSING or (value is not None and value != f.default):
                args += [_flag(f.name), str(value)]
        return args

    @classmethod
    def from_argv(cls, argv: Sequence[str]) -> ContainerConfig:
        """The configuration that ``argv`` (as made by `argv`) describes."""
        p = parser()
        return config_from(p, p.parse_args(argv))


def _flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def parser(
    prog: str = "python -m model_container", description: str | None = None
) -> argparse.ArgumentParser:
    """The container's argument parser: one flag per `ContainerConfig` field."""
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--bundle", type=Path, required=True, help="model bundle folder")
    p.add_argument("--port", type=int, required=True, help="v2 gRPC port (0: any free port)")
    p.add_argument("--stream-port", type=int, default=0, help="framed TCP port (0: off)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--delay-ms", type=float, default=0.0, help="injected response delay")
    p.add_argument(
        "--delay-prob", type=float, default=None, help="delay probability (1 with --delay-ms)"
    )
    p.add_argument("--fail-prob", type=float, default=0.0, help="injected failure probability")
    p.add_argument(
        "--delay-dist", default="const", choices=DELAY_DISTS, help="of the injected delay"
    )
    p.add_argument(
        "--service-time-ms",
        type=float,
        default=0.0,
        help="pad each inference to this time (an accelerator's, on a CPU machine)",
    )
    p.add_argument("--metrics-port", type=int, default=0, help="Prometheus /metrics (0: off)")
    p.add_argument("--seed", type=int, default=None, help="seed of the fault draws")
    p.add_argument("--name", default=None, help="model name to serve (default: manifest's)")
    return p


def config_from(p: argparse.ArgumentParser, args: argparse.Namespace) -> ContainerConfig:
    """The configuration in parsed ``args``; an invalid one is a usage error of ``p``."""
    fields = {f.name for f in dataclasses.fields(ContainerConfig)}
    try:
        return ContainerConfig(**{k: v for k, v in vars(args).items() if k in fields})
    except ValueError as exc:
        p.error(str(exc))
