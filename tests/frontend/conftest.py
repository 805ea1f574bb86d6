"""Fixtures shared by the HTTP and metrics tests (``test_http``, ``test_metrics``).

One set of real containers for both modules, started once per session: starting them
is most of these tests' time.  Other modules keep their own fixtures.  The helpers are
imported inside the fixtures, so that nothing here can stop the other modules of this
folder from loading.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.frontend.cluster import Bundles, Containers


@pytest.fixture(scope="session")
def rest_bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    """A small MLP and an untrained parity model for it (`small_bundles`)."""
    from tests.frontend.rest_support import small_bundles

    return small_bundles(tmp_path_factory.mktemp("rest-bundles"))


@pytest.fixture(scope="session")
def rest_containers(
    rest_bundles: Bundles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Containers]:
    """Two fast base instances, a slow one (``SLOW_MS``), a parity instance, and a base
    instance that fails every call."""
    from tests.frontend.cluster import SLOW_MS, start_containers

    base = rest_bundles.base
    running = start_containers(
        {
            "fast-a": (base, ()),
            "fast-b": (base, ()),
            "slow": (base, ("--delay-ms", str(SLOW_MS))),
            "parity": (rest_bundles.parity, ()),
            "failing": (base, ("--fail-prob", "1")),
        },
        tmp_path_factory.mktemp("rest-container-logs"),
    )
    yield running
    for container in running.running.values():  # all at once: each drains for a while
        container.proc.send_signal(signal.SIGTERM)
    running.stop()
