"""Train a parity model Fp for a frozen base model F (paradigm 2 of the ParM paper).

The parity model has the base model's architecture unless the config names another, and
starts from the base model's weights when the architectures match.  Each epoch augments
every training input afresh and runs F on it; each training example is then a group of k
of these drawn at random, fresh every epoch.  Its input is the code's parity query
``code.encode_all(X)[index]`` and its target ``code.combine(F(X))[index]``: what the
decoder assumes the parity model outputs (the sum of F's logits for ``sum`` and
``concat``).  Because targets come from F, not from labels,
every random, augmented group is a new correctly labelled example.

Losses: ``mse`` (default) regresses the parity output on the target.  ``kl`` and ``ce``
score the *reconstructions* instead: each slot j is decoded from the parity output and the
other outputs with ``code.decode_erasures`` -- the decoder serving uses -- and compared with
F's softmax (``kl``, distillation at ``temperature``) or with the label (``ce``).

Encoding and decoding go through `common.codes`: the exact arithmetic of the frontend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from common.bundle import Manifest, ParityInfo
from common.codes import Code, make_code
from common.models import Preprocess, load_model, load_weights, save_bundle
from train.augment import Augmentation, augment, check_augmentation
from train.common import (
    METRICS_FILE,
    Run,
    input_stats,
    json_bytes,
    predict,
    seeded_build,
    top1,
)
from train.data import Split
from train.evaluate import degraded, eval_groups, evaluate_models
from train.loop import TrainConfig, Trainer

LOSSES = ("mse", "kl", "ce")
DATA_ARGS = ("input_shape", "in_features", "num_classes")  # fixed by the data set
AUGMENT_CHUNK = 4096  # inputs augmented (and run through F) at a time


@dataclass(frozen=True)
class ParityConfig(TrainConfig):
    """Hyperparameters of parity-model training; saved in the bundle and its checkpoints.

    ``r``/``index``: with r > 1 parities (``linear`` code) this model computes parity
    ``index``.  ``architecture``/``arch_args``: None keeps the base model's architecture;
    ``arch_args`` entries override the base's arguments (e.g. wider layers).
    ``groups_per_epoch``: 0 means as many groups as training inputs.
    """

    # Epochs of fresh augmented groups matter: on mnist10k, LeNet-5, k=4, concat, 40 epochs
    # reach A_d 85%, 100 epochs 90.7% (bench/RESULTS.md); 2-4 s an epoch on one CPU core.
    epochs: int = 100
    lr: float = 2e-3
    k: int = 2
    code: str = "sum"
    r: int = 1
    index: int = 0
    loss: str = "mse"
    temperature: float = 1.0
    architecture: str | None = None
    arch_args: dict[str, Any] = field(default_factory=dict)
    # Start from the base model's weights rather than a random draw: its features are a
    # better starting point (measured on digits: +0.6 to +1 point of A_d at equal epochs).
    init_from_base: bool = True
    groups_per_epoch: int = 0
    preprocessing_groups: int = 20_000  # random groups to estimate the parity input mean/std
    eval_rounds: int = 10  # passes over the test set (random groups) when measuring A_d
    val_rounds: int = 2


def random_groups(n: int, k: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``(k, count)`` indices into ``n`` inputs; column j is group j, row i its slot i.

    Each slot walks its own random permutations, so within ``n`` groups every input appears
    once per slot and the members of a group are independent draws.
    """
    rounds = -(-count // n)

    def slot() -> torch.Tensor:
        return torch.cat([torch.randperm(n, generator=generator) for _ in range(rounds)])

    return torch.stack([slot()[:count] for _ in range(k)])


def parity_batch(
    code: Code, x: torch.Tensor, base_out: torch.Tensor, groups: torch.Tensor, index: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Parity inputs and targets for ``groups`` ``(k, B)`` of indices into ``x``/``base_out``."""
    parity_in = code.encode_all(x[groups])[index]  # (k, B, *sample) -> (B, *sample)
    target = code.combine(base_out[groups])[index]  # (k, B, classes) -> (B, classes)
    return parity_in, target


def parity_preprocessing(
    code: Code, x: torch.Tensor, count: int, seed: int, index: int = 0
) -> dict[str, list[float]]:
    """Mean and std of ``count`` encoded random groups: the parity model's own input scale."""
    generator = torch.Generator().manual_seed(seed)
    groups = random_groups(len(x), code.k, count, generator).to(x.device)
    parts = [code.encode_all(x[groups[:, i : i + 4096]])[index] for i in range(0, count, 4096)]
    return input_stats(torch.cat(parts))


def parity_loss(
    config: ParityConfig,
    code: Code,
    prediction: torch.Tensor,
    outputs: torch.Tensor,
    labels: torch.Tensor,
) -> torch.Tensor:
    """The training loss of parity outputs ``(B, classes)`` for data outputs ``(k, B, classes)``."""
    if config.loss == "mse":
        target = code.combine(outputs)[config.index]  # (B, classes)
        return functional.mse_loss(prediction, target)
    parities: list[torch.Tensor | None] = [None] * code.r
    parities[config.index] = prediction
    total = prediction.new_zeros(())
    for j in range(code.k):
        (rebuilt,) = code.decode_erasures(parities, outputs, [j])  # (B, classes)
        if config.loss == "kl":
            t = config.temperature
            teacher = functional.softmax(outputs[j] / t, dim=-1)
            student = functional.log_softmax(rebuilt / t, dim=-1)
            total = total + functional.kl_div(student, teacher, reduction="batchmean") * t * t
        else:
            total = total + functional.cross_entropy(rebuilt, labels[j])
    return total / code.k


@dataclass
class ParityJob:
    """What one parity-training epoch works on (all tensors on the training device)."""

    config: ParityConfig
    code: Code
    base: nn.Module
    x: torch.Tensor  # (N, *sample)
    y: torch.Tensor  # (N,)
    how: Augmentation
    base_out: torch.Tensor | None = None  # (N, classes): F(x), when nothing is augmented

    def epoch_data(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """This epoch's inputs ``(N, *sample)``, each augmented afresh, and F's outputs.

        Augmenting (and running F on) every input once per epoch, rather than once per
        group it joins, costs k times less and still gives each epoch new groups of new
        variants.
        """
        if self.base_out is not None:
            return self.x, self.base_out
        chunks = range(0, len(self.x), AUGMENT_CHUNK)
        x = torch.cat([augment(self.x[i : i + AUGMENT_CHUNK], self.how, generator) for i in chunks])
        return x, predict(self.base, x)


def parity_epoch(trainer: Trainer, job: ParityJob) -> float:
    """One epoch of fresh random groups of freshly augmented inputs; the mean loss."""
    config = job.config
    x, base_out = job.epoch_data(trainer.generator)  # (N, *sample), (N, classes)
    count = config.groups_per_epoch or len(x)
    groups = random_groups(len(x), config.k, count, trainer.generator).to(x.device)
    total = 0.0
    for i in range(0, count, config.batch_size):
        g = groups[:, i : i + config.batch_size]  # (k, B)
        parity_in, _ = parity_batch(job.code, x, base_out, g, config.index)  # (B, *sample)
        prediction = trainer.model(parity_in)  # (B, classes)
        loss = parity_loss(config, job.code, prediction, base_out[g], job.y[g])
        trainer.step(loss)
        total += loss.item() * g.shape[1]
    return total / count


def train_parity(
    base_dir: str | Path,
    split: Split,
    config: ParityConfig,
    bundle_dir: str | Path,
    *,
    name: str,
    device: str = "cpu",
    checkpoint: bool = False,
    stop_after: int | None = None,
) -> Manifest:
    """Train a parity model for the base bundle at ``base_dir``; save it at ``bundle_dir``.

    ``checkpoint`` and ``stop_after`` work as in `train.base.train_base`.
    """
    code = _code(config)
    run = Run.start(split, config, bundle_dir, device, checkpoint)
    base_manifest, base = frozen_model(base_dir, run.device)
    with run.threads():
        net = ParityNet.build(base_dir, base_manifest, config, code, run.x)
        parity = net.model().to(run.device)
        job = _job(config, code, base, run.x, run.y, split.augmentation)
        # parity models get their own draw of the data order (seed + 1)
        trainer = run.trainer(parity, config.groups_per_epoch or len(run.x), config.seed + 1)
        validate = _validator(config, code, base, parity, run.x_val, run.y_val)
        run.train(trainer, lambda t: parity_epoch(t, job), validate, stop_after)
        metrics = _test_metrics(base, parity, split, config)
    metrics |= {"val_A_d": trainer.best_score if len(run.x_val) else None}
    metrics |= run.summary(trainer, split)
    info = ParityInfo(
        config.k, code.name, base_manifest.weights_sha256, base_manifest.name, code.r, config.index
    )
    manifest = net.save(run.out, name, base_manifest, info, metrics, trainer.history)
    trainer.save()  # the bundle replaced the folder: keep the final checkpoint beside it
    return manifest


def frozen_model(bundle_dir: str | Path, device: torch.device) -> tuple[Manifest, nn.Module]:
    """A bundle's model in eval mode with gradients off: F, which training never changes."""
    manifest, model = load_model(bundle_dir, device)
    for p in model.parameters():
        p.requires_grad_(False)
    return manifest, model


def _code(config: ParityConfig) -> Code:
    if config.loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {config.loss!r}")
    code = make_code(config.code, config.k, config.r)
    if not 0 <= config.index < code.r:
        raise ValueError(f"parity index must be in [0, {code.r}), got {config.index}")
    return code


@dataclass
class ParityNet:
    """The parity network, its architecture and arguments, and its input preprocessing."""

    architecture: str
    arch_args: dict[str, Any]
    net: nn.Module
    preprocessing: dict[str, list[float]]

    @classmethod
    def build(
        cls, base_dir: str | Path, base: Manifest, config: ParityConfig, code: Code, x: torch.Tensor
    ) -> ParityNet:
        """The configured architecture, from the base weights when they fit it."""
        arch = config.architecture or base.architecture
        inherited = base.arch_args
        if arch != base.architecture:  # another architecture keeps only what the data fixes
            inherited = {k: v for k, v in base.arch_args.items() if k in DATA_ARGS}
        arch_args = {**inherited, **config.arch_args}
        net = seeded_build(arch, arch_args, config.seed)
        if config.init_from_base and (arch, arch_args) == (base.architecture, base.arch_args):
            net.load_state_dict(load_weights(base_dir, base))
        pre = parity_preprocessing(code, x, config.preprocessing_groups, config.seed, config.index)
        return cls(arch, arch_args, net, pre)

    def model(self) -> nn.Module:
        """The network behind its preprocessing: what a container runs."""
        return nn.Sequential(
            Preprocess(self.preprocessing["mean"], self.preprocessing["std"]), self.net
        )

    def save(
        self,
        bundle_dir: Path,
        name: str,
        base: Manifest,
        info: ParityInfo,
        metrics: dict[str, Any],
        history: list[dict[str, float]],
    ) -> Manifest:
        """Write the parity bundle, with ``metrics.json`` (metrics and history) beside it."""
        return save_bundle(
            bundle_dir,
            name=name,
            role="parity",
            architecture=self.architecture,
            arch_args=self.arch_args,
            module=self.net,
            input_spec=base.inputs[0],  # parity queries look exactly like base queries
            output_spec=base.outputs[0],
            preprocessing=self.preprocessing,
            parity=info,
            metrics=metrics,
            extra_files={METRICS_FILE: json_bytes(metrics | {"history": history})},
        )


def _job(
    config: ParityConfig, code: Code, base: nn.Module, x: torch.Tensor, y: torch.Tensor, aug: str
) -> ParityJob:
    how = check_augmentation(config.augment, aug, x)
    base_out = None if how.active else predict(base, x)  # F is frozen: compute it once
    return ParityJob(config, code, base, x, y, how, base_out)


def _validator(
    config: ParityConfig,
    code: Code,
    base: nn.Module,
    parity: nn.Module,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
) -> Callable[[], float | None]:
    """Single-erasure A_d of this parity model on fixed groups of the validation part."""
    if len(x_val) < config.k:
        return lambda: None
    groups = eval_groups(len(x_val), config.k, config.val_rounds, config.seed).to(x_val.device)
    base_out = predict(base, x_val)
    parity_in = code.encode_all(x_val[groups])[config.index]
    patterns = [((j,), ()) for j in range(config.k)]

    def validate() -> float | None:
        outs: list[torch.Tensor | None] = [None] * code.r
        outs[config.index] = predict(parity, parity_in)
        return float(degraded(code, base_out, outs, groups, y_val, patterns)["A_d"])

    return validate


def _test_metrics(
    base: nn.Module, parity: nn.Module, split: Split, config: ParityConfig
) -> dict[str, Any]:
    """Test-set metrics; with r > 1, single erasures decoded from this parity alone (the
    full erasure patterns need all r models: `train.evaluate.evaluate`)."""
    if config.r == 1:
        return evaluate_models(
            base, parity, split, config.k, code_name=config.code, rounds=config.eval_rounds
        )
    device = next(iter(base.parameters())).device
    x = torch.from_numpy(split.x_test).to(device)
    y = torch.from_numpy(split.y_test).to(device)
    code = make_code(config.code, config.k, config.r)
    groups = eval_groups(len(x), config.k, config.eval_rounds, 0).to(device)
    outs: list[torch.Tensor | None] = [None] * config.r
    outs[config.index] = predict(parity, code.encode_all(x[groups])[config.index])
    base_out = predict(base, x)
    patterns = [((j,), ()) for j in range(config.k)]
    result = degraded(code, base_out, outs, groups, y, patterns)
    del result["patterns"]
    return {"A_a": top1(base_out, y), **result, "k": config.k, "r": config.r, "code": code.name}
