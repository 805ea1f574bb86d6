"""ContainerConfig: its command line, both ways, and its fault settings."""

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from model_container.__main__ import parse_args
from model_container.config import ContainerConfig
from model_container.faults import FaultSettings

BASE = ContainerConfig(bundle=Path("bundles/m"), port=8001)

#: a value other than the default, for every field
SAMPLES: dict[str, Any] = {
    "bundle": Path("/srv/bundles/other"),
    "port": 0,
    "stream_port": 9001,
    "host": "::1",
    "device": "cuda:1",
    "threads": 4,
    "delay_ms": 12.5,
    "delay_prob": 0.25,
    "fail_prob": 0.125,
    "seed": 42,
    "name": "renamed",
    "service_time_ms": 10.0,
    "delay_dist": "exp",
    "metrics_port": 9002,
}


def test_every_field_has_a_sample():
    assert set(SAMPLES) == {f.name for f in dataclasses.fields(ContainerConfig)}


@pytest.mark.parametrize("field", sorted(SAMPLES))
def test_argv_round_trips(field):
    config = dataclasses.replace(BASE, **{field: SAMPLES[field]})
    assert config != BASE
    assert ContainerConfig.from_argv(config.argv()) == config


@pytest.mark.parametrize("field", sorted(SAMPLES))
def test_the_container_cli_reads_argv(field):
    config = dataclasses.replace(BASE, **{field: SAMPLES[field]})
    assert parse_args(config.argv()) == config


def test_argv_of_every_field_at_once_round_trips():
    config = ContainerConfig(**SAMPLES)
    assert ContainerConfig.from_argv(config.argv()) == config


def test_argv_names_required_fields_and_only_changed_others():
    assert BASE.argv() == ["--bundle", "bundles/m", "--port", "8001"]
    changed = dataclasses.replace(BASE, threads=2, delay_ms=5)
    assert changed.argv()[4:] == ["--threads", "2", "--delay-ms", "5"]


def test_an_invalid_argv_is_a_usage_error(capsys):
    with pytest.raises(SystemExit):
        ContainerConfig.from_argv(["--bundle", "b", "--port", "1", "--threads", "0"])
    assert "threads: expected >= 1, got 0" in capsys.readouterr().err


def test_fault_settings_are_read_from_and_written_to_the_config():
    faults = FaultSettings(delay_ms=3.0, delay_prob=0.5, fail_prob=0.1, delay_dist="exp", seed=9)
    config = dataclasses.replace(BASE, threads=2).with_faults(faults)
    assert config.faults == faults
    assert (config.threads, config.port) == (2, 8001)
    assert config.with_faults(FaultSettings()) == dataclasses.replace(BASE, threads=2)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"delay_dist": "pareto"}, "delay_dist: expected const or exp, got 'pareto'"),
        ({"fail_prob": -0.1}, r"fail_prob: expected a probability in \[0, 1\], got -0.1"),
        ({"service_time_ms": -1.0}, "service_time_ms: expected >= 0, got -1.0"),
    ],
)
def test_config_validation(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(BASE, **changes)
