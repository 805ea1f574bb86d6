"""``parm train`` and ``parm eval`` end to end, through the real ``parm`` entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.main import main
from common.bundle import read_manifest

FAST = ["--threads", "1", "--device", "cpu", "--warmup-epochs", "0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    base = ["train", "base", "--dataset", "digits", "--model", "mlp", "--out", str(root / "base")]
    assert main([*base, "--epochs", "2", "--arch-args", '{"hidden": [32]}', *FAST]) == 0
    parity = ["train", "parity", "--base", str(root / "base"), "--dataset", "digits",
              "--k", "2", "--code", "sum", "--out", str(root / "parity"), "--epochs", "2",
              "--loss", "kl"]  # fmt: skip
    assert main([*parity, *FAST]) == 0
    return root


def test_train_writes_bundles_with_their_configs(runs: Path):
    base, parity = read_manifest(runs / "base"), read_manifest(runs / "parity")
    assert base.arch_args["hidden"] == [32]
    assert base.metrics["config"]["epochs"] == 2
    assert parity.parity is not None and (parity.parity.k, parity.parity.code) == (2, "sum")
    assert parity.metrics["config"]["loss"] == "kl"
    assert (runs / "parity" / "checkpoint.pt").exists()


def test_eval_writes_the_metrics_file(runs: Path, capsys: pytest.CaptureFixture[str]):
    out = runs / "eval"
    code = main(["eval", "--base", str(runs / "base"), "--parity", str(runs / "parity"),
                 "--dataset", "digits", "--out", str(out), "--rounds", "2"])  # fmt: skip
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"A_a", "A_d", "A_d_agreement", "A_o", "k", "code"} <= metrics.keys()
    assert set(metrics["A_o"]) == {"0.01", "0.05", "0.1", "0.2"}
    assert (metrics["k"], metrics["code"]) == (2, "sum")
    assert (out / "accuracy.png").exists()
    assert "A_d = " in capsys.readouterr().out


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--code", "berrut", "--k", "3", "--r", "2"], {"code": "berrut", "k": 3, "r": 2}),
        (["--code", "approxifer", "--k", "2"], {"code": "approxifer", "n": 3, "stragglers": 1}),
    ],
)
def test_eval_of_a_training_free_code_takes_no_parity(
    runs: Path, options: list[str], expected: dict[str, object]
):
    out = runs / f"eval-{expected['code']}"
    args = ["eval", "--base", str(runs / "base"), "--dataset", "digits", "--out", str(out)]
    assert main([*args, *options, "--rounds", "1"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert {key: metrics[key] for key in expected} == expected


def test_resume_reads_the_config_from_the_checkpoint(runs: Path):
    # --resume ignores the command line's hyperparameters: the checkpoint's config rules.
    args = ["train", "parity", "--base", str(runs / "base"), "--dataset", "digits",
            "--out", str(runs / "parity"), "--resume", "--epochs", "99",
            "--device", "cpu"]  # fmt: skip
    assert main(args) == 0
    assert read_manifest(runs / "parity").metrics["config"]["epochs"] == 2


def test_another_config_in_the_same_folder_is_refused(runs: Path, capsys):
    args = ["train", "parity", "--base", str(runs / "base"), "--dataset", "digits",
            "--out", str(runs / "parity"), "--epochs", "3", *FAST]  # fmt: skip
    assert main(args) == 2
    assert "another config" in capsys.readouterr().err


def test_learned_and_experiment_commands(runs: Path, tmp_path: Path):
    args = ["train", "learned", "--base", str(runs / "base"), "--dataset", "digits", "--k", "2",
            "--out", str(tmp_path / "learned"), "--epochs", "1", "--groups-per-epoch", "64",
            *FAST]  # fmt: skip
    assert main(args) == 0
    assert (tmp_path / "learned" / "encoder" / "manifest.json").exists()
    experiment = {"datasets": ["digits"], "models": ["mlp"], "k": [2], "device": "cpu",
                  "base": {"epochs": 1, "arch_args": {"hidden": [8]}, "threads": 1},
                  "parity": {"epochs": 1, "groups_per_epoch": 64, "threads": 1},
                  "eval": {"rounds": 1}}  # fmt: skip
    (tmp_path / "exp.json").write_text(json.dumps(experiment))
    assert (
        main(["train", "experiment", str(tmp_path / "exp.json"), "--out", str(tmp_path / "x")]) == 0
    )
    assert (tmp_path / "x" / "summary.md").exists()


def test_bad_dataset_is_a_clean_error(tmp_path: Path, capsys):
    assert main(["train", "base", "--dataset", "svhn:/x", "--out", str(tmp_path / "b")]) == 2
    assert "unknown data set kind 'svhn'" in capsys.readouterr().err
