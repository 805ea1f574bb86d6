"""``parm``: the command line.  Thin: each subcommand parses options and calls a package.

parm up        start a local cluster (the demo model when none is named)
parm predict   send a few queries and print each answer with its provenance
parm frontend  the frontend alone, from a file naming its instances (in a container)
parm deploy    containers on one or more Docker hosts (``parm deploy docker up|down``)
parm bench     benchmarks (``overhead``, ``workers``, ``latency``, ``calibrate``, ``codes``)
parm sim       the discrete-event simulator over the frontend's coordinator
parm train     train base models, parity models and learned codes (``cli.train``)
parm eval      accuracy of a parity model: A_a, A_d, A_o (``cli.train``)
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from cli.deploy import add_deploy, add_frontend, add_http_ports, add_network, with_http_ports
from common.runtime import parm_home, run_loop
from deploy.netns import NetworkError, NetworkSpec
from deploy.spec import DeploymentError
from frontend.events import Mode

T = TypeVar("T")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        code: int = args.run(args)
        return code
    except (DeploymentError, NetworkError, OSError, TimeoutError, ValueError) as exc:
        print(f"parm: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="parm", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    up = sub.add_parser("up", help="start a local cluster")
    up.add_argument("--config", type=Path, help="TOML deployment file (several models)")
    up.add_argument("--base", type=Path, help="base model bundle (default: the demo)")
    up.add_argument(
        "--parity", type=Path, action="append", default=[],
        help="parity model bundle; repeat for r > 1 parities (one per index, linear code)",
    )  # fmt: skip
    up.add_argument(
        "--code", default="sum",
        help="sum (default), concat, linear; or, training-free (no --parity: the parity "
        "instances serve the base model), berrut, berrut-interpolate or mean; or learned "
        "(with --code-bundle)",
    )  # fmt: skip
    up.add_argument(
        "--code-bundle", type=Path,
        help="--code learned: the run folder of parm train learned (encoder/, decoder/)",
    )  # fmt: skip
    up.add_argument(
        "--r", type=int,
        help="parities per group of a training-free code (default 1; a learned code's own)",
    )  # fmt: skip
    up.add_argument("--name", help="model name clients use (default: the base manifest's)")
    up.add_argument("--k", type=int, default=2, help="queries per coding group (default 2)")
    up.add_argument("--data-instances", type=int, help="default: k")
    up.add_argument("--parity-instances", type=int, default=1)
    up.add_argument("--mode", default="coded", choices=[mode.value for mode in Mode])
    up.add_argument("--policy", default="single-queue", choices=["single-queue", "round-robin"])
    up.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="queries per instance request, at most (dynamic: queries that arrive while "
        "every data instance is busy go together to the next one free)",
    )
    up.add_argument("--group-timeout-ms", type=float, default=10.0, help="then pad the group")
    up.add_argument(
        "--decode-grace",
        default="auto",
        metavar="auto|MS",
        help="how late an original may be before a reconstruction answers for it: auto "
        "(learned from healthy service times, the default), milliseconds, or 0 (eager)",
    )
    up.add_argument(
        "--hedge-delay",
        default="auto",
        metavar="auto|MS",
        help="--mode hedge: how long a query runs before a backup copy goes to another "
        "instance: auto (the robust p95 of recent service times, the default) or milliseconds",
    )
    up.add_argument("--slo-ms", type=float, help="deadline when a client gives none")
    up.add_argument("--grpc-port", type=int, default=8001)
    up.add_argument(
        "--frontend-workers", type=int, metavar="N",
        help="frontend processes sharing the client ports (SO_REUSEPORT), each with its own "
        "coding groups over every instance (default: the file's, else 1: in this process)",
    )  # fmt: skip
    up.add_argument("--device", default="auto", help="auto, cpu, cuda (instances)")
    up.add_argument(
        "--inject", action="append", default=[], metavar="NAME:delay_ms=D[,prob=P][,fail_prob=Q]"
    )
    add_http_ports(up)
    add_network(up)
    up.set_defaults(run=_up)

    predict = sub.add_parser("predict", help="send demo queries and show each answer's provenance")
    predict.add_argument("--url", default="127.0.0.1:8001", help="frontend gRPC address")
    predict.add_argument("--model", default="digits")
    predict.add_argument("-n", type=int, default=8, help="number of queries")
    predict.add_argument("--timeout-ms", type=float)
    predict.add_argument("--require-original", action="store_true")
    predict.set_defaults(run=_predict)

    bench = sub.add_parser("bench", help="benchmarks").add_subparsers(
        required=True, metavar="BENCH"
    )
    overhead = bench.add_parser("overhead", help="latency and throughput through the frontend")
    overhead.add_argument("--queries", type=int, default=3000, help="measured queries per point")
    overhead.add_argument("--results", type=Path, default=Path("bench/RESULTS.md"))
    overhead.add_argument("--no-append", action="store_true", help="print only")
    overhead.add_argument(
        "--baseline",
        type=Path,
        action="append",
        help="a checkout of an earlier commit: frontend CPU per query side by side with it "
        "(repeatable; only that comparison runs)",
    )
    overhead.add_argument("--rounds", type=int, default=3, help="--baseline: turns each")
    overhead.set_defaults(run=_bench_overhead)
    workers = bench.add_parser("workers", help="throughput through 1 and N frontend processes")
    workers.add_argument("--workers", type=int, default=2, help="frontend processes (default 2)")
    workers.add_argument("--queries", type=int, default=3000, help="measured queries per run")
    workers.add_argument("--rounds", type=int, default=2, help="1 and N workers, alternated")
    workers.add_argument("--results", type=Path, default=Path("bench/RESULTS.md"))
    workers.add_argument("--no-append", action="store_true", help="print only")
    workers.set_defaults(run=_bench_workers)
    from cli.bench import add_bench, add_sim  # argparse only: cheap to import

    add_bench(bench, parm_home)
    add_sim(sub)
    add_frontend(sub)
    add_deploy(sub)
    from cli.train import add_commands as add_train  # argparse only: cheap to import

    add_train(sub)
    return parser


def network_spec(args: argparse.Namespace) -> NetworkSpec | None:
    """``--network netns`` (with its link options) as a spec; None on loopback."""
    if args.network != "netns":
        for flag in ("link_mbit", "link_queue_ms"):
            if getattr(args, flag) is not None:
                raise DeploymentError(f"--{flag.replace('_', '-')} needs --network netns")
        return None
    spec = NetworkSpec()
    if args.link_mbit is not None:
        spec = dataclasses.replace(spec, rate_mbit=args.link_mbit)
    if args.link_queue_ms is not None:
        spec = dataclasses.replace(spec, queue_ms=args.link_queue_ms)
    return spec


def _up(args: argparse.Namespace) -> int:
    from common.codes import BASE_ANSWERS_PARITY
    from deploy.local import LocalCluster, serve_until_signalled
    from deploy.spec import Deployment, ModelDeployment, assign_injections, load_deployment

    if args.config is not None:
        deployment = load_deployment(args.config)
        models = assign_injections(deployment.models, args.inject)
        deployment = dataclasses.replace(deployment, models=models)
    else:
        base, parities, name = args.base, tuple(args.parity), args.name
        if base is None:
            base, demo_parity, name = _demo_bundles(args.k)
            parities = () if args.code in BASE_ANSWERS_PARITY else (demo_parity,)
        if name is None:
            from common.bundle import read_manifest

            name = read_manifest(base).name
        model = ModelDeployment(
            name=name,
            base=base,
            parity=parities[0] if len(parities) == 1 else None,
            parities=parities if len(parities) > 1 else (),
            k=args.k,
            mode=Mode(args.mode),
            data_instances=args.data_instances or args.k,
            parity_instances=args.parity_instances,
            parities_per_group=args.r,
            settings={
                "policy": args.policy,
                "batch_size": args.batch_size,
                "group_timeout_ms": args.group_timeout_ms,
                "slo_ms": args.slo_ms,
                "decode_grace": args.decode_grace,
                "hedge_delay": args.hedge_delay,
                "code": args.code,
                **({"code_bundle": args.code_bundle} if args.code_bundle else {}),
            },
        )
        deployment = Deployment(
            assign_injections([model], args.inject), grpc_port=args.grpc_port, device=args.device
        )

    deployment = with_http_ports(deployment, args)
    if args.frontend_workers is not None:
        deployment = dataclasses.replace(deployment, frontend_workers=args.frontend_workers)

    async def run() -> None:
        cluster = LocalCluster(deployment, parm_home() / "logs", network=network_spec(args))
        print("starting instances...", flush=True)
        async with cluster:
            print("ready:")
            for line in cluster.endpoints():
                print("  " + line)
            print(f"instance logs: {cluster.log_dir}")
            print("try: .venv/bin/parm predict      stop: Ctrl-C", flush=True)
            await serve_until_signalled(cluster)

    run_loop(run())
    return 0


def _demo_bundles(k: int) -> tuple[Path, Path, str]:
    from train.demo import ensure_demo

    print(
        f"preparing the demo model 'digits' (k={k}); the first run trains it (under a minute)...",
        flush=True,
    )
    demo = ensure_demo(k, parm_home() / "demo")
    m = demo.metrics
    print(
        f"demo model digits: A_a = {m['A_a']:.1%} (available), "
        f"A_d = {m['A_d']:.1%} (degraded: reconstructed, k={k})",
        flush=True,
    )
    return demo.base_dir, demo.parity_dir, "digits"


def _predict(args: argparse.Namespace) -> int:
    from deploy.predict import predict

    return run_loop(predict(args.url, args.model, args.n, args.timeout_ms, args.require_original))


def _bench_overhead(args: argparse.Namespace) -> int:
    results = None if args.no_append else args.results
    if args.baseline:
        from bench.overhead_compare import run_compare

        command = "parm " + " ".join(sys.argv[1:])
        return run_loop(run_compare(args.baseline, args.queries, args.rounds, results, command))
    from bench.overhead import run_overhead

    return run_loop(
        run_overhead(args.queries, None if args.no_append else args.results, parm_home())
    )


def _bench_workers(args: argparse.Namespace) -> int:
    from bench.workers import run_workers

    results = None if args.no_append else args.results
    return run_loop(run_workers(args.workers, args.queries, args.rounds, results, parm_home()))


if __name__ == "__main__":
    sys.exit(main())
