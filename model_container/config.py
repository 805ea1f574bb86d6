"""Everything one model container needs to start, and its command line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ContainerConfig:
    """Everything one container needs; the CLI flags map one to one onto these fields.

    ``stream_port`` 0 disables the framed TCP server; ``port`` 0 binds any free port.
    ``delay_prob`` None means 1.0 when ``delay_ms`` is set, else 0. ``name`` overrides
    the model name requests must use (default: the manifest's name).
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
    #: ``const``: every delayed response waits ``delay_ms``; ``exp``: an exponential
    #: draw with mean ``delay_ms``
    delay_dist: str = "const"
    #: benchmark hook: serve network-contention transfers from this process (0: off)
    shuffle_port: int = 0
    #: Prometheus ``/metrics`` on this port (0: off)
    metrics_port: int = 0

    def __post_init__(self) -> None:
        if self.service_time_ms < 0:
            raise ValueError(f"service_time_ms: expected >= 0, got {self.service_time_ms}")
        if self.delay_dist not in ("const", "exp"):
            raise ValueError(f"delay_dist: expected const or exp, got {self.delay_dist!r}")
        if self.threads < 1:
            raise ValueError(f"threads: expected >= 1, got {self.threads}")
        if self.delay_ms < 0:
            raise ValueError(f"delay_ms: expected >= 0, got {self.delay_ms}")
        for field, p in (("delay_prob", self.delay_prob), ("fail_prob", self.fail_prob)):
            if p is not None and not 0.0 <= p <= 1.0:
                raise ValueError(f"{field}: expected a probability in [0, 1], got {p}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ValueError(f"device: expected auto, cpu or cuda[:N], got {self.device!r}")

    @property
    def effective_delay_prob(self) -> float:
        """The probability a response is delayed, after applying the default."""
        if self.delay_prob is not None:
            return self.delay_prob
        return 1.0 if self.delay_ms > 0 else 0.0
