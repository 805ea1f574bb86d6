"""Degraded-mode evaluation through the code module's decoders."""

from __future__ import annotations

import json
from math import comb
from pathlib import Path

import pytest
import torch

from common.bundle import BundleMismatchError, ParityInfo, read_manifest
from common.codes import make_code
from common.models import build, load_weights, save_bundle
from train.base import BaseConfig, train_base
from train.data import Split
from train.evaluate import (
    F_VALUES,
    erasure_patterns,
    eval_groups,
    evaluate,
    overall,
    run_eval,
)
from train.learned import LearnedConfig, train_learned


@pytest.fixture(scope="module")
def linear_base(split: Split, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("linear") / "base"
    config = BaseConfig(arch_args={"hidden": [], "bias": False}, epochs=5, threads=1)
    train_base(split, config, path, name="linear")
    return path


def exact_parity(base_dir: Path, k: int, path: Path, code: str = "sum", r: int = 1, i: int = 0):
    """For linear F(x) = W (x - m) / s, parity i of a linear code with row a is computed
    exactly by W (P - sum(a) m) / s: the base weights with a shifted mean."""
    base = read_manifest(base_dir)
    net = build(base.architecture, **base.arch_args)
    net.load_state_dict(load_weights(base_dir, base))
    pre = base.preprocessing
    weight = sum(make_code(code, k, r).combine(torch.ones(k, 1))[i].tolist()[0:1])
    save_bundle(
        path,
        name="exact",
        role="parity",
        architecture=base.architecture,
        arch_args=base.arch_args,
        module=net,
        input_spec=base.inputs[0],
        output_spec=base.outputs[0],
        preprocessing={"mean": [weight * pre["mean"][0]], "std": pre["std"]},
        parity=ParityInfo(k, code, base.weights_sha256, base.name, r, i),
    )
    return path


@pytest.mark.parametrize("k", [2, 3, 4])
def test_exact_parity_reconstructs_exactly(linear_base: Path, split: Split, tmp_path: Path, k):
    parity = exact_parity(linear_base, k, tmp_path / "parity")
    metrics = evaluate(linear_base, parity, split, k, rounds=3)
    assert metrics["recon_mse"] < 1e-8
    assert metrics["A_d_agreement"] == 1.0
    assert metrics["A_d"] == pytest.approx(metrics["A_a"])
    assert metrics["groups"] == 3 * (len(split.x_test) // k)
    assert (metrics["k"], metrics["r"], metrics["code"]) == (k, 1, "sum")


def test_k_and_code_default_to_the_parity_models(linear_base: Path, split: Split, tmp_path):
    parity = exact_parity(linear_base, 3, tmp_path / "parity")
    assert evaluate(linear_base, parity, split, rounds=1)["k"] == 3


@pytest.mark.parametrize(("k", "r"), [(2, 2), (3, 2)])
def test_linear_code_decodes_every_erasure_pattern(linear_base, split, tmp_path, k, r):
    parities = [exact_parity(linear_base, k, tmp_path / f"p{i}", "linear", r, i) for i in range(r)]
    metrics = evaluate(linear_base, list(reversed(parities)), split, rounds=1)  # any order
    assert (metrics["k"], metrics["r"], metrics["code"]) == (k, r, "linear")
    assert len(metrics["patterns"]) == len(erasure_patterns(k, r))
    assert metrics["recon_mse"] < 1e-6
    assert metrics["A_d_agreement"] == 1.0
    assert all(p["A_d_agreement"] == 1.0 for p in metrics["patterns"])


def test_run_eval_writes_metrics_and_a_plot(linear_base: Path, split: Split, tmp_path: Path):
    parity = exact_parity(linear_base, 2, tmp_path / "parity")
    metrics = run_eval(linear_base, [parity], split, tmp_path / "eval", rounds=1)
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert {"A_a", "A_d", "A_d_agreement", "A_o", "k", "code", "A_default"} <= saved.keys()
    assert list(saved["A_o"]) == [str(f) for f in F_VALUES]
    assert (tmp_path / "eval" / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    most_common = int(torch.bincount(torch.from_numpy(split.y_train)).argmax())
    assert saved["default_class"] == most_common
    with pytest.raises(BundleMismatchError, match="at least one parity"):
        run_eval(linear_base, [], split, tmp_path / "none")


def test_overall_accuracy():
    assert overall(0.9, 0.5) == {str(f): pytest.approx((1 - f) * 0.9 + f * 0.5) for f in F_VALUES}


@pytest.mark.parametrize(("k", "r"), [(2, 1), (4, 1), (2, 2), (3, 2), (4, 3)])
def test_erasure_patterns(k, r):
    patterns = erasure_patterns(k, r)
    # every set of 1..r erased outputs among k + r, minus those that erase parities only
    expected = sum(comb(k + r, e) - comb(r, e) for e in range(1, r + 1))
    assert len(patterns) == expected
    assert all(missing and len(missing) + len(lost) <= r for missing, lost in patterns)
    if r == 1:
        assert patterns == [((j,), ()) for j in range(k)]


def test_evaluate_refuses_a_parity_model_for_another_k(linear_base: Path, split, tmp_path):
    parity = exact_parity(linear_base, 2, tmp_path / "parity")
    with pytest.raises(BundleMismatchError, match="trained for k=2, but k=3"):
        evaluate(linear_base, parity, split, 3)


def test_evaluate_refuses_a_parity_model_for_another_base(linear_base, base_dir, split, tmp_path):
    parity = exact_parity(linear_base, 2, tmp_path / "parity")
    with pytest.raises(BundleMismatchError, match="trained for base weights"):
        evaluate(base_dir, parity, split, 2)


def test_evaluate_refuses_a_missing_parity_of_a_linear_code(linear_base, split, tmp_path):
    parity = exact_parity(linear_base, 2, tmp_path / "p1", "linear", 2, 1)
    with pytest.raises(BundleMismatchError, match="trained for r=2, but r=1"):
        evaluate(linear_base, [parity], split)


@pytest.mark.parametrize(("n", "k"), [(10, 2), (10, 3), (360, 4)])
def test_eval_groups_cover_each_round_once(n, k):
    groups = eval_groups(n, k, rounds=2, seed=0)
    per_round = n // k
    assert groups.shape == (k, 2 * per_round)
    for r in range(2):
        members = groups[:, r * per_round : (r + 1) * per_round].flatten()
        assert len(torch.unique(members)) == per_round * k
    assert torch.equal(groups, eval_groups(n, k, rounds=2, seed=0))


# ------------------------------------------------------------------ training-free codes


def test_berrut_k2_needs_no_parity_and_is_exact_for_an_affine_base(linear_base, split):
    # F(x) = W (x - m) / s is affine and the k=2 parity is the mean: 2 F(mean) - F(other).
    metrics = evaluate(linear_base, [], split, 2, code="berrut", rounds=1)
    assert (metrics["k"], metrics["r"], metrics["code"]) == (2, 1, "berrut")
    assert metrics["recon_mse"] < 1e-8
    assert metrics["A_d"] == pytest.approx(metrics["A_a"])


@pytest.mark.parametrize(("code", "exact"), [("berrut", True), ("berrut-interpolate", False)])
def test_berrut_with_r_parities_decodes_every_erasure_pattern(linear_base, split, code, exact):
    # the solve decoder inverts the encoder: exact for the affine base; interpolation is not
    metrics = evaluate(linear_base, [], split, 4, code=code, r=2, rounds=1)
    assert (metrics["k"], metrics["r"], metrics["code"]) == (4, 2, code)
    assert len(metrics["patterns"]) == len(erasure_patterns(4, 2))
    assert (metrics["recon_mse"] < 1e-8) is exact
    assert (metrics["A_d"] == pytest.approx(metrics["A_a"])) is exact


@pytest.mark.parametrize(("k", "n", "stragglers"), [(2, None, 1), (4, 6, 2)])
def test_approxifer_decodes_every_output_under_every_straggler_pattern(
    linear_base, split, tmp_path, k, n, stragglers
):
    metrics = run_eval(
        linear_base, [], split, tmp_path / "eval", k=k, code="approxifer", n=n,
        stragglers=stragglers, rounds=1,
    )  # fmt: skip
    assert (metrics["code"], metrics["k"], metrics["stragglers"]) == ("approxifer", k, stragglers)
    assert metrics["n"] == (k + stragglers if n is None else n)
    assert 0.0 < metrics["A_d"] <= 1.0 and 0.0 < metrics["A_d_agreement"] <= 1.0
    assert metrics["A_d_worst_slot"] <= metrics["A_d"]
    assert (tmp_path / "eval" / "accuracy.png").exists()


@pytest.mark.parametrize(
    ("parity", "k", "code"),
    [(["p"], 2, "berrut"), ([], None, "berrut"), ([], None, "approxifer")],
)
def test_training_free_codes_need_k_and_take_no_parity(linear_base, split, parity, k, code):
    with pytest.raises(BundleMismatchError, match=f"the {code} code needs k"):
        evaluate(linear_base, parity, split, k, code=code)


@pytest.fixture(scope="module")
def learned_run(base_dir: Path, split: Split, tmp_path_factory: pytest.TempPathFactory):
    """A learned code for the digits base, trained briefly; its run folder and metrics."""
    config = LearnedConfig(
        epochs=1, threads=1, warmup_epochs=0.0, groups_per_epoch=64, batch_size=32,
        eval_rounds=2, val_rounds=1,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("learned") / "run"
    return path, train_learned(base_dir, split, config, path, name="q")


def test_parm_eval_of_a_learned_code_decodes_as_training_measured(
    base_dir: Path, split: Split, learned_run, tmp_path: Path
) -> None:
    run, trained = learned_run
    metrics = run_eval(base_dir, [], split, tmp_path, code="learned", code_bundle=run, rounds=2)
    assert (metrics["code"], metrics["k"], metrics["r"]) == ("learned", 2, 1)
    # the same groups (seed 0, 2 rounds) decoded through the served code's NumPy face
    assert metrics["A_d"] == pytest.approx(trained["A_d"], abs=1e-6)
    assert metrics["A_a"] == pytest.approx(trained["A_a"], abs=1e-6)
    assert metrics["encode_ms"] > 0 and metrics["decode_ms"] > 0


@pytest.mark.parametrize(
    ("parity", "code", "bundle"),
    [(["p"], "learned", True), ([], "sum", True), ([], "learned", False)],
)
def test_a_learned_code_takes_its_run_and_no_parity(
    base_dir: Path, split: Split, learned_run, parity, code, bundle
) -> None:
    run = learned_run[0] if bundle else None
    with pytest.raises(BundleMismatchError, match="a learned code takes its training run"):
        evaluate(base_dir, parity, split, 2, code=code, code_bundle=run)


def test_a_learned_code_for_another_k_is_refused(base_dir: Path, split: Split, learned_run):
    with pytest.raises(BundleMismatchError, match="but k=3, r=1 is configured"):
        evaluate(base_dir, [], split, 3, code="learned", code_bundle=learned_run[0])
