"""``parm frontend --config FILE``: the frontend alone, in front of instances run elsewhere.

This is the frontend's entry point in a container (docker compose, Kubernetes, ``parm
deploy docker``): the instances are other containers, named by address.  The file is
TOML in the vocabulary of ``parm up``'s deployment files (`deploy.spec`: ``base``,
``parity``, ``k``, ``mode`` and any `frontend.config.ModelConfig` setting), except that
``data_instances`` and ``parity_instances`` say where the instances are rather than how
many to start::

    [frontend]
    host = "0.0.0.0"
    grpc_port = 8001
    http_port = 8000
    metrics_port = 8002
    workers = 1          # frontend processes sharing these ports (SO_REUSEPORT)

    [[models]]
    name = "digits"
    base = "/bundles/digits-base"
    parity = "/bundles/digits-parity-k2"   # or a list: one per parity index (r > 1)
    k = 2
    mode = "coded"
    group_timeout_ms = 10
    data_instances = [
      { name = "data-0", grpc = "data-0:8001", stream = "data-0:8003" },
      { name = "data-1", grpc = "data-1:8001", stream = "data-1:8003" },
    ]
    parity_instances = [{ name = "parity-0", grpc = "parity-0:8001", stream = "parity-0:8003" }]

``stream`` (parm's framed-TCP data port) is optional: without it the frontend uses the
instance's gRPC stream, so any v2 server can be an instance.  Relative bundle paths
are resolved against the file's folder.  `dump_frontend_config` writes the same format
(the Docker launcher generates the frontend's file with it).

The former spelling (``base_bundle``, ``parity_bundle``/``parity_bundles``, ``data``,
``parity`` as the list of parity instances, ``r``) is still read, with a FutureWarning
naming the new keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import signal
import tomllib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deploy.spec import INSTANCE_KEYS, DeploymentError, read_model_entry
from deploy.workers import FrontendWorkers
from frontend.config import FrontendConfig, InstanceAddress, ModelConfig
from frontend.server import Frontend

log = logging.getLogger(__name__)

FRONTEND_KEYS = (
    *("host", "grpc_port", "http_port", "metrics_port"),
    *("max_request_bytes", "max_deadline_ms"),
    # the front doors' limits (frontend.config.FrontendConfig says what each does)
    *("http_max_connections", "http_max_requests", "http_idle_timeout_s", "http_read_timeout_s"),
    *("grpc_max_connections", "grpc_max_streams", "grpc_max_calls", "grpc_idle_timeout_s"),
    *("grpc_handshake_timeout_s", "stream_max_inflight", "shutdown_grace_s"),
    "workers",  # processes sharing the ports (deploy.workers)
)
ADDRESS_KEYS = {"name", "grpc", "stream", "parity_index"}
#: the frontend file's former key names (ModelConfig's fields) and what they are now
FORMER_KEYS = {
    "base_bundle": "base",
    "parity_bundle": "parity",
    "parity_bundles": "parity",
    "data": "data_instances",
}


def load_frontend_config(path: Path) -> FrontendConfig:
    """Read a standalone frontend's TOML file; DeploymentError says what is wrong."""
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DeploymentError(f"cannot read frontend file {path}: {exc}") from None
    try:
        return frontend_config_from(doc, path.parent)
    except (TypeError, ValueError) as exc:  # DeploymentError is a ValueError
        raise DeploymentError(f"{path}: {exc}") from None


def frontend_config_from(doc: Mapping[str, Any], root: Path) -> FrontendConfig:
    """The FrontendConfig of a parsed file; relative bundle paths are under ``root``."""
    unknown = set(doc) - {"frontend", "models"}
    if unknown:
        raise DeploymentError(f"unknown sections {sorted(unknown)}; expected frontend, models")
    front = dict(doc.get("frontend", {}))
    unknown = set(front) - set(FRONTEND_KEYS)
    if unknown:
        raise DeploymentError(f"unknown [frontend] keys {sorted(unknown)}; known: {FRONTEND_KEYS}")
    models = tuple(_model(entry, root) for entry in doc.get("models", []))
    if not models:
        raise DeploymentError("no [[models]]: the frontend has nothing to serve")
    return FrontendConfig(models=models, **front)


def _model(entry: Mapping[str, Any], root: Path) -> ModelConfig:
    entry, former = _current_spelling(entry)
    own = (*INSTANCE_KEYS, "r") if former else INSTANCE_KEYS
    model = read_model_entry(entry, root, own)
    if former:
        warnings.warn(
            f"model {model.name!r}: the frontend file's keys {former} are deprecated; "
            "write base, parity, data_instances and parity_instances, as in parm up's "
            "deployment files (deploy/frontend_file.py shows the format)",
            FutureWarning,
            stacklevel=2,
        )
    data = _addresses(model.own.get("data_instances", []), model.name, "data_instances")
    parity = _addresses(model.own.get("parity_instances", []), model.name, "parity_instances")
    return model.model_config(data, parity, r=model.own.get("r"))


def _current_spelling(entry: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``entry`` with its former key names renamed, and the renames (``old -> new``)."""
    entry, renames = dict(entry), []
    parity = entry.get("parity")
    if isinstance(parity, list) and any(isinstance(p, dict) for p in parity):
        renames.append(_rename(entry, "parity", "parity_instances"))  # addresses, not paths
    renames += [_rename(entry, old, new) for old, new in FORMER_KEYS.items() if old in entry]
    if renames and "r" in entry:
        renames.append("r (now one per parity bundle)")
    return entry, renames


def _rename(entry: dict[str, Any], old: str, new: str) -> str:
    if new in entry:
        raise DeploymentError(
            f"model {entry.get('name')!r}: both {old!r} (former spelling) and {new!r}"
        )
    entry[new] = entry.pop(old)
    return f"{old} -> {new}"


def _addresses(entries: Any, model: object, pool: str) -> tuple[InstanceAddress, ...]:
    if not isinstance(entries, list):
        raise DeploymentError(f"model {model!r}: {pool} must be a list of instances")
    addresses = []
    for entry in entries:
        if not isinstance(entry, dict) or not {"name", "grpc"} <= set(entry) <= ADDRESS_KEYS:
            raise DeploymentError(
                f"model {model!r}: each of {pool} needs name and grpc (and may have "
                f"stream), got {entry!r}"
            )
        addresses.append(InstanceAddress(**entry))
    return tuple(addresses)


# ---------------------------------------------------------------- writing


def dump_frontend_config(config: FrontendConfig) -> str:
    """The TOML text that `load_frontend_config` reads back as ``config``."""
    # Only launchers write the file; the frontend's image, which only reads it, goes
    # without tomli-w (deploy/docker/frontend.Dockerfile).
    import tomli_w

    front = {key: getattr(config, key) for key in FRONTEND_KEYS}
    doc = {
        "frontend": {key: value for key, value in front.items() if value is not None},
        "models": [_model_table(model) for model in config.models],
    }
    return tomli_w.dumps(doc)


def _model_table(model: ModelConfig) -> dict[str, Any]:
    """``model`` in the file's vocabulary; settings at their default are left out."""
    bundles = model.parity_bundle_paths()
    if model.r != max(len(bundles), 1):
        raise DeploymentError(
            f"model {model.name!r}: r={model.r} with {len(bundles)} parity bundle(s); "
            "the file's r is the number of parity bundles"
        )
    table: dict[str, Any] = {"name": model.name, "base": str(model.base_bundle)}
    if bundles:
        table["parity"] = str(bundles[0]) if len(bundles) == 1 else [str(b) for b in bundles]
    defaults = ModelConfig("_", Path(), (InstanceAddress("_", "_"),))
    for field in dataclasses.fields(ModelConfig):
        value = getattr(model, field.name)
        if field.name in WRITTEN or value is None or value == getattr(defaults, field.name):
            continue
        table[field.name] = value.value if isinstance(value, enum.Enum) else value
    table["data_instances"] = [_address(a) for a in model.data]
    if model.parity:
        table["parity_instances"] = [_address(a) for a in model.parity]
    return table


#: ModelConfig fields that `_model_table` writes under the file's own names
WRITTEN = {"name", "base_bundle", "parity_bundle", "parity_bundles", "r", "data", "parity"}


def _address(address: InstanceAddress) -> dict[str, Any]:
    defaults = {"stream": None, "parity_index": 0}  # left out: files stay short
    fields = dataclasses.asdict(address).items()
    return {key: value for key, value in fields if defaults.get(key, ...) != value}


# ---------------------------------------------------------------- serving


async def serve_frontend(config: FrontendConfig) -> None:
    """Serve until SIGTERM or SIGINT, then stop in order and restore the signal handlers.

    The frontend does not wait for its instances: in a container they may start after
    it.  It answers UNAVAILABLE (HTTP 503) and reports not-ready until they are up,
    and logs when every model is ready.  With ``workers`` > 1 the frontend runs in
    that many processes sharing the ports (`deploy.workers`), supervised from here.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        if config.workers > 1:
            await _serve_workers(FrontendWorkers(config), stop)
        else:
            await _serve_one(Frontend(config), stop)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


async def _serve_one(frontend: Frontend, stop: asyncio.Event) -> None:
    announce: asyncio.Task[None] | None = None
    try:
        await frontend.start()
        announce = asyncio.get_running_loop().create_task(
            _announce_ready(frontend), name="announce-ready"
        )
        await stop.wait()
        log.info("frontend stopping")
    finally:
        if announce is not None:
            announce.cancel("frontend stopping")
            with contextlib.suppress(asyncio.CancelledError):
                await announce
        await frontend.stop()


async def _serve_workers(workers: FrontendWorkers, stop: asyncio.Event) -> None:
    try:
        await workers.start()
        await stop.wait()
        log.info("frontend stopping: draining %d workers", len(workers.workers))
    finally:
        await workers.stop()


async def _announce_ready(frontend: Frontend) -> None:
    await asyncio.gather(*(service.wait_ready() for service in frontend.services.values()))
    log.info("ready: every model has an instance up (%s)", ", ".join(frontend.services))
