"""Accuracy of a base model and of a parity model's reconstructions (degraded mode).

- ``A_a``: top-1 accuracy of the base model F on the test set (all outputs available).
- ``A_d``: top-1 accuracy of *reconstructed* outputs: test inputs are put in random groups
  of k (``rounds`` passes over the test set), outputs are erased, and the missing ones are
  decoded with ``code.decode_erasures`` from the parity models' outputs and the other data
  outputs.  With r=1 that is every one of the k single erasures of every group; with r>1,
  every pattern of at most r erased outputs (data or parity) that hits a data output.
- ``A_d_agreement``: how often a reconstruction's argmax equals F's own argmax.
- ``recon_mse``: mean squared error between reconstructed and true outputs of F.
- ``A_o``: overall accuracy when a fraction f of outputs is unavailable,
  ``(1 - f) A_a + f A_d``, at f = 0.01, 0.05, 0.1, 0.2; ``A_o_default`` is the same with
  Clipper's default prediction (the most frequent training class) in place of A_d.

A training-free code (``berrut``) needs no parity bundle: its r parity queries are
answered by the base model itself; nor does a learned code (``learned``, given its
training run), whose encoder and decoder are networks.  ``encode_ms`` and ``decode_ms``
are the code's own time per group at batch size 1 (`coding_latency`).  ``approxifer``
is the non-systematic Berrut setting of ApproxIFER (`evaluate_approxifer`): each group
of k is sent as n interpolated queries, ``stragglers`` of the n answers are lost (every
such pattern), and *every* output is decoded, so its ``A_d`` is the accuracy of all
answers, not only late ones.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from common.bundle import BundleMismatchError, Manifest, check_parity_for, learned_code_info
from common.codes import BASE_ANSWERS_PARITY, LEARNED, TRAINING_FREE, ApproxIFER, Code, make_code
from common.learned import load_learned_code
from common.models import load_model
from train.common import METRICS_FILE, predict, resolve_device, top1, write_json
from train.data import Split

F_VALUES = (0.01, 0.05, 0.1, 0.2)
PLOT_FILE = "accuracy.png"

Pattern = tuple[tuple[int, ...], tuple[int, ...]]  # (missing data slots, lost parities)

#: ``code`` name of ApproxIFER's non-systematic setting (not a `common.codes.Code`)
APPROXIFER = "approxifer"


def erasure_patterns(k: int, r: int) -> list[Pattern]:
    """Every set of at most r erased outputs among k data + r parity with a data one."""
    patterns = []
    for size in range(1, r + 1):
        for erased in itertools.combinations(range(k + r), size):
            missing = tuple(e for e in erased if e < k)
            if missing:
                patterns.append((missing, tuple(e - k for e in erased if e >= k)))
    return patterns


def eval_groups(n: int, k: int, rounds: int, seed: int) -> torch.Tensor:
    """``(k, rounds * (n // k))`` indices: each round splits a fresh permutation into groups."""
    generator = torch.Generator().manual_seed(seed)
    perms = [torch.randperm(n, generator=generator)[: n - n % k] for _ in range(rounds)]
    return torch.cat(perms).view(-1, k).T  # (k, G)


def decode_pattern(
    code: Code,
    outputs: torch.Tensor,
    parity_outs: Sequence[torch.Tensor | None],
    pattern: Pattern,
) -> list[torch.Tensor]:
    """The reconstructions ``(G, classes)`` of the missing slots of one erasure pattern.

    ``outputs`` ``(k, G, classes)`` are F's outputs by slot; erased slots are zeroed before
    decoding, as the frontend never has them.  This is exactly what serving computes.
    """
    missing, lost = pattern
    available = [None if i in lost else p for i, p in enumerate(parity_outs)]
    erased = outputs.clone()
    erased[list(missing)] = 0  # the decoder must not read erased slots
    return code.decode_erasures(available, erased, missing)


@torch.no_grad()
def degraded(
    code: Code,
    base_out: torch.Tensor,
    parity_outs: Sequence[torch.Tensor | None],
    groups: torch.Tensor,
    labels: torch.Tensor,
    patterns: Sequence[Pattern],
) -> dict[str, Any]:
    """A_d, A_d_agreement and recon_mse over ``patterns`` for groups ``(k, G)``.

    ``base_out`` ``(N, classes)`` holds F's outputs; ``parity_outs[i]`` ``(G, classes)`` the
    output of parity model i on each group (None: that parity is never available).
    """
    outputs = base_out[groups]  # (k, G, classes)
    totals = np.zeros(3)
    per_pattern = []
    for missing, lost in patterns:
        rebuilt = decode_pattern(code, outputs, parity_outs, (missing, lost))  # (G, classes) each
        scores = np.zeros(3)
        for m, value in zip(missing, rebuilt, strict=True):
            scores += (
                top1(value, labels[groups[m]]),
                top1(value, outputs[m].argmax(-1)),
                float(((value - outputs[m]) ** 2).mean()),
            )
        totals += scores
        a_d, agreement, _ = (scores / len(missing)).tolist()
        per_pattern.append(
            {
                "missing": list(missing),
                "lost_parities": list(lost),
                "A_d": a_d,
                "A_d_agreement": agreement,
            }
        )
    count = sum(len(m) for m, _ in patterns)
    a_d, agreement, mse = (totals / count).tolist()
    return {"A_d": a_d, "A_d_agreement": agreement, "recon_mse": mse, "patterns": per_pattern}


def coding_latency(
    code: Code, group: torch.Tensor, outputs_of: torch.Tensor, repeats: int = 50
) -> dict[str, float]:
    """Median milliseconds to encode one group ``(k, 1, *sample)`` (all r parities) and
    to decode one missing output from ``(k, 1, classes)``: what the frontend spends per
    group at batch size 1, on NumPy arrays as it holds them."""
    inputs, outputs = group.cpu().numpy(), outputs_of.cpu().numpy()
    available = [outputs[0]] + [None] * (code.r - 1)  # any numbers: the time is the same

    def encode() -> None:
        code.encode_all(inputs)

    def decode() -> None:
        code.decode_erasures(available, outputs, [0])

    return {"encode_ms": _median_ms(encode, repeats), "decode_ms": _median_ms(decode, repeats)}


def _median_ms(call: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return round(1000 * float(np.median(times)), 4)


def _default_prediction(split: Split, y: torch.Tensor, a_a: float) -> dict[str, Any]:
    """Clipper's default prediction (the most frequent training class) in place of A_d."""
    default_class = int(np.bincount(split.y_train).argmax())
    a_default = float((y == default_class).float().mean())
    return {
        "default_class": default_class,
        "A_default": a_default,
        "A_o_default": overall(a_a, a_default),
    }


def overall(a_a: float, a_d: float) -> dict[str, float]:
    """``A_o`` at each f of `F_VALUES` (JSON keys)."""
    return {str(f): (1 - f) * a_a + f * a_d for f in F_VALUES}


@torch.no_grad()
def evaluate_models(
    base: nn.Module,
    parity: nn.Module | Sequence[nn.Module],
    split: Split,
    k: int,
    *,
    code_name: str = "sum",
    rounds: int = 10,
    seed: int = 0,
    code: Code | None = None,
) -> dict[str, Any]:
    """The metrics of the module docstring for models in memory (each with preprocessing).

    ``parity`` is one model (r=1) or r models, parity i computing the code's parity i.
    ``code`` (a learned code) replaces the code named ``code_name``.
    """
    parities = [parity] if isinstance(parity, nn.Module) else list(parity)
    device = next(iter(base.parameters())).device
    code = code or make_code(code_name, k, len(parities))
    x = torch.from_numpy(split.x_test).to(device)
    y = torch.from_numpy(split.y_test).to(device)
    base_out = predict(base, x)  # (N, classes)
    groups = eval_groups(len(x), k, rounds, seed).to(device)  # (k, G)
    parity_inputs = code.encode_all(x[groups])  # r x (G, *sample)
    parity_outs = [predict(p, inp) for p, inp in zip(parities, parity_inputs, strict=True)]
    patterns = erasure_patterns(k, code.r)
    result = degraded(code, base_out, parity_outs, groups, y, patterns)
    a_a = top1(base_out, y)
    if code.r == 1:
        del result["patterns"]
    return {
        "A_a": a_a,
        **result,
        **coding_latency(code, x[groups[:, :1]], outputs_of=base_out[groups[:, :1]]),
        "A_o": overall(a_a, result["A_d"]),
        **_default_prediction(split, y, a_a),
        "k": k,
        "r": code.r,
        "code": code.name,
        "groups": int(groups.shape[1]),
    }


def evaluate(
    base_dir: str | Path,
    parity_dir: str | Path | Sequence[str | Path],
    split: Split,
    k: int | None = None,
    *,
    code: str | None = None,
    r: int = 1,
    n: int | None = None,
    stragglers: int = 1,
    rounds: int = 10,
    seed: int = 0,
    device: str = "cpu",
    code_bundle: str | Path | None = None,
) -> dict[str, Any]:
    """Metrics of bundles on ``split``'s test set; k and code default to the parity's own.

    A training-free code (``berrut``, with ``r`` parities) or ``approxifer`` (``n``
    queries, ``stragglers`` lost) takes no parity bundle and needs ``k``.
    """
    dirs = [parity_dir] if isinstance(parity_dir, str | Path) else list(parity_dir)
    dev = resolve_device(device)
    base_manifest, base = load_model(base_dir, dev)
    if code == LEARNED or code_bundle is not None:
        if dirs or code_bundle is None or code not in (LEARNED, None):
            raise BundleMismatchError(
                f"a learned code takes its training run (code_bundle) and no parity bundle; "
                f"got code {code!r}, code_bundle {code_bundle} and parity bundles "
                f"{[str(d) for d in dirs]}"
            )
        info = learned_code_info(code_bundle)
        learned = load_learned_code(code_bundle, base_manifest, k or info.k, info.r).to(dev)
        metrics = evaluate_models(
            base, [base] * learned.r, split, learned.k, rounds=rounds, seed=seed, code=learned
        ) | {"code_bundle": str(code_bundle)}
    elif code == APPROXIFER or code in TRAINING_FREE:
        if dirs or k is None:
            raise BundleMismatchError(
                f"the {code} code needs k and takes no parity bundle (the base model answers "
                f"its queries); got k={k} and parity bundles {[str(d) for d in dirs]}"
            )
        if code == APPROXIFER:
            metrics = evaluate_approxifer(
                base, split, k, n=n, stragglers=stragglers, rounds=rounds, seed=seed
            )
        else:
            metrics = evaluate_models(
                base, [base] * r, split, k, code_name=code, rounds=rounds, seed=seed
            )
    else:
        metrics = _evaluate_parities(base_manifest, base, dirs, split, k, code, rounds, seed, dev)
    return metrics | {"dataset": split.name, "base": _describe(base_manifest)}


def _evaluate_parities(
    base_manifest: Manifest,
    base: nn.Module,
    dirs: Sequence[str | Path],
    split: Split,
    k: int | None,
    code: str | None,
    rounds: int,
    seed: int,
    device: torch.device,
) -> dict[str, Any]:
    """`evaluate_models` over parity bundles, each checked against the base."""
    loaded = [load_model(d, device) for d in dirs]
    loaded.sort(key=lambda pair: pair[0].parity.index if pair[0].parity else 0)
    first = loaded[0][0].parity
    k = k if k is not None else (first.k if first else 0)
    code = code if code is not None else (first.code if first else "")
    for i, (manifest, _) in enumerate(loaded):
        check_parity_for(base_manifest, manifest, k=k, code=code, r=len(loaded), index=i)
    models = [model for _, model in loaded]
    return evaluate_models(base, models, split, k, code_name=code, rounds=rounds, seed=seed)


@torch.no_grad()
def evaluate_approxifer(
    base: nn.Module,
    split: Split,
    k: int,
    *,
    n: int | None = None,
    stragglers: int = 1,
    rounds: int = 10,
    seed: int = 0,
) -> dict[str, Any]:
    """ApproxIFER's non-systematic Berrut code: every one of the k outputs is decoded.

    ``n`` queries per group (default ``k + stragglers``); ``A_d`` averages every output
    over every choice of ``stragglers`` lost answers (ApproxIFER's accuracy);
    ``A_d_worst_slot`` is the mean, over those choices, of the least accurate output.
    """
    n = k + stragglers if n is None else n
    code = ApproxIFER(k, n)
    device = next(iter(base.parameters())).device
    x = torch.from_numpy(split.x_test).to(device)
    y = torch.from_numpy(split.y_test).to(device)
    base_out = predict(base, x)  # (N, classes)
    groups = eval_groups(len(x), k, rounds, seed).to(device)  # (k, G)
    answers = [predict(base, q) for q in code.encode(x[groups])]  # n x (G, classes)
    outputs = base_out[groups]  # (k, G, classes)
    totals, count, worst = np.zeros(3), 0, []
    for lost in itertools.combinations(range(n), stragglers):
        decoded = code.decode([None if i in lost else a for i, a in enumerate(answers)])
        slots = [
            (
                top1(value, y[groups[j]]),
                top1(value, outputs[j].argmax(-1)),
                float(((value - outputs[j]) ** 2).mean()),
            )
            for j, value in enumerate(decoded)  # (G, classes) each
        ]
        totals += np.sum(slots, axis=0)
        count += len(slots)
        worst.append(min(s[0] for s in slots))
    a_d, agreement, mse = (totals / count).tolist()
    a_a = top1(base_out, y)
    return {
        "A_a": a_a,
        "A_d": a_d,
        "A_d_agreement": agreement,
        "recon_mse": mse,
        # the output the lost answers hurt most, per pattern: what ParM's A_d measures
        "A_d_worst_slot": float(np.mean(worst)),
        "A_o": overall(a_a, a_d),
        **_default_prediction(split, y, a_a),
        "k": k,
        "n": n,
        "stragglers": stragglers,
        "code": APPROXIFER,
        "groups": int(groups.shape[1]),
    }


def run_eval(
    base_dir: str | Path,
    parity_dirs: Sequence[str | Path],
    split: Split,
    out_dir: str | Path,
    **options: Any,
) -> dict[str, Any]:
    """`evaluate`, then write ``out_dir/metrics.json`` and the A_o plot ``accuracy.png``."""
    code = options.get("code")
    base_answers = code == APPROXIFER or code in BASE_ANSWERS_PARITY
    if not parity_dirs and not base_answers and options.get("code_bundle") is None:
        raise BundleMismatchError("evaluation needs at least one parity bundle")
    metrics = evaluate(base_dir, parity_dirs, split, **options)
    metrics["parity"] = [str(d) for d in parity_dirs]
    out = Path(out_dir)
    write_json(out / METRICS_FILE, metrics)
    plot_overall(metrics, out / PLOT_FILE)
    return metrics


def plot_overall(metrics: dict[str, Any], path: Path) -> None:
    """A PNG of A_o against f: the parity model, the default prediction, and A_a."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display
    from matplotlib import pyplot as plt

    f = np.linspace(0.0, max(F_VALUES), 41)
    a_a, a_d, a_default = metrics["A_a"], metrics["A_d"], metrics["A_default"]
    fig, ax = plt.subplots(figsize=(5.5, 3.8), dpi=120)
    ax.plot(f, (1 - f) * a_a + f * a_d, label=f"parity model (A_d = {a_d:.1%})")
    ax.plot(F_VALUES, [metrics["A_o"][str(v)] for v in F_VALUES], "o", color="C0")
    ax.plot(f, (1 - f) * a_a + f * a_default, "--", label="default prediction")
    ax.axhline(a_a, color="grey", linestyle=":", label=f"A_a = {a_a:.1%}")
    ax.set_xlabel("fraction of unavailable outputs f")
    ax.set_ylabel("overall accuracy A_o")
    ax.set_title(f"{metrics.get('dataset', '')}  k={metrics['k']}  code={metrics['code']}")
    ax.legend(loc="lower left", fontsize="small")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _describe(manifest: Manifest) -> dict[str, Any]:
    return {"name": manifest.name, "architecture": manifest.architecture}
