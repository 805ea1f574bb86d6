"""``parm up`` / ``parm predict`` as a user runs them: real processes on loopback."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.netns import NetworkSpec
from tests.model_container.container_process import alive, free_port

PARM = [sys.executable, "-m", "cli"]
READY_TIMEOUT_S = 240


def children(pid: int) -> list[int]:
    tasks = Path(f"/proc/{pid}/task")
    found: list[int] = []
    for task in tasks.iterdir():
        text = (task / "children").read_text().split()
        found += [int(p) for p in text]
    return found


FREE_HTTP = ("--http-port", "0", "--metrics-port", "0")


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[subprocess.Popen[str], int, list[str]]]:
    """`parm up` on the demo, with data-0 slowed so that reconstructions happen."""
    home = tmp_path_factory.mktemp("parm-home")
    port = free_port()
    env = {**os.environ, "PARM_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        # HTTP and metrics on free ports too (parm up's defaults are 8000 and 8002)
        [*PARM, "up", "--grpc-port", str(port), *FREE_HTTP, "--inject", "data-0:delay_ms=300"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    lines: list[str] = []
    assert proc.stdout is not None
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("try:"):
                break
        else:
            pytest.fail(f"parm up ended before it was ready: {''.join(lines)}")
        yield proc, port, lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()


def test_up_prints_the_demo_accuracy_and_endpoints(
    cluster: tuple[subprocess.Popen[str], int, list[str]],
) -> None:
    _, port, lines = cluster
    text = "".join(lines)
    accuracy = re.search(r"A_a = ([\d.]+)% \(available\), A_d = ([\d.]+)%", text)
    assert accuracy is not None, text
    assert float(accuracy[1]) > 90 and float(accuracy[2]) > 80
    assert f"frontend  v2 gRPC  127.0.0.1:{port}" in text
    for name in ("data-0", "data-1", "parity-0"):
        assert f"digits/{name}" in text


def test_predict_shows_each_answer_with_its_provenance(
    cluster: tuple[subprocess.Popen[str], int, list[str]],
) -> None:
    _, port, _ = cluster
    out = subprocess.run(
        [*PARM, "predict", "--url", f"127.0.0.1:{port}", "-n", "6"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    answers = re.findall(r"query \d: label (\d) -> predicted (\d)  \[(\w+)\]", out)
    assert len(answers) == 6, out
    assert {source for *_, source in answers} <= {"original", "reconstructed"}
    assert "reconstructed" in out  # data-0 answers 300 ms late: its queries are decoded
    correct = sum(label == predicted for label, predicted, _ in answers)
    assert correct >= 4


def test_sigterm_stops_every_child(cluster: tuple[subprocess.Popen[str], int, list[str]]) -> None:
    proc, _, _ = cluster
    kids = children(proc.pid)
    assert len(kids) == 3
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    assert not any(alive(pid) for pid in kids)


def test_bad_options_are_clear_errors(tmp_path: Path) -> None:
    result = subprocess.run(
        [*PARM, "up", "--config", str(tmp_path / "missing.toml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "parm: error: cannot read deployment file" in result.stderr
    result = subprocess.run(
        [*PARM, "up", "--inject", "data-0:speed=1", "--base", str(tmp_path), "--mode", "none",
         "--name", "m"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "expected delay_ms=, prob= or fail_prob=" in result.stderr


class _Started(Exception):
    """Raised by the fake cluster: what parm up would have started is recorded."""


def recorded_starts(monkeypatch: pytest.MonkeyPatch) -> list[tuple[object, object]]:
    """``parm up``'s LocalCluster replaced: each start records (deployment, network)."""
    import deploy.local

    started: list[tuple[object, object]] = []

    def fake_cluster(deployment: object, log_dir: Path, network: object = None) -> None:
        started.append((deployment, network))
        raise _Started

    monkeypatch.setattr(deploy.local, "LocalCluster", fake_cluster)
    return started


def test_up_with_the_berrut_code_needs_no_parity_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.main import main

    started = recorded_starts(monkeypatch)
    args = ["up", "--base", str(tmp_path), "--name", "m", "--code", "berrut", "--k", "3",
            "--r", "2", "--parity-instances", "2", *FREE_HTTP]  # fmt: skip
    with pytest.raises(_Started):
        main(args)
    ((deployment, _),) = started
    (model,) = deployment.models  # type: ignore[attr-defined]
    assert (model.k, model.r, model.parity_bundles, model.base_answers_parity) == (3, 2, (), True)
    assert model.bundle_for("parity-1") == tmp_path
    too_few = ["up", "--base", str(tmp_path), "--name", "m", "--code", "berrut", "--r", "2"]
    assert main([*too_few, *FREE_HTTP]) == 2  # two parities, one parity instance


def test_up_with_a_learned_code_takes_its_run_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.main import main

    started = recorded_starts(monkeypatch)
    args = ["up", "--base", str(tmp_path), "--name", "m", "--code", "learned",
            "--code-bundle", str(tmp_path / "run"), "--r", "1", *FREE_HTTP]  # fmt: skip
    with pytest.raises(_Started):
        main(args)
    ((deployment, _),) = started
    (model,) = deployment.models  # type: ignore[attr-defined]
    assert (model.r, model.parity_bundles, model.base_answers_parity) == (1, (), True)
    assert model.settings["code_bundle"] == tmp_path / "run"


@pytest.mark.parametrize(
    ("flags", "spec"),
    [
        ([], None),
        (["--network", "netns"], NetworkSpec()),
        (["--network", "netns", "--link-mbit", "50", "--link-queue-ms", "5"], NetworkSpec(50, 5)),
    ],
)
def test_up_puts_the_instances_on_the_network_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flags: list[str], spec: object
) -> None:
    from cli.main import main

    started = recorded_starts(monkeypatch)
    with pytest.raises(_Started):
        main(["up", "--base", str(tmp_path), "--name", "m", "--mode", "none", *flags, *FREE_HTTP])
    assert [network for _, network in started] == [spec]


def test_link_options_without_a_network_are_an_error(tmp_path: Path) -> None:
    from cli.main import main

    args = ["up", "--base", str(tmp_path), "--name", "m", "--mode", "none", "--link-mbit", "5"]
    assert main([*args, *FREE_HTTP]) == 2


def test_up_runs_the_frontend_workers_asked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli.main import main

    started = recorded_starts(monkeypatch)
    base = ["up", "--base", str(tmp_path), "--name", "m", "--mode", "none", *FREE_HTTP]
    for flags in ([], ["--frontend-workers", "4"]):
        with pytest.raises(_Started):
            main([*base, *flags])
    assert [d.frontend_workers for d, _ in started] == [1, 4]  # type: ignore[attr-defined]
    assert main([*base, "--frontend-workers", "0"]) == 2
