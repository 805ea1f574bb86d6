"""``parm frontend --config FILE``: the file format, and the entry point as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from deploy.frontend_file import dump_frontend_config, load_frontend_config
from deploy.spec import DeploymentError
from frontend.config import FrontendConfig, InstanceAddress, ModelConfig
from frontend.events import Mode, PartialPolicy
from tests.model_container.container_process import REPO_ROOT, free_port, make_bundle

SHIPPED = {
    "compose": REPO_ROOT / "deploy/compose/frontend.toml",
    "k8s": REPO_ROOT / "deploy/k8s/base/frontend.toml",
}


@pytest.mark.parametrize("where", SHIPPED)
def test_the_shipped_files_load(where: str) -> None:
    config = load_frontend_config(SHIPPED[where])
    (model,) = config.models
    assert (config.host, config.http_port, config.grpc_port, config.metrics_port) == (
        "0.0.0.0",
        8000,
        8001,
        8002,
    )
    assert model.name == "digits" and model.k == 2 and model.mode is Mode.CODED
    assert model.base_bundle == Path("/bundles/digits-base")
    assert [a.name for a in model.data + model.parity] == ["data-0", "data-1", "parity-0"]
    assert all(a.stream is not None for a in model.data + model.parity)


def test_dump_and_load_round_trip(tmp_path: Path) -> None:
    model = ModelConfig(
        "m",
        tmp_path / "base",
        (InstanceAddress("data-0", "h0:1", "h0:2"), InstanceAddress("data-1", "h1:1")),
        parity=(InstanceAddress("parity-0", "h2:1", "h2:2"),),
        parity_bundle=tmp_path / "parity",
        mode=Mode.REPLICATE,
        partial=PartialPolicy.UNPROTECTED,
        slo_ms=250.0,
        default_output=(0.5, 1.5),
    )
    config = FrontendConfig((model,), host="0.0.0.0", grpc_port=1, http_port=2, metrics_port=3)
    path = tmp_path / "frontend.toml"
    path.write_text(dump_frontend_config(config))
    assert load_frontend_config(path) == config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[frontend]\nport = 1\n", r"unknown \[frontend\] keys \['port'\]"),
        ("[frontend]\n", "no \\[\\[models\\]\\]"),
        ("[backend]\n", r"unknown sections \['backend'\]"),
        (
            '[[models]]\nname = "m"\nbase_bundle = "b"\ncolour = 1\n'
            'data = [{ name = "d", grpc = "x:1" }]\n',
            r"model 'm': unknown keys \['colour'\]",
        ),
        (
            '[[models]]\nname = "m"\nbase_bundle = "b"\ndata = [{ name = "d" }]\n',
            "each data instance needs name and grpc",
        ),
        ('[[models]]\nname = "m"\nbase_bundle = "b"\n', "needs at least one data instance"),
        ("not toml ][", "cannot read frontend file"),
    ],
)
def test_bad_files_say_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "frontend.toml"
    path.write_text(text)
    with pytest.raises(DeploymentError, match=message):
        load_frontend_config(path)


def get(url: str) -> tuple[int, object]:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_parm_frontend_serves_before_its_instances_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The entry point of the frontend image, as a process: live at once, not ready while
    its instance is missing, and SIGTERM stops it cleanly."""
    bundle = make_bundle(tmp_path / "base", name="m")
    http = free_port()
    model = ModelConfig("m", bundle, (InstanceAddress("data-0", "127.0.0.1:9"),), mode=Mode.NONE)
    config = FrontendConfig((model,), grpc_port=free_port(), http_port=http, metrics_port=0)
    path = tmp_path / "frontend.toml"
    path.write_text(dump_frontend_config(config))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "cli", "frontend", "--config", str(path)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                live = get(f"http://127.0.0.1:{http}/v2/health/live")
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None and time.monotonic() < deadline, "it did not start"
                time.sleep(0.1)
        assert live == (200, {"live": True})
        assert get(f"http://127.0.0.1:{http}/v2/health/ready") == (400, {"ready": False})
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "frontend stopping" in err
