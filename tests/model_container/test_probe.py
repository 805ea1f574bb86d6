"""The healthcheck probe against an in-process health service."""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from model_container.probe import main
from tests.model_container.container_process import free_port


@pytest.fixture
def health_service() -> Iterator[tuple[health.HealthServicer, int]]:
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, port
    server.stop(None).wait()


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (health_pb2.HealthCheckResponse.SERVING, 0),
        (health_pb2.HealthCheckResponse.NOT_SERVING, 1),
    ],
)
def test_the_exit_status_follows_the_health_service(health_service, status, code):
    servicer, port = health_service
    servicer.set("", status)
    assert main(["--port", str(port)]) == code


def test_nothing_listening_is_not_serving():
    assert main(["--port", str(free_port()), "--timeout", "0.5"]) == 1
