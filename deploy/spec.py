"""What to deploy: models, their bundles, instance counts, settings and fault injection.

A deployment file (``parm up --config``) is TOML::

    [frontend]
    grpc_port = 8001
    http_port = 8000          # KServe v2 REST and Clipper REST (parm up: 8000 by default)
    metrics_port = 8002       # Prometheus /metrics (parm up: 8002 by default)
    workers = 1               # frontend processes sharing these ports (deploy.workers)

    [[models]]
    name = "digits"
    base = "bundles/digits-base"
    parity = "bundles/digits-parity-k2"   # or a list: one per parity index (r > 1)
    k = 2
    mode = "coded"            # coded | equal-resources | replicate | none
    data_instances = 2
    parity_instances = 1
    inject = ["data-0:delay_ms=200,prob=0.1"]
    # code = "berrut" needs no parity bundle (its parity instances serve the base
    # model); then r = 2 says how many parities each group gets
    # code = "learned" takes code_bundle = "runs/learned-k2" (parm train learned's
    # folder) instead: the frontend runs its encoder and decoder, the parity instances
    # serve the base model, and r is the code's

    # any other key is a frontend.config.ModelConfig setting, e.g.
    group_timeout_ms = 10
    slo_ms = 1000

The standalone frontend's file (``parm frontend --config``, `deploy.frontend_file`) speaks
the same vocabulary: `read_model_entry` reads what both say about a model (``name``,
``base``, ``parity``, ``k``, ``mode`` and the settings).  Only ``data_instances`` and
``parity_instances`` take another form there: where the instances are (a list of
addresses) rather than how many to start.  Relative paths are resolved against the
file's folder.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.bundle import learned_code_info
from common.codes import BASE_ANSWERS_PARITY, LEARNED, TRAINING_FREE
from frontend.config import InstanceAddress, ModelConfig
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
    #: r of a training-free code (``berrut``), which has no parity bundles to count
    parities_per_group: int | None = None

    @property
    def parity_bundles(self) -> tuple[Path, ...]:
        """The parity model of each parity index (r of them)."""
        if self.parities:
            return self.parities
        return (self.parity,) if self.parity is not None else ()

    @property
    def base_answers_parity(self) -> bool:
        """Whether the parity instances serve the base model (no parity model exists)."""
        return self.settings.get("code") in BASE_ANSWERS_PARITY

    @property
    def r(self) -> int:
        if self.settings.get("code") == LEARNED and self.parities_per_group is None:
            return learned_code_info(self.settings["code_bundle"]).r
        if self.base_answers_parity:
            return self.parities_per_group or 1
        return max(len(self.parity_bundles), 1)

    def parity_index(self, instance: str) -> int:
        """Parity instances serve the r parity models in turn."""
        return int(instance.removeprefix("parity-")) % self.r

    def __post_init__(self) -> None:
        if self.data_instances < 1 or self.parity_instances < 0:
            raise DeploymentError(
                f"model {self.name!r}: need data_instances >= 1 and parity_instances >= 0"
            )
        self._check_code()
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

    def _check_code(self) -> None:
        code = self.settings.get("code")
        if self.base_answers_parity and self.parity_bundles:
            raise DeploymentError(
                f"model {self.name!r}: the {code} code takes no parity bundle; its parity "
                "instances serve the base model"
            )
        if not self.base_answers_parity and self.parities_per_group is not None:
            raise DeploymentError(
                f"model {self.name!r}: r is the number of parity bundles for code "
                f"{code or 'sum'!r}; only a training-free code ({sorted(TRAINING_FREE)}) "
                f"or {LEARNED!r} takes r"
            )
        r = self.parities_per_group
        if r is not None and (not isinstance(r, int) or r < 1):
            raise DeploymentError(f"model {self.name!r}: r must be a whole number >= 1, got {r!r}")
        coded = self.mode is Mode.CODED and self.parity_instances
        if coded and not self.parity_bundles and not self.base_answers_parity:
            raise DeploymentError(f"model {self.name!r}: coded mode needs a parity bundle")

    def instance_names(self) -> list[str]:
        return [f"data-{i}" for i in range(self.data_instances)] + [
            f"parity-{i}" for i in range(self.parity_instances)
        ]

    def bundle_for(self, instance: str) -> Path:
        """What an instance runs: the parity model only in coded mode with a trained code."""
        parity_model = self.mode is Mode.CODED and not self.base_answers_parity
        if instance.startswith("parity-") and parity_model:
            return self.parity_bundles[self.parity_index(instance)]
        return self.base

    def model_config(
        self,
        data: tuple[InstanceAddress, ...],
        parity: tuple[InstanceAddress, ...],
        bundle_dir: Path | None = None,
    ) -> ModelConfig:
        """The frontend's settings of this model over its instances at ``data``/``parity``.

        Each parity instance gets the index of the parity model it serves.  ``bundle_dir``
        is where the bundles are seen from (a container's mount), if not where they are.
        """

        def seen(path: Path) -> Path:
            return path if bundle_dir is None else bundle_dir / path.name

        indexed = tuple(
            dataclasses.replace(a, parity_index=self.parity_index(a.name)) for a in parity
        )
        parities = tuple(seen(p) for p in self.parity_bundles)
        entry = ModelEntry(
            self.name, seen(self.base), parities, self.k, self.mode, {**self.settings}
        )
        return entry.model_config(data, indexed, r=self.r)


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
    #: frontend processes sharing the client ports (``deploy.workers``); 1: in-process
    frontend_workers: int = 1

    def __post_init__(self) -> None:
        names = [m.name for m in self.models]
        if not names or len(set(names)) != len(names):
            raise DeploymentError(f"expected one or more uniquely named models, got {names}")
        workers = self.frontend_workers
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise DeploymentError(
                f"frontend workers: expected a whole number >= 1, got {workers!r}"
            )


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
    front = dict(doc.get("frontend", {}))
    unknown = set(front) - {"host", "grpc_port", "http_port", "metrics_port", "device", "threads"}
    unknown -= {"workers"}
    if unknown:
        raise DeploymentError(f"{path}: unknown [frontend] keys {sorted(unknown)}")
    if "workers" in front:
        front["frontend_workers"] = front.pop("workers")
    models = tuple(_model(entry, path.parent) for entry in doc.get("models", []))
    return Deployment(models=models, **front)


def _model(entry: Mapping[str, Any], root: Path) -> ModelDeployment:
    model = read_model_entry(entry, root, own=(*INSTANCE_KEYS, "inject", "r"))
    counts = {key: model.own[key] for key in INSTANCE_KEYS if key in model.own}
    wrong = {key: n for key, n in counts.items() if not isinstance(n, int)}
    if wrong:
        raise DeploymentError(
            f"model {model.name!r}: parm up starts a number of instances, got {wrong}"
        )
    parities = model.parities
    return ModelDeployment(
        name=model.name,
        base=model.base,
        parity=parities[0] if len(parities) == 1 else None,
        parities=parities if len(parities) > 1 else (),
        k=model.k,
        mode=model.mode,
        inject=dict(parse_injection(text) for text in model.own.get("inject", [])),
        parities_per_group=model.own.get("r"),
        settings=model.settings,
        **counts,
    )


# ---------------------------------------------------------------- the shared vocabulary

#: a model's instances: how many to start (parm up) or where they are (parm frontend)
INSTANCE_KEYS = ("data_instances", "parity_instances")


@dataclass(frozen=True)
class ModelEntry:
    """What a ``[[models]]`` entry says about the model itself, in either file."""

    name: str
    base: Path
    #: the parity bundle of each parity index (``parity``: one path, or a list of r)
    parities: tuple[Path, ...] = ()
    k: int = 2
    mode: Mode = Mode.CODED
    #: further frontend.config.ModelConfig settings, as their types
    settings: dict[str, Any] = field(default_factory=dict)
    #: the keys its file reads itself (``own``), as written
    own: dict[str, Any] = field(default_factory=dict)

    def model_config(
        self,
        data: tuple[InstanceAddress, ...],
        parity: tuple[InstanceAddress, ...] = (),
        r: int | None = None,
    ) -> ModelConfig:
        """The frontend's settings of this model over instances at ``data``/``parity``."""
        bundles = self.parities
        return ModelConfig(
            name=self.name,
            base_bundle=self.base,
            data=data,
            parity=parity,
            parity_bundle=bundles[0] if len(bundles) == 1 else None,
            parity_bundles=bundles if len(bundles) > 1 else (),
            r=max(len(bundles), 1) if r is None else r,
            mode=self.mode,
            k=self.k,
            **self.settings,
        )


def read_model_entry(entry: Mapping[str, Any], root: Path, own: Collection[str]) -> ModelEntry:
    """Read one ``[[models]]`` entry; ``own`` are the keys its file reads itself.

    Any other key must be a setting of `frontend.config.ModelConfig`; relative bundle
    paths are resolved against ``root``.
    """
    entry = dict(entry)
    name = entry.pop("name", None)
    if not isinstance(name, str):
        raise DeploymentError(f"each [[models]] entry needs a name, got {name!r}")
    unknown = set(entry) - MODEL_SETTINGS - {"base", "parity", "k", "mode"} - set(own)
    if unknown:
        raise DeploymentError(
            f"model {name!r}: unknown keys {sorted(unknown)}; "
            f"known: {sorted({'base', 'parity', 'k', 'mode', *own, *MODEL_SETTINGS})}"
        )
    try:
        base = root / entry.pop("base")
    except KeyError:
        raise DeploymentError(f"model {name!r}: missing 'base' bundle path") from None
    parity = entry.pop("parity", [])
    parities = [parity] if isinstance(parity, str) else parity
    if not isinstance(parities, list) or not all(isinstance(p, str) for p in parities):
        raise DeploymentError(f"model {name!r}: parity must be a path or a list of paths")
    mode = Mode(entry.pop("mode", "coded"))
    k = entry.pop("k", 2)
    mine = {key: entry.pop(key) for key in own if key in entry}
    if "partial" in entry:
        entry["partial"] = PartialPolicy(entry["partial"])
    if "default_output" in entry:
        entry["default_output"] = tuple(entry["default_output"])
    if "code_bundle" in entry:
        entry["code_bundle"] = root / entry["code_bundle"]
    parity_paths = tuple(root / p for p in parities)
    return ModelEntry(name, base, parity_paths, k, mode, settings=entry, own=mine)
