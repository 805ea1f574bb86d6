"""``parm frontend --config FILE``: the file format, and the entry point as a real process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from deploy.frontend_file import (
    dump_frontend_config,
    frontend_config_from,
    load_frontend_config,
)
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
    config = FrontendConfig(
        (model,), host="0.0.0.0", grpc_port=1, http_port=2, metrics_port=3,
        http_max_requests=7, grpc_max_streams=9, grpc_max_calls=5, shutdown_grace_s=0.5,
        workers=3,
    )  # fmt: skip
    path = tmp_path / "frontend.toml"
    path.write_text(dump_frontend_config(config))
    assert load_frontend_config(path) == config


def test_r_parity_bundles_round_trip_as_one_list(tmp_path: Path) -> None:
    parities = (InstanceAddress("parity-0", "p0:1"), InstanceAddress("parity-1", "p1:1", None, 1))
    model = ModelConfig(
        "lin", tmp_path / "base", (InstanceAddress("data-0", "d:1"),), parity=parities,
        parity_bundles=(tmp_path / "p0", tmp_path / "p1"), r=2, code="linear",
    )  # fmt: skip
    text = dump_frontend_config(FrontendConfig((model,)))
    assert tomllib.loads(text)["models"][0]["parity"] == [
        str(tmp_path / "p0"),
        str(tmp_path / "p1"),
    ]
    assert frontend_config_from(tomllib.loads(text), tmp_path).models == (model,)


def test_the_file_speaks_the_deployment_files_vocabulary(tmp_path: Path) -> None:
    """The keys of a parm up model entry mean the same here; only the instances differ."""
    model = ModelConfig(
        "m", tmp_path / "b", (InstanceAddress("data-0", "h:1"),),
        parity=(InstanceAddress("parity-0", "h:2"),), parity_bundle=tmp_path / "p",
    )  # fmt: skip
    table = tomllib.loads(dump_frontend_config(FrontendConfig((model,))))["models"][0]
    assert set(table) == {"name", "base", "parity", "data_instances", "parity_instances"}
    assert table["data_instances"] == [{"name": "data-0", "grpc": "h:1"}]


def test_a_config_whose_r_is_not_its_parity_count_is_not_written(tmp_path: Path) -> None:
    model = ModelConfig("m", tmp_path, (InstanceAddress("d", "h:1"),), mode=Mode.NONE, r=2)
    with pytest.raises(DeploymentError, match="r=2 with 0 parity bundle"):
        dump_frontend_config(FrontendConfig((model,)))


FORMER = """
[[models]]
name = "m"
base_bundle = "base"
parity_bundle = "parity"
k = 3
r = 1
group_timeout_ms = 5
data = [{ name = "data-0", grpc = "h:1", stream = "h:2" }]
parity = [{ name = "parity-0", grpc = "h:3" }]
"""


def test_the_former_spelling_is_read_with_a_warning_naming_the_new_keys(tmp_path: Path) -> None:
    path = tmp_path / "frontend.toml"
    path.write_text(FORMER)
    with pytest.warns(FutureWarning, match="base_bundle -> base.*data -> data_instances"):
        config = load_frontend_config(path)
    current = FORMER.replace("base_bundle", "base").replace("parity_bundle", "parity")
    current = current.replace("\ndata =", "\ndata_instances =").replace(
        "parity = [", "parity_instances = ["
    )
    path.write_text(current.replace("r = 1\n", ""))
    assert load_frontend_config(path) == config
    (model,) = config.models
    assert (model.base_bundle, model.parity_bundle) == (tmp_path / "base", tmp_path / "parity")
    assert [a.name for a in model.data + model.parity] == ["data-0", "parity-0"]
    assert (model.k, model.r, model.group_timeout_ms) == (3, 1, 5.0)


def test_the_former_spelling_keeps_its_parity_bundle_list_and_r(tmp_path: Path) -> None:
    doc = {
        "models": [
            {
                "name": "m", "base_bundle": "b", "parity_bundles": ["p0", "p1"], "r": 2,
                "code": "linear", "data": [{"name": "d", "grpc": "h:1"}],
            }
        ]
    }  # fmt: skip
    with pytest.warns(FutureWarning, match="parity_bundles -> parity"):
        (model,) = frontend_config_from(doc, tmp_path).models
    assert (model.r, model.parity_bundle_paths()) == (2, (tmp_path / "p0", tmp_path / "p1"))


def test_a_key_in_both_spellings_is_refused(tmp_path: Path) -> None:
    doc = {"models": [{"name": "m", "base": "b", "base_bundle": "b", "data_instances": []}]}
    with pytest.raises(DeploymentError, match=r"both 'base_bundle' \(former spelling\) and 'base'"):
        frontend_config_from(doc, tmp_path)


MODEL = '[[models]]\nname = "m"\nbase = "b"\n'


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[frontend]\nport = 1\n", r"unknown \[frontend\] keys \['port'\]"),
        ("[frontend]\n", "no \\[\\[models\\]\\]"),
        ("[backend]\n", r"unknown sections \['backend'\]"),
        (
            MODEL + 'colour = 1\ndata_instances = [{ name = "d", grpc = "x:1" }]\n',
            r"model 'm': unknown keys \['colour'\]",
        ),
        (
            MODEL + 'data_instances = [{ name = "d" }]\n',
            "each of data_instances needs name and grpc",
        ),
        (MODEL + "data_instances = 2\n", "data_instances must be a list of instances"),
        (MODEL, "needs at least one data instance"),
        (MODEL.replace('base = "b"', "parity = 1"), "missing 'base'"),
        (MODEL + "parity = 3\n", "parity must be a path or a list of paths"),
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


def parm_frontend(config: FrontendConfig, path: Path) -> subprocess.Popen[str]:
    """``parm frontend --config path`` with ``config`` written there, as a process."""
    path.write_text(dump_frontend_config(config))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    cmd = [sys.executable, "-m", "cli", "frontend", "--config", str(path)]
    return subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)


def test_parm_frontend_serves_before_its_instances_and_stops_on_sigterm(tmp_path: Path) -> None:
    """The entry point of the frontend image, as a process: live at once, not ready while
    its instance is missing, and SIGTERM stops it cleanly."""
    bundle = make_bundle(tmp_path / "base", name="m")
    http = free_port()
    model = ModelConfig("m", bundle, (InstanceAddress("data-0", "127.0.0.1:9"),), mode=Mode.NONE)
    config = FrontendConfig((model,), grpc_port=free_port(), http_port=http, metrics_port=0)
    proc = parm_frontend(config, tmp_path / "frontend.toml")
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


def test_parm_frontend_with_workers_serves_on_one_port_and_leaves_no_worker(
    tmp_path: Path,
) -> None:
    """``workers = 2``: both processes answer on the shared ports, /metrics shows both,
    and SIGTERM stops the supervisor and its workers."""
    bundle = make_bundle(tmp_path / "base", name="m")
    http, metrics = free_port(), free_port()
    model = ModelConfig("m", bundle, (InstanceAddress("data-0", "127.0.0.1:9"),), mode=Mode.NONE)
    config = FrontendConfig(
        (model,), grpc_port=free_port(), http_port=http, metrics_port=metrics, workers=2
    )
    proc = parm_frontend(config, tmp_path / "frontend.toml")
    try:
        text = _when_both_workers_listen(proc, f"http://127.0.0.1:{metrics}/metrics")
        assert get(f"http://127.0.0.1:{http}/v2/health/ready") == (400, {"ready": False})
        children = _children(proc.pid)  # the workers, and multiprocessing's resource tracker
        spawned = [pid for pid in children if b"spawn_main" in _cmdline(pid)]
        assert len(spawned) == 2
        assert 'parm_model_ready{frontend_worker="1",model="m"} 0.0' in text
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "frontend stopping: draining 2 workers" in err
    assert not any(Path(f"/proc/{pid}").exists() for pid in spawned)  # reaped by parm


def _when_both_workers_listen(proc: subprocess.Popen[str], url: str) -> str:
    """The merged metrics, once both workers are up (polled: a process, not a loop)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                text: str = r.read().decode()
            if all(f'parm_model_ready{{frontend_worker="{w}"' in text for w in "01"):
                return text
        except OSError:  # not listening yet, or busy starting
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "it did not start"
        time.sleep(0.1)


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return found


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()
