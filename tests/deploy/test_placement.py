"""Placement of instances on Docker hosts: a pure function, tested directly."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from deploy.placement import Host, place, plan_ports, stripes, worst_stripe_share
from deploy.spec import Deployment, DeploymentError, ModelDeployment


def model(name: str = "m", k: int = 2, data: int = 2, parity: int = 1) -> ModelDeployment:
    return ModelDeployment(
        name, Path("b"), Path("p"), k=k, data_instances=data, parity_instances=parity
    )


def hosts(n: int, gpus: int = 1) -> list[Host]:
    return [Host(f"ssh://gpu{i}", f"gpu{i}", gpus) for i in range(n)]


@pytest.mark.parametrize(
    ("k", "data", "parity", "expected"),
    [
        (2, 2, 1, [["data-0", "data-1", "parity-0"]]),
        (2, 4, 2, [["data-0", "data-1", "parity-0"], ["data-2", "data-3", "parity-1"]]),
        (2, 3, 1, [["data-0", "data-1", "parity-0"], ["data-2"]]),
        (3, 3, 0, [["data-0", "data-1", "data-2"]]),
        (2, 2, 2, [["data-0", "data-1", "parity-0"], ["parity-1"]]),
    ],
)
def test_stripes_are_k_data_instances_and_their_parity(
    k: int, data: int, parity: int, expected: list[list[str]]
) -> None:
    assert stripes(model(k=k, data=data, parity=parity)) == expected


@pytest.mark.parametrize(
    ("k", "data", "parity", "n_hosts"), [(2, 2, 1, 3), (3, 3, 1, 4), (2, 4, 2, 3), (4, 8, 2, 6)]
)
def test_with_enough_hosts_no_host_holds_two_members_of_a_stripe(
    k: int, data: int, parity: int, n_hosts: int
) -> None:
    slots = place(Deployment((model(k=k, data=data, parity=parity),)), hosts(n_hosts))
    assert worst_stripe_share(slots) == 1
    load = Counter(s.host.url for s in slots)
    assert max(load.values()) - min(load.values()) <= 1  # and the load is balanced


@pytest.mark.parametrize(("n_hosts", "worst"), [(1, 3), (2, 2)])
def test_with_too_few_hosts_stripes_are_spread_as_far_as_they_go(n_hosts: int, worst: int) -> None:
    slots = place(Deployment((model(),)), hosts(n_hosts))
    assert worst_stripe_share(slots) == worst
    assert len(slots) == 3


def test_stripes_start_on_different_hosts_so_load_stays_even() -> None:
    """Two models of one stripe each on 4 hosts: 6 instances, no host gets a third."""
    deployment = Deployment((model("a"), model("b")))
    slots = place(deployment, hosts(4))
    assert worst_stripe_share(slots) == 1
    assert sorted(Counter(s.host.url for s in slots).values()) == [1, 1, 2, 2]


def test_gpus_are_handed_out_per_host_and_weigh_the_load() -> None:
    """A 2-GPU host takes twice the share of a 1-GPU host; each instance gets its own GPU
    while they last."""
    big, small = Host("ssh://big", "big", 2), Host("ssh://small", "small", 1)
    slots = place(Deployment((model(k=2, data=4, parity=2),)), [big, small])
    on_big = [s for s in slots if s.host is big]
    assert len(on_big) == 4 and sorted(s.gpu or 0 for s in on_big) == [0, 0, 1, 1]
    assert [s.gpu for s in slots if s.host is small] == [0, 0]


def test_cpu_hosts_get_no_gpu() -> None:
    slots = place(Deployment((model(),)), hosts(3, gpus=0))
    assert {s.gpu for s in slots} == {None}


def test_ports_count_up_per_host() -> None:
    slots = place(Deployment((model(k=2, data=4, parity=2),)), hosts(2))
    ports = plan_ports(slots)
    per_host: dict[str, list[int]] = {}
    for slot, p in zip(slots, ports, strict=True):
        assert (p.stream, p.metrics) == (p.grpc + 1, p.grpc + 2)
        per_host.setdefault(slot.host.url, []).append(p.grpc)
    assert all(sorted(v) == list(range(9000, 9000 + 3 * len(v), 3)) for v in per_host.values())


def test_no_hosts_is_an_error() -> None:
    with pytest.raises(DeploymentError, match="no Docker host"):
        place(Deployment((model(),)), [])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("unix:///var/run/docker.sock", Host("unix:///var/run/docker.sock", "127.0.0.1", 0)),
        ("ssh://ops@gpu1", Host("ssh://ops@gpu1", "gpu1", 0)),
        ("tcp://10.0.0.5:2376,gpus=4", Host("tcp://10.0.0.5:2376", "10.0.0.5", 4)),
        ("ssh://gpu2,address=10.1.0.2,gpus=1", Host("ssh://gpu2", "10.1.0.2", 1)),
    ],
)
def test_host_urls(text: str, expected: Host) -> None:
    assert Host.parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("gpu1", "expected a unix://, ssh:// or tcp:// URL"),
        ("ssh://gpu1,gpus=two", "gpus must be an integer"),
        ("ssh://gpu1,colour=red", "expected URL"),
    ],
)
def test_bad_host_urls(text: str, message: str) -> None:
    with pytest.raises(DeploymentError, match=message):
        Host.parse(text)
