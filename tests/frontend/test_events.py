"""The coordinator's vocabulary: settings checked on construction, values on the wire."""

from __future__ import annotations

import dataclasses

import pytest

from frontend.events import (
    Answer,
    CoreConfig,
    ErrorKind,
    Mode,
    PartialPolicy,
    QueryArrived,
    Reconstruct,
    SetTimer,
    Source,
)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "k must be >= 1, got 0"),
        ({"r": 0}, "r must be >= 1"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
        ({"max_outstanding": 0}, "max_outstanding must be >= 1"),
        ({"max_attempts": 0}, "max_attempts must be >= 1"),
        ({"batch_timeout": -0.001}, "timeouts must be >= 0"),
        ({"group_timeout": -1}, "timeouts must be >= 0"),
        ({"decode_grace": -0.5}, r"decode_grace must be >= 0 or None \(auto\), got -0.5"),
    ],
)
def test_impossible_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CoreConfig(**kwargs)


@pytest.mark.parametrize("grace", [None, 0.0, 0.02])
def test_decode_grace_may_be_auto_eager_or_a_time(grace):
    assert CoreConfig(decode_grace=grace).decode_grace == grace


@pytest.mark.parametrize(
    ("enum", "values"),
    [
        (Mode, ["coded", "equal-resources", "replicate", "hedge", "none"]),
        (Source, ["original", "reconstructed", "default"]),
        (ErrorKind, ["RESOURCE_EXHAUSTED", "DEADLINE_EXCEEDED", "UNAVAILABLE"]),
        (PartialPolicy, ["pad", "unprotected"]),
    ],
)
def test_the_words_on_the_command_line_and_the_wire_stay(enum, values):
    assert [member.value for member in enum] == values


def test_events_and_actions_compare_by_value_and_cannot_change():
    assert QueryArrived(1, "x") == QueryArrived(1, "x", deadline=None)
    assert len({Answer(1, Source.ORIGINAL), Answer(1, Source.ORIGINAL), SetTimer(1.0)}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        SetTimer(1.0).at = 2.0  # type: ignore[misc]


def test_a_reconstructions_parity_output_is_its_first_parity():
    action = Reconstruct(0, 1, ("p0", "p1"), ("o0", None), (1, 1), ((5, 0),), (1,))
    assert action.parity_output == "p0"
    assert action.task_id == -1
