"""``parm frontend --config FILE``: the frontend alone, in front of instances run elsewhere.

This is the frontend's entry point in a container (docker compose, Kubernetes, ``parm
deploy docker``): the instances are other containers, named by address.  The file is
TOML, and its keys are the fields of `frontend.config.FrontendConfig` and
`frontend.config.ModelConfig`::

    [frontend]
    host = "0.0.0.0"
    grpc_port = 8001
    http_port = 8000
    metrics_port = 8002

    [[models]]
    name = "digits"
    base_bundle = "/bundles/digits-base"
    parity_bundle = "/bundles/digits-parity-k2"
    k = 2
    mode = "coded"
    group_timeout_ms = 10
    data = [
      { name = "data-0", grpc = "data-0:8001", stream = "data-0:8003" },
      { name = "data-1", grpc = "data-1:8001", stream = "data-1:8003" },
    ]
    parity = [{ name = "parity-0", grpc = "parity-0:8001", stream = "parity-0:8003" }]

``stream`` (parm's framed-TCP data port) is optional: without it the frontend uses the
instance's gRPC stream, so any v2 server can be an instance.  Relative bundle paths
are resolved against the file's folder.  `dump_frontend_config` writes the same format
(the Docker launcher generates the frontend's file with it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import signal
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from deploy.spec import DeploymentError
from frontend.config import FrontendConfig, InstanceAddress, ModelConfig
from frontend.events import Mode, PartialPolicy
from frontend.server import Frontend

log = logging.getLogger(__name__)

FRONTEND_KEYS = (
    *("host", "grpc_port", "http_port", "metrics_port"),
    *("max_request_bytes", "max_deadline_ms"),
)
MODEL_KEYS = {f.name for f in dataclasses.fields(ModelConfig)}
ADDRESS_KEYS = {"name", "grpc", "stream", "parity_index"}


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
    entry = dict(entry)
    name = entry.get("name")
    unknown = set(entry) - MODEL_KEYS
    if unknown:
        raise DeploymentError(f"model {name!r}: unknown keys {sorted(unknown)}")
    for key in ("base_bundle", "parity_bundle"):
        if key in entry:
            entry[key] = root / entry[key]
    entry["data"] = _addresses(entry.get("data", []), name, "data")
    entry["parity"] = _addresses(entry.get("parity", []), name, "parity")
    if "mode" in entry:
        entry["mode"] = Mode(entry["mode"])
    if "partial" in entry:
        entry["partial"] = PartialPolicy(entry["partial"])
    if "default_output" in entry:
        entry["default_output"] = tuple(entry["default_output"])
    return ModelConfig(**entry)


def _addresses(entries: Any, model: object, pool: str) -> tuple[InstanceAddress, ...]:
    if not isinstance(entries, list):
        raise DeploymentError(f"model {model!r}: {pool} must be a list of instances")
    addresses = []
    for entry in entries:
        if not isinstance(entry, dict) or not {"name", "grpc"} <= set(entry) <= ADDRESS_KEYS:
            raise DeploymentError(
                f"model {model!r}: each {pool} instance needs name and grpc (and may have "
                f"stream), got {entry!r}"
            )
        addresses.append(InstanceAddress(**entry))
    return tuple(addresses)


# ---------------------------------------------------------------- writing


def dump_frontend_config(config: FrontendConfig) -> str:
    """The TOML text that `load_frontend_config` reads back as ``config``."""
    lines = ["[frontend]"]
    for key in FRONTEND_KEYS:
        value = getattr(config, key)
        if value is not None:
            lines.append(f"{key} = {_toml(value)}")
    defaults = ModelConfig("_", Path(), (InstanceAddress("_", "_"),))
    for model in config.models:
        lines += ["", "[[models]]"]
        for field in dataclasses.fields(ModelConfig):
            value = getattr(model, field.name)
            always = field.name in ("name", "base_bundle", "data")
            if value is not None and (always or value != getattr(defaults, field.name)):
                lines.append(f"{field.name} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _toml(value: object) -> str:
    """A TOML value: JSON's strings and numbers are TOML's, lists and tables differ."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mode | PartialPolicy):
        return json.dumps(value.value)
    if isinstance(value, Path):
        return json.dumps(str(value))
    if isinstance(value, InstanceAddress):
        defaults = {"stream": None, "parity_index": 0}  # left out: files stay short
        fields = {k: v for k, v in dataclasses.asdict(value).items() if defaults.get(k, ...) != v}
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in fields.items()) + " }"
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, str | int | float):
        return json.dumps(value)
    raise TypeError(f"no TOML form for {value!r}")


# ---------------------------------------------------------------- serving


async def serve_frontend(config: FrontendConfig) -> None:
    """Serve until SIGTERM or SIGINT, then stop in order and restore the signal handlers.

    The frontend does not wait for its instances: in a container they may start after
    it.  It answers UNAVAILABLE (HTTP 503) and reports not-ready until they are up,
    and logs when every model is ready.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    frontend = Frontend(config)
    announce: asyncio.Task[None] | None = None
    try:
        await frontend.start()
        announce = loop.create_task(_announce_ready(frontend), name="announce-ready")
        await stop.wait()
        log.info("frontend stopping")
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
        if announce is not None:
            announce.cancel("frontend stopping")
            with contextlib.suppress(asyncio.CancelledError):
                await announce
        await frontend.stop()


async def _announce_ready(frontend: Frontend) -> None:
    await asyncio.gather(*(service.wait_ready() for service in frontend.services.values()))
    log.info("ready: every model has an instance up (%s)", ", ".join(frontend.services))
