"""The deployment subcommands of ``parm`` (`cli.main` adds them to its parser).

parm up --http-port P --metrics-port Q   the frontend's HTTP API and /metrics ports
parm frontend --config FILE              the frontend alone (in a container)
parm deploy docker up|down               containers on one or more Docker hosts
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any

from deploy.spec import Deployment

DEFAULT_HTTP_PORT = 8000
DEFAULT_METRICS_PORT = 8002
LOCAL_ENGINE = "unix:///var/run/docker.sock"


def _port_or_off(text: str) -> int | str:
    if text == "off":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number or 'off', got {text!r}") from None


def add_http_ports(up: argparse.ArgumentParser) -> None:
    """``--http-port`` and ``--metrics-port`` on ``parm up``."""
    up.add_argument(
        "--http-port",
        type=_port_or_off,
        metavar="PORT|off",
        help=f"KServe v2 REST and Clipper REST (default: the file's, else {DEFAULT_HTTP_PORT})",
    )
    up.add_argument(
        "--metrics-port",
        type=_port_or_off,
        metavar="PORT|off",
        help=f"Prometheus /metrics (default: the file's, else {DEFAULT_METRICS_PORT})",
    )


def with_http_ports(deployment: Deployment, args: argparse.Namespace) -> Deployment:
    """The options over the deployment file's ports; ``off`` turns a server off."""

    def choose(option: int | str | None, configured: int | None, default: int) -> int | None:
        if option == "off":
            return None
        if isinstance(option, int):
            return option
        return default if configured is None else configured

    return dataclasses.replace(
        deployment,
        http_port=choose(args.http_port, deployment.http_port, DEFAULT_HTTP_PORT),
        metrics_port=choose(args.metrics_port, deployment.metrics_port, DEFAULT_METRICS_PORT),
    )


# ---------------------------------------------------------------- parm frontend


def add_frontend(sub: Any) -> None:
    frontend = sub.add_parser("frontend", help="run the frontend alone, in front of instances")
    frontend.add_argument(
        "--config", type=Path, required=True, help="TOML file: ports, models, instance addresses"
    )
    frontend.set_defaults(run=_frontend)


def _frontend(args: argparse.Namespace) -> int:
    from common.runtime import run_loop
    from deploy.frontend_file import load_frontend_config, serve_frontend

    run_loop(serve_frontend(load_frontend_config(args.config)))
    return 0


# ---------------------------------------------------------------- parm deploy docker


def add_deploy(sub: Any) -> None:
    docker = (
        sub.add_parser("deploy", help="deploy to Docker hosts")
        .add_subparsers(required=True, metavar="TARGET")
        .add_parser("docker", help="containers on one or more Docker hosts (Docker SDK)")
        .add_subparsers(required=True, metavar="ACTION")
    )
    engine = os.environ.get("DOCKER_HOST", LOCAL_ENGINE)
    up = docker.add_parser("up", help="place and start a deployment's containers")
    down = docker.add_parser("down", help="stop and remove a deployment's containers")
    for parser in (up, down):
        parser.add_argument(
            "--host",
            action="append",
            metavar="URL[,address=A][,gpus=N]",
            help=f"a Docker engine (repeat for several; default: $DOCKER_HOST or {engine})",
        )
        parser.add_argument("--name", default="parm", help="deployment label (default: parm)")
    up.add_argument("--config", type=Path, required=True, help="TOML deployment file")
    up.add_argument(
        "--bundles", required=True, help="folder holding the bundles, the same on every host"
    )
    up.add_argument("--frontend-host", help="URL of the host for the frontend (default: first)")
    up.add_argument("--image-frontend", default="parm-frontend:latest")
    up.add_argument("--image-gpu", default="parm-model:cuda", help="instances on GPU hosts")
    up.add_argument("--image-cpu", default="parm-model:cpu", help="instances on CPU hosts")
    up.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    up.set_defaults(run=_docker_up)
    down.set_defaults(run=_docker_down)


def _hosts(args: argparse.Namespace) -> list[Any]:
    from deploy.placement import Host

    texts = args.host or [os.environ.get("DOCKER_HOST", LOCAL_ENGINE)]
    return [Host.parse(text) for text in texts]


def _docker_up(args: argparse.Namespace) -> int:
    from deploy import docker
    from deploy.spec import load_deployment

    hosts = _hosts(args)  # for the instances
    front = next((h for h in hosts if h.url == args.frontend_host), None)
    if args.frontend_host and front is None:  # a host of its own, for the frontend only
        front = _hosts(argparse.Namespace(host=[args.frontend_host]))[0]
    images = docker.Images(args.image_frontend, args.image_gpu, args.image_cpu)
    deployment = load_deployment(args.config)
    plan = docker.plan(
        deployment, hosts, args.bundles, name=args.name, images=images, frontend_host=front
    )
    for spec in plan.containers:
        gpu = "cpu" if spec.gpu is None else f"gpu {spec.gpu}"
        print(f"{spec.host.url:<32} {spec.name:<32} {spec.image:<24} {gpu}")
    if args.dry_run:
        print(f"\n# {docker.FRONTEND_FILE}\n{plan.containers[-1].files[docker.FRONTEND_FILE]}")
        return 0
    every = {h.url: h for h in [*hosts, plan.frontend_host]}
    engines = {url: docker.connect(host) for url, host in every.items()}
    docker.up(plan, engines)
    front_host = plan.frontend_host.address
    print(f"started; frontend: grpc {front_host}:{plan.frontend.grpc_port}, ", end="")
    print(f"http http://{front_host}:{plan.frontend.http_port}")
    print("Prometheus targets: " + ", ".join(plan.scrape_targets()))
    return 0


def _docker_down(args: argparse.Namespace) -> int:
    from deploy import docker

    hosts = _hosts(args)
    removed = docker.down(args.name, [docker.connect(h) for h in hosts])
    print(f"removed {len(removed)} containers labelled parm.deployment={args.name}")
    for name in removed:
        print("  " + name)
    return 0


def add_network(p: argparse.ArgumentParser) -> None:
    """``--network``, ``--link-mbit`` and ``--link-queue-ms``: where the instances run."""
    p.add_argument(
        "--network", choices=["loopback", "netns"],
        help="loopback (default): instances are processes here; netns: each on a host of its "
        "own (a network namespace; needs root) with a rate-limited link",
    )  # fmt: skip
    p.add_argument("--link-mbit", type=float, help="netns: each host's link rate, both ways")
    p.add_argument(
        "--link-queue-ms", type=float, help="netns: how long a full link queue takes to drain"
    )
