"""Experiment files: the cross product of data sets x models x k x codes x losses.

An experiment file (JSON, or YAML when PyYAML is installed) names lists and settings::

    {
      "out": "runs/mnist",
      "datasets": ["npz:../shared/data/mnist10k.npz"],
      "models": ["lenet5"],
      "k": [2, 3, 4],
      "codes": ["sum", "concat"],
      "losses": ["mse"],
      "base": {"epochs": 30},
      "parity": {"epochs": 60},
      "eval": {"rounds": 10},
      "device": "auto"
    }

``base`` and ``parity`` are `train.base.BaseConfig` / `train.parity.ParityConfig` fields;
paths are relative to the working folder, as on the command line.
Each (data set, model) gets one base model; each (k, code, loss) a parity model for it,
evaluated on the test set.  Output layout under ``out``::

    <dataset>/<model>/base/                    base bundle, metrics.json, checkpoint.pt
    <dataset>/<model>/k<k>-<code>-<loss>/      parity bundle, metrics.json, checkpoint.pt
    <dataset>/<model>/k<k>-<code>-<loss>/eval/ metrics.json, accuracy.png (`parm eval`)
    summary.json, summary.md                   one row per parity model

``<dataset>`` is the data set's kind (``mnist``, ``cifar10``...) or an npz file's stem.
A finished run (its ``eval/metrics.json`` exists) is skipped; an interrupted one resumes
from its checkpoint, so re-running the same command completes an experiment.
"""

from __future__ import annotations

import itertools
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from train.base import BaseConfig, train_base
from train.common import METRICS_FILE, write_json
from train.data import Split, load_dataset
from train.evaluate import run_eval
from train.parity import ParityConfig, train_parity

log = logging.getLogger("train")

LISTS = ("datasets", "models", "k", "codes", "losses")


class ExperimentError(ValueError):
    """An experiment file is malformed."""


@dataclass(frozen=True)
class Experiment:
    """A parsed experiment file."""

    out: Path
    datasets: list[str]
    models: list[str]
    k: list[int]
    codes: list[str] = field(default_factory=lambda: ["sum"])
    losses: list[str] = field(default_factory=lambda: ["mse"])
    base: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, Any] = field(default_factory=dict)
    eval: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"


def load_experiment(path: Path) -> Experiment:
    """Parse ``path`` (``.json``, or ``.yaml``/``.yml`` with PyYAML)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise ExperimentError(f"{path}: YAML needs PyYAML (pip install pyyaml)") from None
        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    return parse_experiment(data, path)


def parse_experiment(data: Any, where: Path) -> Experiment:
    """Validate an experiment object (paths are relative to the working folder, as on the
    command line)."""
    if not isinstance(data, dict):
        raise ExperimentError(f"{where}: expected an object, got {type(data).__name__}")
    known = set(Experiment.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ExperimentError(f"{where}: unknown field(s) {unknown}; expected {sorted(known)}")
    for name in LISTS:
        if name in data and not (isinstance(data[name], list) and data[name]):
            raise ExperimentError(f"{where}: {name!r} must be a non-empty list")
    missing = [name for name in ("datasets", "models", "k") if name not in data]
    if missing:
        raise ExperimentError(f"{where}: missing field(s) {missing}")
    return Experiment(**(data | {"out": Path(data.get("out", "runs"))}))


def dataset_slug(spec: str) -> str:
    """The folder name of a data set: its kind, or an npz file's stem."""
    kind, _, where = spec.partition(":")
    return Path(where).stem if kind == "npz" else kind


def run_experiment(
    experiment: Experiment, *, out: Path | None = None, device: str | None = None
) -> list[dict[str, Any]]:
    """Train and evaluate every combination; returns (and writes) the summary rows."""
    root = out or experiment.out
    device = device or experiment.device
    rows = []
    for spec, model in itertools.product(experiment.datasets, experiment.models):
        split = load_dataset(spec)
        folder = root / dataset_slug(spec) / model
        base_dir = _ensure_base(split, experiment, model, folder / "base", device)
        for k, code, loss in itertools.product(experiment.k, experiment.codes, experiment.losses):
            run_dir = folder / f"k{k}-{code}-{loss}"
            config = ParityConfig(**(experiment.parity | {"k": k, "code": code, "loss": loss}))
            rows.append(_parity_run(split, base_dir, config, run_dir, experiment, device))
            _write_summary(root, rows)
    return rows


def _ensure_base(
    split: Split, experiment: Experiment, model: str, base_dir: Path, device: str
) -> Path:
    if not (base_dir / METRICS_FILE).exists():
        config = BaseConfig(**({"architecture": model, "arch_args": {}} | experiment.base))
        log.info("training base model %s on %s into %s", model, split.name, base_dir)
        train_base(split, config, base_dir, name=f"{dataset_slug(split.name)}-{model}",
                   device=device, checkpoint=True)  # fmt: skip
    return base_dir


def _parity_run(
    split: Split,
    base_dir: Path,
    config: ParityConfig,
    run_dir: Path,
    experiment: Experiment,
    device: str,
) -> dict[str, Any]:
    eval_file = run_dir / "eval" / METRICS_FILE
    if not eval_file.exists():
        if not (run_dir / METRICS_FILE).exists():
            log.info("training parity model k=%d %s %s into %s", config.k, config.code,
                     config.loss, run_dir)  # fmt: skip
            train_parity(base_dir, split, config, run_dir, name=run_dir.name, device=device,
                         checkpoint=True)  # fmt: skip
        run_eval(base_dir, [run_dir], split, run_dir / "eval", device=device, **experiment.eval)
    metrics = json.loads(eval_file.read_text())
    trained = json.loads((run_dir / METRICS_FILE).read_text())
    return {
        "dataset": split.name,
        "model": base_dir.parent.name,
        "k": config.k,
        "code": config.code,
        "loss": config.loss,
        "A_a": metrics["A_a"],
        "A_d": metrics["A_d"],
        "A_d_agreement": metrics["A_d_agreement"],
        "train_seconds": trained["train_seconds"],
        "run": str(run_dir),
    }


def _write_summary(root: Path, rows: list[dict[str, Any]]) -> None:
    write_json(root / "summary.json", rows)
    lines = [
        "| dataset | model | k | code | loss | A_a | A_d | agreement | train s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['model']} | {r['k']} | {r['code']} | {r['loss']} | "
            f"{r['A_a']:.2%} | {r['A_d']:.2%} | {r['A_d_agreement']:.2%} | "
            f"{r['train_seconds']:.0f} |"
        )
    (root / "summary.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
