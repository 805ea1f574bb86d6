"""What to deploy: models, their bundles, instance counts, settings and fault injection.

A deployment file is TOML::

    [frontend]
    grpc_port = 8001
    http_port = 8000          # KServe v2 REST and Clipper REST (parm up: 8000 by default)
    metrics_port = 8002       # Prometheus /metrics (parm up: 8002 by default)

    [[models]]
    name = "digits"
    base = "bundles/digits-base"
    parity = "bundles/digits-parity-k2"   # or a list: one per parity index (r > 1)
    k = 2
    mode = "coded"            # coded | equal-resources | replicate | none
    data_instances = 2
    parity_instances = 1
    inject = ["data-0:delay_ms=200,prob=0.1"]
    # any other key is a frontend.config.ModelConfig setting, e.g.
    group_timeout_ms = 10
    slo_ms = 1000

Relative paths are resolved against the file's folder.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from frontend.config import ModelConfig
from frontend.events import Mode, PartialPolicy
from model_container.faults import FaultSettings


class DeploymentError(ValueError):
    """A deployment file or option that cannot be carried out."""


@dataclass(frozen=True)
class Injection:
    """Faults injected into one instance, for experiments."""

    delay_ms: float = 0.0
    prob: float = 1.0
    fail_prob: float = 0.0

    def faults(self, seed: int | None = None) -> FaultSettings:
        """The container's fault settings for this injection, drawn from ``seed``."""
        prob = self.prob if self.delay_ms else None
        return FaultSettings(self.delay_ms, prob, self.fail_prob, seed=seed)


@dataclass(frozen=True)
class ModelDeployment:
    name: str
    base: Path
    parity: Path | None = None
    k: int = 2
    mode: Mode = Mode.CODED
    data_instances: int = 2
    parity_instances: int = 1
    inject: Mapping[str, Injection] = field(default_factory=dict)
    #: further frontend.config.ModelConfig settings (group_timeout_ms, slo_ms, code, ...)
    settings: Mapping[str, Any] = field(default_factory=dict)
    #: r > 1 parities (the linear code): one parity bundle per index, instead of ``parity``
    parities: tuple[Path, ...] = ()

    @property
    def parity_bundles(self) -> tuple[Path, ...]:
        """The parity model of each parity index (r of them)."""
        if self.parities:
            return self.parities
        return (self.parity,) if self.parity is not None else ()

    @property
    def r(self) -> int:
        return max(len(self.parity_bundles), 1)

    def parity_index(self, instance: str) -> int:
        """Parity instances serve the r parity models in turn."""
        return int(instance.removeprefix("parity-")) % self.r

    def __post_init__(self) -> None:
        if self.data_instances < 1 or self.parity_instances < 0:
            raise DeploymentError(
                f"model {self.name!r}: need data_instances >= 1 and parity_instances >= 0"
            )
        if self.mode is Mode.CODED and self.parity_instances and not self.parity_bundles:
            raise DeploymentError(f"model {self.name!r}: coded mode needs a parity bundle")
        if self.mode is Mode.CODED and 0 < self.parity_instances < self.r:
            raise DeploymentError(
                f"model {self.name!r}: {self.r} parity models need at least {self.r} "
                f"parity instances, got {self.parity_instances}"
            )
        unknown = set(self.inject) - set(self.instance_names())
        if unknown:
            raise DeploymentError(
                f"model {self.name!r}: cannot inject into {sorted(unknown)}; "
                f"its instances are {self.instance_names()}"
            )

    def instance_names(self) -> list[str]:
        return [f"data-{i}" for i in range(self.data_instances)] + [
            f"parity-{i}" for i in range(self.parity_instances)
        ]

    def bundle_for(self, instance: str) -> Path:
        """What an instance runs: the parity model only in coded mode."""
        if instance.startswith("parity-") and self.mode is Mode.CODED:
            return self.parity_bundles[self.parity_index(instance)]
        return self.base


@dataclass(frozen=True)
class Deployment:
    models: tuple[ModelDeployment, ...]
    host: str = "127.0.0.1"
    grpc_port: int = 8001
    device: str = "auto"
    threads: int = 1
    #: the frontend's HTTP API and /metrics ports; None: not served
    http_port: int | None = None
    metrics_port: int | None = None

    def __post_init__(self) -> None:
        names = [m.name for m in self.models]
        if not names or len(set(names)) != len(names):
            raise DeploymentError(f"expected one or more uniquely named models, got {names}")


MODEL_SETTINGS = {
    f.name
    for f in dataclasses.fields(ModelConfig)
    if f.name
    not in {
        "name",
        "base_bundle",
        "data",
        "parity",
        "parity_bundle",
        "parity_bundles",
        "mode",
        "k",
        "r",
    }
}


def parse_injection(text: str) -> tuple[str, Injection]:
    """``NAME:delay_ms=D[,prob=P][,fail_prob=Q]`` (NAME may be ``MODEL/data-0``)."""
    name, sep, rest = text.partition(":")
    if not sep or not name or not rest:
        raise DeploymentError(f"expected NAME:key=value[,key=value], got {text!r}")
    values: dict[str, float] = {}
    for item in rest.split(","):
        key, eq, value = item.partition("=")
        if not eq or key not in {"delay_ms", "prob", "fail_prob"}:
            raise DeploymentError(
                f"injection {text!r}: expected delay_ms=, prob= or fail_prob=, got {item!r}"
            )
        try:
            values[key] = float(value)
        except ValueError:
            raise DeploymentError(f"injection {text!r}: {key} must be a number") from None
    for key in ("prob", "fail_prob"):
        if not 0 <= values.get(key, 0) <= 1:
            raise DeploymentError(f"injection {text!r}: {key} must be within [0, 1]")
    return name, Injection(**values)


def assign_injections(
    models: Iterable[ModelDeployment], injections: Iterable[str]
) -> tuple[ModelDeployment, ...]:
    """Attach ``--inject`` options to their models; bare names need a single model."""
    models = tuple(models)
    extra: dict[str, dict[str, Injection]] = {m.name: dict(m.inject) for m in models}
    for text in injections:
        name, injection = parse_injection(text)
        model, slash, instance = name.rpartition("/")
        if not slash:
            if len(models) != 1:
                raise DeploymentError(f"injection {text!r}: say which model, as MODEL/{name}")
            model = models[0].name
        if model not in extra:
            raise DeploymentError(f"injection {text!r}: no model {model!r}")
        extra[model][instance] = injection
    return tuple(dataclasses.replace(m, inject=extra[m.name]) for m in models)


def load_deployment(path: Path) -> Deployment:
    """Read a TOML deployment file."""
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DeploymentError(f"cannot read deployment file {path}: {exc}") from None
    front = doc.get("frontend", {})
    unknown = set(front) - {"host", "grpc_port", "http_port", "metrics_port", "device", "threads"}
    if unknown:
        raise DeploymentError(f"{path}: unknown [frontend] keys {sorted(unknown)}")
    models = tuple(_model(entry, path.parent) for entry in doc.get("models", []))
    return Deployment(models=models, **front)


def _model(entry: dict[str, Any], root: Path) -> ModelDeployment:
    entry = dict(entry)
    name = entry.pop("name", None)
    if not isinstance(name, str):
        raise DeploymentError(f"each [[models]] entry needs a name, got {name!r}")
    try:
        base = root / entry.pop("base")
    except KeyError:
        raise DeploymentError(f"model {name!r}: missing 'base' bundle path") from None
    parity = entry.pop("parity", None)
    fixed = {
        key: entry.pop(key) for key in ("k", "data_instances", "parity_instances") if key in entry
    }
    mode = Mode(entry.pop("mode", "coded"))
    inject = dict(parse_injection(text) for text in entry.pop("inject", []))
    if "partial" in entry:
        entry["partial"] = PartialPolicy(entry["partial"])
    if "default_output" in entry:
        entry["default_output"] = tuple(entry["default_output"])
    unknown = set(entry) - MODEL_SETTINGS
    if unknown:
        raise DeploymentError(
            f"model {name!r}: unknown settings {sorted(unknown)}; known: {sorted(MODEL_SETTINGS)}"
        )
    return ModelDeployment(
        name=name,
        base=base,
        parity=root / parity if isinstance(parity, str) else None,
        parities=tuple(root / p for p in parity) if isinstance(parity, list) else (),
        mode=mode,
        inject=inject,
        settings=entry,
        **fixed,
    )
