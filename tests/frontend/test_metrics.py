"""The frontend's Prometheus metrics: the children and buckets, then a real scrape.

The integration tests run traffic through a frontend over real containers (a fast and
a slow base instance, a parity instance, and one that fails every call), scrape
``/metrics`` over HTTP, and check each series' count against what the traffic must
have caused.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from common.buckets import LATENCY_BUCKETS
from frontend.config import ModelConfig
from frontend.events import ErrorKind, GroupClosed, Mode, Source
from frontend.metrics import Metrics
from tests.frontend.cluster import Bundles, Containers, address, inputs
from tests.frontend.rest_support import Http, coded_slow, http_config, run, v2_json

# ---------------------------------------------------------------- children and buckets


@pytest.mark.parametrize(
    ("value", "bucket"),
    [(0.0, "0.0005"), (0.0005, "0.0005"), (0.0005001, "0.001"), (61.0, "+Inf")],
)
def test_a_value_on_a_bound_counts_in_that_bucket(value: float, bucket: str) -> None:
    metrics = Metrics()
    metrics.model("m", 2, ["data-0"], []).queueing.observe(value)
    got = samples(metrics.render())
    buckets = {
        dict(labels_)["le"]: n
        for (name, labels_), n in got.items()
        if name == "parm_queueing_seconds_bucket"
    }
    assert len(buckets) == len(LATENCY_BUCKETS) + 1
    first = min((float(le), le) for le, n in buckets.items() if n == 1)[1]
    assert first == bucket and buckets["+Inf"] == 1
    assert got["parm_queueing_seconds_sum", labels(model="m")] == value


def test_label_values_are_escaped() -> None:
    metrics = Metrics()
    metrics.model('a "quoted"\\model', 2, ["data-0"], []).abandoned.inc()
    got = samples(metrics.render())
    assert got["parm_abandoned_queries_total", labels(model='a "quoted"\\model')] == 1


def test_exposition_of_the_children() -> None:
    metrics = Metrics()
    model = metrics.model("m", 2, ["data-0", "data-1"], ["parity-0"])
    model.answered([Source.ORIGINAL, Source.RECONSTRUCTED], 0.0021)
    model.answers[Source.ORIGINAL].inc()
    model.failed(ErrorKind.DEADLINE_EXCEEDED)
    model.failed(ErrorKind.RESOURCE_EXHAUSTED)
    model.group_closed(GroupClosed(0, 1, 0.010, protected=True))
    model.group_closed(GroupClosed(1, 2, 0.001, protected=True))
    got = samples(metrics.render())
    assert (
        got["parm_request_latency_seconds_bucket", labels(model="m", source="original", le="0.002")]
        == 0
    )
    assert (
        got["parm_request_latency_seconds_bucket", labels(model="m", source="original", le="0.003")]
        == 1
    )
    assert got["parm_request_latency_seconds_count", labels(model="m", source="reconstructed")] == 1
    assert got["parm_answers_total", labels(model="m", source="original")] == 1
    assert got["parm_deadline_misses_total", labels(model="m", outcome="error")] == 1
    assert got["parm_refusals_total", labels(model="m", reason="admission")] == 1
    assert got["parm_groups_closed_total", labels(model="m", kind="partial_padded")] == 1
    assert got["parm_groups_closed_total", labels(model="m", kind="full")] == 1
    assert got["parm_group_fill_seconds_sum", labels(model="m")] == pytest.approx(0.011)
    service = labels(model="m", pool="parity", instance_name="parity-0")
    assert got["parm_instance_service_seconds_count", service] == 0


# ---------------------------------------------------------------- a real scrape


def labels(**values: str) -> frozenset[tuple[str, str]]:
    return frozenset(values.items())


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition, by (name, labels)."""
    return {
        (s.name, labels(**s.labels)): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.fixture(scope="module")
def bundles(rest_bundles: Bundles) -> Bundles:
    return rest_bundles


@pytest.fixture(scope="module")
def containers(rest_containers: Containers) -> Containers:
    return rest_containers


def models(c: Containers, b: Bundles) -> tuple[ModelConfig, ...]:
    coded = coded_slow(c, b)
    plain = ModelConfig("plain", b.base, (address("data-0", c["fast-a"]),), mode=Mode.NONE)
    slow = ModelConfig(
        "slow", b.base, (address("data-0", c["slow"]),), mode=Mode.NONE, max_outstanding=1
    )
    failing = ModelConfig("failing", b.base, (address("data-0", c["failing"]),), mode=Mode.NONE)
    return coded, plain, slow, failing


async def traffic(http: Http) -> list[int]:
    """The traffic whose traces the scrape must show; the HTTP status of each request."""
    statuses = []
    for rows in (1, 1, 2, 1):  # 5 originals from plain
        statuses.append((await http.post("/v2/models/plain/infer", v2_json(inputs(rows, 0))))[0])
    # coded: a full group (one row to the slow instance: reconstructed, one original)
    statuses.append((await http.post("/v2/models/coded/infer", v2_json(inputs(2, 1))))[0])
    # slow: one query misses its deadline while a second is refused at admission
    late = asyncio.ensure_future(
        http.post("/slow/predict", {"input": [0.0] * 64, "timeout_ms": 300})
    )
    await asyncio.sleep(0.05)
    statuses.append((await http.post("/slow/predict", {"input": [0.0] * 64}))[0])
    statuses.append((await late)[0])
    # failing: every call fails; the query is retried, then given up or out of time
    body = v2_json(inputs(1, 2), timeout_ms=1500)
    statuses.append((await http.post("/v2/models/failing/infer", body))[0])
    return statuses


def test_a_scrape_after_traffic_counts_it(containers: Containers, bundles: Bundles) -> None:
    config = http_config(*models(containers, bundles))

    async def scenario(http: Http) -> tuple[list[int], dict[Any, float]]:
        statuses = await traffic(http)
        return statuses, samples(await http.metrics())

    statuses, got = run(config, scenario)
    assert statuses[:5] == [200] * 5 and statuses[5:7] == [429, 504]
    assert statuses[7] in (503, 504)

    def value(name: str, **values: str) -> float:
        return got[name, labels(**values)]

    # plain: 5 originals, each with a latency, a queueing time and an instance call
    assert value("parm_answers_total", model="plain", source="original") == 5
    assert value("parm_request_latency_seconds_count", model="plain", source="original") == 5
    assert value("parm_queueing_seconds_count", model="plain") == 5
    service = {"model": "plain", "pool": "data", "instance_name": "data-0"}
    assert value("parm_instance_service_seconds_count", **service) == 5
    # coded: one original, one reconstruction, one full group, one encode and decode
    for source in ("original", "reconstructed"):
        assert value("parm_answers_total", model="coded", source=source) == 1
        assert value("parm_request_latency_seconds_count", model="coded", source=source) == 1
    assert value("parm_groups_closed_total", model="coded", kind="full") == 1
    assert value("parm_encode_seconds_count", model="coded") == 1
    assert value("parm_decode_seconds_count", model="coded") == 1
    # slow: one deadline miss (an error, no default configured), one refusal
    assert value("parm_deadline_misses_total", model="slow", outcome="error") == 1
    assert value("parm_refusals_total", model="slow", reason="admission") == 1
    assert value("parm_query_errors_total", model="slow", code="RESOURCE_EXHAUSTED") == 1
    # failing: failed calls take the instance down each time
    calls = value(
        "parm_instance_failures_total", model="failing", instance_name="data-0", kind="call"
    )
    downs = value(
        "parm_instance_failures_total", model="failing", instance_name="data-0", kind="down"
    )
    assert calls >= 1 and downs >= 1
    # gauges, read at the scrape: nothing queued or outstanding, the healthy ones up
    for model in ("coded", "plain", "slow"):
        assert value("parm_model_ready", model=model) == 1
        assert value("parm_queue_depth", model=model, pool="data") == 0
    assert value("parm_outstanding_queries", model="plain") == 0
    assert value("parm_instance_up", model="coded", instance_name="parity-0") == 1
    assert value("parm_instance_inflight", model="plain", instance_name="data-0") == 0


def test_a_partial_group_is_padded_and_counted(containers: Containers, bundles: Bundles) -> None:
    """One query, both data instances slow: its group closes short at the fill timeout,
    padded, and the query is reconstructed after that: the scrape sees the group."""
    slow = containers["slow"]
    coded = dataclasses.replace(
        models(containers, bundles)[0],
        data=(address("data-0", slow), address("data-1", slow)),
    )
    config = http_config(coded)

    async def scenario(http: Http) -> dict[Any, float]:
        status, _ = await http.post("/v2/models/coded/infer", v2_json(inputs(1, 3)))
        assert status == 200
        return samples(await http.metrics())

    got = run(config, scenario)
    assert got["parm_groups_closed_total", labels(model="coded", kind="partial_padded")] == 1
    assert got["parm_group_fill_seconds_count", labels(model="coded")] == 1
    assert got["parm_group_fill_seconds_sum", labels(model="coded")] >= 0.2  # its fill timeout
