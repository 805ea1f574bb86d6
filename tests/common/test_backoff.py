"""Back-off delays, with the jitter draw pinned."""

import pytest

from common.backoff import Backoff


@pytest.mark.parametrize(
    ("draw", "expected"),
    [(0.0, [0.5, 1.0, 2.0, 2.0]), (1.0, [1.0, 2.0, 4.0, 4.0]), (0.5, [0.75, 1.5, 3.0, 3.0])],
)
def test_delays_double_up_to_the_cap_within_the_jitter(draw, expected):
    backoff = Backoff(1.0, 4.0, draw=lambda: draw)
    assert [backoff.next() for _ in expected] == expected


def test_reset_starts_again_from_the_first_delay():
    backoff = Backoff(0.1, 1.0, jitter_floor=1.0)
    assert [backoff.next() for _ in range(3)] == [0.1, 0.2, 0.4]
    backoff.reset()
    assert backoff.next() == 0.1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"first": 0.0, "cap": 1.0}, "expected 0 < first <= cap"),
        ({"first": 2.0, "cap": 1.0}, "expected 0 < first <= cap"),
        ({"first": 1.0, "cap": 2.0, "jitter_floor": 1.5}, "jitter_floor"),
    ],
)
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)
