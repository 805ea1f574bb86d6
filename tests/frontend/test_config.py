"""The frontend's settings: pools by mode, and the checks of a model's configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from frontend.config import FrontendConfig, InstanceAddress, ModelConfig, assign_pools
from frontend.events import Mode

DATA = (InstanceAddress("d0", "h:1"), InstanceAddress("d1", "h:2"))
PARITY = (InstanceAddress("p0", "h:3"),)


def model(mode: Mode, **kw: Any) -> ModelConfig:
    return ModelConfig(
        "m", Path("base"), DATA, parity=PARITY, parity_bundle=Path("p"), mode=mode, **kw
    )


@pytest.mark.parametrize(
    ("mode", "data", "parity"),
    [
        (Mode.CODED, ("d0", "d1"), ("p0",)),
        (Mode.NONE, ("d0", "d1"), ()),
        (Mode.EQUAL_RESOURCES, ("d0", "d1", "p0"), ()),
        (Mode.REPLICATE, ("d0", "d1", "p0"), ()),
    ],
)
def test_pools_by_mode(mode: Mode, data: tuple[str, ...], parity: tuple[str, ...]) -> None:
    got_data, got_parity = model(mode).pools()
    assert tuple(a.name for a in got_data) == data
    assert tuple(a.name for a in got_parity) == parity


def test_the_simulator_assigns_its_own_items_the_same_way() -> None:
    assert assign_pools(Mode.CODED, ["s0"], ["s1"]) == (("s0",), ("s1",))
    assert assign_pools(Mode.REPLICATE, ["s0"], ["s1"]) == (("s0", "s1"), ())


def test_a_model_needs_a_data_instance() -> None:
    with pytest.raises(ValueError, match="at least one data instance"):
        ModelConfig("m", Path("base"), ())


def test_coded_mode_needs_one_parity_bundle_per_index() -> None:
    with pytest.raises(ValueError, match="r=2 needs 2 parity bundle"):
        model(Mode.CODED, r=2)


def test_the_berrut_code_takes_no_parity_bundle_and_any_r() -> None:
    parity = tuple(InstanceAddress(f"p{i}", "h:3", parity_index=i) for i in range(3))
    config = ModelConfig("m", Path("base"), DATA, parity=parity, code="berrut", r=3)
    assert config.parity_bundle_paths() == ()
    with pytest.raises(ValueError, match=r"berrut code takes no parity bundle.*\['p'\]"):
        model(Mode.CODED, code="berrut")


def test_parity_indices_must_be_below_r() -> None:
    wrong = (InstanceAddress("p0", "h:3", parity_index=1),)
    with pytest.raises(ValueError, match=r"parity_index of \['p0'\] not in \[0, 1\)"):
        ModelConfig("m", Path("base"), DATA, parity=wrong, parity_bundle=Path("p"))


def test_parity_bundles_by_index_win_over_the_single_one() -> None:
    config = model(Mode.CODED, r=2, parity_bundles=(Path("a"), Path("b")))
    assert config.parity_bundle_paths() == (Path("a"), Path("b"))


def test_core_config_takes_milliseconds_to_seconds() -> None:
    core = model(Mode.CODED, batch_timeout_ms=4.0, group_timeout_ms=20.0, default_output=(0.0,))
    config = core.core_config()
    assert (config.batch_timeout, config.group_timeout, config.has_default) == (0.004, 0.02, True)
    assert config.dynamic_batching is True
    assert model(Mode.CODED, dynamic_batching=False).core_config().dynamic_batching is False


def test_model_names_must_be_unique() -> None:
    with pytest.raises(ValueError, match="unique"):
        FrontendConfig((model(Mode.NONE), model(Mode.NONE)))


@pytest.mark.parametrize(
    ("settings", "window"),
    [({}, 4), ({"max_inflight": 3, "batch_size": 2}, 24), ({"admission_window": 7}, 7)],
)
def test_the_admission_window_is_twice_what_the_data_instances_take(
    settings: dict[str, Any], window: int
) -> None:
    data = (InstanceAddress("d0", "h:1"), InstanceAddress("d1", "h:2"))
    assert ModelConfig("m", Path("b"), data, mode=Mode.NONE, **settings).window() == window


@pytest.mark.parametrize("field", ["max_outstanding_per_client", "admission_window"])
def test_admission_limits_under_one_are_refused(field: str) -> None:
    data = (InstanceAddress("d0", "h:1"),)
    with pytest.raises(ValueError, match=f"{field}: expected >= 1, got 0"):
        ModelConfig("m", Path("b"), data, mode=Mode.NONE, **{field: 0})  # type: ignore[arg-type]
