"""The latency benchmark's wiring: each mode's instances, their configuration, sidecars."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from bench.contention import parse_contention
from bench.contention.shuffle import sidecar_bytes
from bench.latency import NETNS, QUICK, QUICK_NETNS, ModeCluster, _cluster, plan_from_options
from frontend.events import Mode
from tests.model_container.container_process import make_bundle, make_parity_bundle

K = 2


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bundles")
    base = make_bundle(root / "base", name="digits")
    return base, make_parity_bundle(root / "parity", base, K)


def cluster(bundles: tuple[Path, Path], tmp_path: Path, contention: str) -> ModeCluster:
    plan = dataclasses.replace(QUICK, contention=parse_contention(contention), groups=1)
    return _cluster(K, ("coded", Mode.CODED, "auto"), plan, bundles, tmp_path)


def test_instances_are_padded_and_get_the_contentions_delays(bundles, tmp_path):
    mc = cluster(bundles, tmp_path, "delay:prob=0.5,mean_ms=20")
    configs = [mc.cluster.container_config(i) for i in mc.cluster.instances.values()]
    assert {c.service_time_ms for c in configs} == {QUICK.service_time_ms}
    assert {(c.delay_ms, c.delay_prob, c.delay_dist) for c in configs} == {(20.0, 0.5, "exp")}
    assert [c.seed for c in configs] == [0, 1, 2]  # the instances' own fault seeds stay
    assert mc.sidecars.names == []  # no shuffles: no sidecars


def test_shuffles_give_every_instance_a_sidecar_started_and_stopped_with_it(bundles, tmp_path):
    mc = cluster(bundles, tmp_path, "shuffle:concurrency=1")
    names = ["data-0", "data-1", "parity-0"]
    assert mc.sidecars.names == names
    assert all(
        c.delay_ms == 0 for c in map(mc.cluster.container_config, mc.cluster.instances.values())
    )

    async def scenario() -> dict[str, int]:
        async with mc.sidecars:
            assert sorted(mc.sidecars_at) == names
            for sidecar in mc.sidecars_at.values():
                assert await sidecar_bytes(sidecar) == (0, 0)
        return await mc.sidecars.stop()

    assert asyncio.run(scenario()) == dict.fromkeys(names, 0)


def test_the_quick_plan_is_small_and_options_override_it():
    assert QUICK.ks == (2,) and QUICK.modes == (Mode.CODED, Mode.EQUAL_RESOURCES, Mode.HEDGE)
    assert len(QUICK.rates) == 1
    plan = plan_from_options(True, rates=(50.0,), modes=("none",), contention="pause", seed=None)
    assert plan.rates == (50.0,) and plan.modes == (Mode.NONE,)
    assert plan.contention.pause is not None and plan.seed == QUICK.seed
    assert plan_from_options(False).modes == (
        Mode.CODED, Mode.EQUAL_RESOURCES, Mode.HEDGE, Mode.REPLICATE, Mode.NONE,
    )  # fmt: skip


def test_coded_mode_runs_once_per_decode_grace_side_by_side():
    plan = dataclasses.replace(QUICK, decode_graces=("auto", "0"))
    assert plan.variants() == [
        ("coded", Mode.CODED, "auto"),
        ("coded, grace=0", Mode.CODED, "0"),
        ("equal-resources", Mode.EQUAL_RESOURCES, "auto"),
        ("hedge", Mode.HEDGE, "auto"),
    ]


def test_a_bad_decode_grace_is_refused_before_any_run():
    with pytest.raises(ValueError, match="decode_grace: expected auto or a number"):
        dataclasses.replace(QUICK, decode_graces=("soon",))


def test_each_variant_serves_its_decode_grace(bundles, tmp_path):
    plan = dataclasses.replace(QUICK, groups=1)
    mc = _cluster(K, ("coded, grace=0", Mode.CODED, "0"), plan, bundles, tmp_path)
    (model,) = mc.cluster.deployment.models
    assert (mc.label, model.settings["decode_grace"]) == ("coded, grace=0", "0")


def test_a_netns_plan_scales_its_shuffles_to_the_links_and_says_so():
    plan = dataclasses.replace(QUICK, network="netns", link_mbit=100.0)
    assert plan.network_spec is not None and plan.network_spec.rate_mbit == 100.0
    assert plan.injected.shuffle is not None and plan.injected.shuffle.max_mb == pytest.approx(25.6)
    described = plan.describe()
    assert (described["network"], described["link_mbit"]) == ("netns", 100.0)
    assert "12.8-25.6 MB" in described["contention_description"]
    assert QUICK.network_spec is None and QUICK.injected == QUICK.contention
    # on hosts, the papers' transfers (one at a time among 6 hosts) unless told otherwise
    assert plan_from_options(True, network="netns").contention.text == "shuffle:concurrency=1"
    assert plan_from_options(True, network="netns", contention="none").contention.text == "none"


def test_loads_are_shares_of_each_ks_derived_capacity():
    assert (NETNS.capacity(2), NETNS.capacity(4)) == (400.0, 800.0)  # 2k data x 100 q/s
    assert NETNS.rates_for(2) == (120.0, 220.0, 320.0)
    assert NETNS.rates_for(4) == (240.0, 440.0, 640.0)
    assert QUICK.rates_for(3) == QUICK.rates  # no loads: the rates run
    assert NETNS.describe()["rates"] == {"2": [120.0, 220.0, 320.0], **NETNS.describe()["rates"]}


def test_netns_plans_run_every_mode_eager_and_with_the_auto_grace():
    quick = plan_from_options(True, network="netns")
    assert quick == QUICK_NETNS and quick.modes == NETNS.modes and len(quick.variants()) == 6
    assert plan_from_options(False, network="netns", ks=(2,)).loads == NETNS.loads
    assert plan_from_options(False, network="netns", rates=(90.0,)).rates_for(3) == (90.0,)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"loads": (0.5, 0.0)}, "expected shares of capacity"),
        ({"network": "wifi"}, "expected loopback or netns"),
        ({"contention": parse_contention("cutoff")}, "cutoff contention needs hosts"),
    ],
)
def test_bad_network_plans_are_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(QUICK, **changes)
