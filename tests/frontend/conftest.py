"""Fixtures shared by the modules of this folder.

``bundles``: the trained demo pair, for the modules that do not pick their own.  One set
of real containers for the HTTP and metrics tests (``test_http``, ``test_metrics``),
started once per session: starting them is most of these tests' time.  The helpers are
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


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> Bundles:
    """The trained demo pair (`session_bundles`: trained once, then cached)."""
    from tests.frontend.cluster import session_bundles

    return session_bundles(tmp_path_factory)


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
