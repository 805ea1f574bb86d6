"""Experiment files: parsing, the cross product, the folder layout, resuming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from train.experiment import (
    ExperimentError,
    dataset_slug,
    load_experiment,
    parse_experiment,
    run_experiment,
)

TINY = {
    "datasets": ["digits"],
    "models": ["mlp"],
    "k": [2],
    "codes": ["sum"],
    "losses": ["mse", "kl"],
    "base": {"epochs": 1, "threads": 1, "arch_args": {"hidden": [16]}},
    "parity": {
        "epochs": 1,
        "threads": 1,
        "groups_per_epoch": 64,
        "eval_rounds": 1,
        "preprocessing_groups": 500,
        "val_rounds": 1,
    },
    "eval": {"rounds": 1},
    "device": "cpu",
}


def test_cross_product_layout_and_rerun(tmp_path: Path):
    (tmp_path / "exp.json").write_text(json.dumps(TINY | {"out": str(tmp_path / "runs")}))
    experiment = load_experiment(tmp_path / "exp.json")
    assert experiment.out == tmp_path / "runs"
    rows = run_experiment(experiment)
    assert [(r["k"], r["loss"]) for r in rows] == [(2, "mse"), (2, "kl")]
    root = tmp_path / "runs" / "digits" / "mlp"
    assert (root / "base" / "manifest.json").exists()
    for loss in ("mse", "kl"):
        run = root / f"k2-sum-{loss}"
        assert (run / "manifest.json").exists() and (run / "metrics.json").exists()
        assert (run / "eval" / "metrics.json").exists()
        assert (run / "eval" / "accuracy.png").exists()
    summary = json.loads((tmp_path / "runs" / "summary.json").read_text())
    assert summary == rows
    assert (tmp_path / "runs" / "summary.md").read_text().count("| digits |") == 2
    # A second run finds everything done and trains nothing.
    before = (root / "k2-sum-mse" / "weights.safetensors").stat().st_mtime_ns
    assert run_experiment(experiment) == rows
    assert (root / "k2-sum-mse" / "weights.safetensors").stat().st_mtime_ns == before


def test_yaml_files(tmp_path: Path):
    pytest.importorskip("yaml")
    (tmp_path / "exp.yaml").write_text("datasets: [digits]\nmodels: [mlp]\nk: [2, 4]\n")
    experiment = load_experiment(tmp_path / "exp.yaml")
    assert experiment.k == [2, 4] and experiment.codes == ["sum"]
    assert experiment.out == Path("runs")  # relative to the working folder


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ([1], "expected an object"),
        ({"datasets": ["digits"], "models": ["mlp"]}, r"missing field\(s\) \['k'\]"),
        (TINY | {"k": []}, "'k' must be a non-empty list"),
        (TINY | {"optimiser": "sgd"}, r"unknown field\(s\) \['optimiser'\]"),
    ],
)
def test_bad_files(data, message):
    with pytest.raises(ExperimentError, match=message):
        parse_experiment(data, Path("exp.json"))


@pytest.mark.parametrize(
    ("spec", "slug"),
    [("digits", "digits"), ("npz:../data/mnist10k.npz", "mnist10k"), ("cifar10:/d", "cifar10")],
)
def test_dataset_slug(spec, slug):
    assert dataset_slug(spec) == slug
