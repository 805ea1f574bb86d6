"""The deployment subcommands: ``parm up`` HTTP/metrics ports and ``parm deploy docker``."""

from __future__ import annotations

import argparse
import tomllib
from pathlib import Path

import pytest

from cli.deploy import with_http_ports
from cli.main import main
from deploy.spec import Deployment, ModelDeployment, load_deployment


def deployment(**ports: int | None) -> Deployment:
    return Deployment((ModelDeployment("m", Path("b"), Path("p")),), **ports)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "configured", "expected"),
    [
        ((None, None), {}, (8000, 8002)),  # parm up: on by default
        ((None, None), {"http_port": 9000, "metrics_port": 9002}, (9000, 9002)),  # the file's
        ((8080, "off"), {"http_port": 9000, "metrics_port": 9002}, (8080, None)),  # options win
        (("off", 0), {}, (None, 0)),  # 0: any free port
    ],
)
def test_http_ports_of_parm_up(
    options: tuple[int | str | None, int | str | None],
    configured: dict[str, int],
    expected: tuple[int | None, int | None],
) -> None:
    args = argparse.Namespace(http_port=options[0], metrics_port=options[1])
    chosen = with_http_ports(deployment(**configured), args)
    assert (chosen.http_port, chosen.metrics_port) == expected


def test_a_deployment_file_may_set_the_ports(tmp_path: Path) -> None:
    path = tmp_path / "deploy.toml"
    path.write_text(
        "[frontend]\nhttp_port = 18000\nmetrics_port = 18002\n\n"
        '[[models]]\nname = "m"\nbase = "b"\nparity = "p"\n'
    )
    loaded = load_deployment(path)
    assert (loaded.http_port, loaded.metrics_port) == (18000, 18002)


def test_an_unknown_port_word_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["up", "--http-port", "never"])
    assert "expected a port number or 'off', got 'never'" in capsys.readouterr().err


def test_deploy_docker_dry_run_prints_the_plan_and_the_frontend_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deploy.toml"
    path.write_text(
        '[[models]]\nname = "digits"\nbase = "digits-base"\nparity = "digits-parity-k2"\n'
    )
    hosts = [
        "--host",
        "ssh://gpu0,gpus=1",
        "--host",
        "ssh://gpu1,gpus=1",
        "--host",
        "tcp://cpu:2376",
    ]
    argv = ["deploy", "docker", "up", "--config", str(path), "--bundles", "/srv/b", *hosts]
    assert main([*argv, "--dry-run"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()[:4]]
    assert rows == [
        ["ssh://gpu0", "parm-digits-data-0", "parm-model:cuda", "gpu", "0"],
        ["ssh://gpu1", "parm-digits-data-1", "parm-model:cuda", "gpu", "0"],
        ["tcp://cpu:2376", "parm-digits-parity-0", "parm-model:cpu", "cpu"],
        ["ssh://gpu0", "parm-frontend", "parm-frontend:latest", "cpu"],
    ]
    frontend_file = tomllib.loads(out.split("# /etc/parm/frontend.toml\n", 1)[1])
    (model,) = frontend_file["models"]
    assert model["parity_instances"] == [
        {"name": "parity-0", "grpc": "cpu:9000", "stream": "cpu:9001"}
    ]
    assert model["parity"] == "/bundles/digits-parity-k2"  # the deployment file's vocabulary


def test_a_frontend_host_of_its_own_gets_no_instances(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "deploy.toml"
    path.write_text('[[models]]\nname = "m"\nbase = "b"\nparity = "p"\n')
    hosts = ["--host", "ssh://gpu0,gpus=1", "--frontend-host", "ssh://edge"]
    argv = ["deploy", "docker", "up", "--config", str(path), "--bundles", "/b", *hosts]
    assert main([*argv, "--dry-run"]) == 0
    rows = [line.split()[:2] for line in capsys.readouterr().out.splitlines()[:4]]
    assert [host for host, _ in rows] == ["ssh://gpu0"] * 3 + ["ssh://edge"]
    assert rows[-1][1] == "parm-frontend"
