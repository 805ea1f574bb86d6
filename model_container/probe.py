"""``python -m model_container.probe --port P``: is this container serving?  (A healthcheck.)

Exit status 0 when the container's ``grpc.health.v1`` service says SERVING (the model
is loaded and warm), 1 otherwise.  Docker and compose healthchecks run it inside the
container; Kubernetes asks the same service with its native ``grpc`` probe.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def serving(target: str, timeout: float) -> bool:
    """True when ``target``'s health service answers SERVING within ``timeout`` seconds."""
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError:
            return False
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m model_container.probe", description=__doc__)
    p.add_argument("--port", type=int, default=8001, help="the container's gRPC port")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds")
    args = p.parse_args(argv)
    return 0 if serving(f"{args.host}:{args.port}", args.timeout) else 1


if __name__ == "__main__":
    sys.exit(main())
