"""bench/scrape.py: the frontend it fills, and every exposition path showing the same counts."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench import scrape
from frontend.metrics import Metrics
from tests.bench.baselines import needs_baseline


def counts(text: str) -> dict[tuple[str, str], float]:
    """Each model's answers and latency counts, by (sample name, model)."""
    wanted = {"parm_answers_total", "parm_request_latency_seconds_count", "parm_instance_up"}
    return {
        (s.name, s.labels["model"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name in wanted
        and s.labels.get("source", "original") == "original"
        and s.labels.get("instance_name", "data-0") == "data-0"
    }


def test_the_filled_frontend_has_every_model_and_query() -> None:
    metrics, children = scrape.filled(Metrics(), models=2, instances=4, queries=100)
    got = counts(metrics.render())
    assert len(children) == 2
    for model in ("model-0", "model-1"):
        assert got["parm_answers_total", model] == 98  # every 50th is reconstructed
        assert got["parm_request_latency_seconds_count", model] == 98
        assert got["parm_instance_up", model] == 1


@needs_baseline(scrape.BASELINE, "frontend/metrics.py")
def test_the_hand_written_baseline_exposes_the_same_counts() -> None:
    scrape.from_git(scrape.BASELINE, "common/buckets.py", "baseline_buckets")
    old = scrape.from_git(scrape.BASELINE, "frontend/metrics.py", "baseline_metrics")
    new, _ = scrape.filled(Metrics(), models=1, instances=4, queries=60)
    hand, _ = scrape.filled(old.Metrics(), models=1, instances=4, queries=60)
    assert counts(hand.render()) == counts(new.render())


def test_a_short_run_prints_one_row(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--models", "1", "--instances", "4", "--queries", "10", "--repeat", "1"]
    assert scrape.main([*args, "--no-baseline"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| prom")]
    assert len(rows) == 1 and len(rows[0].split("|")) == 8
