"""Learned codes (paradigm 1 of "Learning-Based Coded Computation", Kosaian et al.).

Here the *code* is learned and the parity computation is the base model F itself: an
encoder network maps k inputs to r parity inputs, F runs on them like on any query, and a
decoder network maps the k + r outputs (the erased ones zeroed) to the k data outputs.  F
stays frozen; gradients flow through it into the encoder.  Each training group erases a
random set of 1..min(r, k) data outputs (with r > 1, also parity outputs, as many as leave
it decodable) and the loss (KL to F's softmax, or MSE) counts only the erased ones.

Encoders: ``mlp`` (fully connected over the k flattened inputs) and ``conv`` (dilated
convolutions over the k images stacked as channels); decoder: ``mlp``.  A run folder holds
``encoder/`` and ``decoder/`` bundles (roles ``encoder``/``decoder``, with the code's k, r
and base digest), ``metrics.json`` and ``checkpoint.pt``.  The networks are wrapped in
`common.learned.LearnedCode`, the module the frontend serves (``parm up --code learned
--code-bundle RUN``) and ``parm eval --code learned`` decodes with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from common.bundle import Manifest, ParityInfo, TensorSpec
from common.learned import LearnedCode
from common.models import Preprocess, save_bundle
from train.augment import Augmentation, augment, check_augmentation
from train.base import image_shape
from train.common import (
    METRICS_FILE,
    Run,
    input_stats,
    predict,
    seeded_build,
    top1,
    write_json,
)
from train.data import Split
from train.evaluate import eval_groups
from train.loop import TrainConfig, Trainer
from train.parity import frozen_model, random_groups

ENCODERS = {"mlp": "mlp-encoder", "conv": "conv-encoder"}
DECODERS = {"mlp": "mlp-decoder"}
LOSSES = ("mse", "kl")


@dataclass(frozen=True)
class LearnedConfig(TrainConfig):
    """Hyperparameters of learned-code training; saved in bundles and checkpoints.

    The defaults reach A_d within 1.5 points of A_a at k=2 on mnist10k with Base-MLP
    (bench/RESULTS.md, "Every code"): the papers' tiny decoder (``decoder_width`` 1) and
    MSE loss, or 30 epochs, stay 2-5 points short on these 8,000 images.
    """

    epochs: int = 50
    k: int = 2
    r: int = 1
    encoder: str = "mlp"
    decoder: str = "mlp"
    encoder_args: dict[str, Any] = field(default_factory=dict)
    decoder_args: dict[str, Any] = field(default_factory=dict)
    loss: str = "kl"
    #: the decoder's hidden width in multiples of k * outputs (the papers' is 1)
    decoder_width: int = 10
    groups_per_epoch: int = 0
    eval_rounds: int = 10
    val_rounds: int = 2


class CodedModel(nn.Module):
    """The trainable whole: the code's encoder, frozen base model F, the code's decoder."""

    def __init__(self, code: LearnedCode, base: nn.Module) -> None:
        super().__init__()
        self.code = code
        self.base = [base]  # a list hides F from parameters() and state_dict()

    def forward(
        self,
        x: torch.Tensor,
        outputs: torch.Tensor,
        erased: torch.Tensor,
        parity_erased: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Decoded outputs ``(k, B, O)`` from inputs ``(k, B, *sample)``, F's outputs
        ``(k, B, O)`` and the erased slots ``(k, B)`` (True: erased); ``parity_erased``
        ``(r, B)`` erases parity outputs too."""
        parities = self.code.parities(x)  # (r, B, *sample)
        r, b = parities.shape[:2]
        parity_out = self.base[0](parities.flatten(0, 1)).view(r, b, -1)  # (r, B, O)
        return self.code.reconstruct(outputs, parity_out, erased, parity_erased)


def random_erasures(k: int, r: int, b: int, generator: torch.Generator) -> torch.Tensor:
    """``(k, B)`` masks erasing 1..min(r, k) data slots per group, uniformly at random."""
    ranks = torch.rand(b, k, generator=generator).argsort(dim=1).argsort(dim=1)  # (B, k)
    counts = torch.randint(1, min(r, k) + 1, (b, 1), generator=generator)
    return (ranks < counts).T


def random_parity_erasures(
    erased: torch.Tensor, r: int, generator: torch.Generator
) -> torch.Tensor:
    """``(r, B)`` masks erasing parity outputs too, as a late parity does in serving:
    0..(r - erased data slots) of them per group, uniformly, so the group stays decodable."""
    b = erased.shape[1]
    room = r - erased.sum(0).cpu()  # (B,)
    counts = (torch.rand(b, generator=generator) * (room + 1)).floor()
    ranks = torch.rand(b, r, generator=generator).argsort(dim=1).argsort(dim=1)  # (B, r)
    return (ranks < counts.unsqueeze(1)).T


def learned_loss(
    config: LearnedConfig, decoded: torch.Tensor, outputs: torch.Tensor, erased: torch.Tensor
) -> torch.Tensor:
    """The masked loss: only erased slots count (MSE, or KL to F's softmax)."""
    if config.loss == "kl":
        per = functional.kl_div(
            functional.log_softmax(decoded, -1), functional.softmax(outputs, -1), reduction="none"
        ).sum(-1)  # (k, B)
    else:
        per = ((decoded - outputs) ** 2).mean(-1)  # (k, B)
    return per[erased].mean()


@dataclass
class LearnedJob:
    """One learned-code run's data (on the training device)."""

    config: LearnedConfig
    base: nn.Module
    x: torch.Tensor
    how: Augmentation


def learned_epoch(trainer: Trainer, job: LearnedJob) -> float:
    """One epoch of random groups and erasures; returns the mean loss."""
    config, model = job.config, trainer.model
    count = config.groups_per_epoch or len(job.x)
    groups = random_groups(len(job.x), config.k, count, trainer.generator).to(job.x.device)
    total = 0.0
    for i in range(0, count, config.batch_size):
        g = groups[:, i : i + config.batch_size]  # (k, B)
        k, b = g.shape
        flat = augment(job.x[g.flatten()], job.how, trainer.generator)
        x = flat.view(k, b, *flat.shape[1:])  # (k, B, *sample)
        with torch.no_grad():
            outputs = job.base(flat).view(k, b, -1)  # (k, B, O)
        erased = random_erasures(k, config.r, b, trainer.generator)
        parity_erased = random_parity_erasures(erased, config.r, trainer.generator)
        erased, parity_erased = erased.to(x.device), parity_erased.to(x.device)
        decoded = model(x, outputs, erased, parity_erased)
        loss = learned_loss(config, decoded, outputs, erased)
        trainer.step(loss)
        total += loss.item() * b
    return total / count


@torch.no_grad()
def learned_accuracy(
    model: CodedModel,
    base: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    k: int,
    groups: torch.Tensor,
) -> dict[str, float]:
    """A_d (labels) and agreement with F over every single erasure of each group."""
    was = model.training
    model.eval()
    outputs = predict(base, x)[groups]  # (k, G, O)
    correct = agree = 0.0
    for j in range(k):
        erased = torch.zeros(groups.shape, dtype=torch.bool, device=x.device)
        erased[j] = True
        decoded = model(x[groups], outputs, erased)[j]  # (G, O)
        correct += top1(decoded, y[groups[j]])
        agree += top1(decoded, outputs[j].argmax(-1))
    model.train(was)
    return {"A_d": correct / k, "A_d_agreement": agree / k}


def train_learned(
    base_dir: str | Path,
    split: Split,
    config: LearnedConfig,
    out_dir: str | Path,
    *,
    name: str,
    device: str = "cpu",
    checkpoint: bool = False,
    stop_after: int | None = None,
) -> dict[str, Any]:
    """Learn an encoder and decoder for the base bundle at ``base_dir``; returns metrics."""
    run = Run.start(split, config, out_dir, device, checkpoint)
    base_manifest, base = frozen_model(base_dir, run.device)
    x, x_val, y_val = run.x, run.x_val, run.y_val
    with run.threads():
        nets = _networks(config, base_manifest, x, base)
        model = nets.module(base).to(run.device)
        how = check_augmentation(config.augment, split.augmentation, x)
        # the code gets its own draw of the data order (seed + 2)
        trainer = run.trainer(model, config.groups_per_epoch or len(x), config.seed + 2)
        val_groups = eval_groups(len(x_val), config.k, config.val_rounds, config.seed)
        val_groups = val_groups.to(run.device)

        def validate() -> float | None:
            if len(x_val) < config.k:
                return None
            return learned_accuracy(model, base, x_val, y_val, config.k, val_groups)["A_d"]

        job = LearnedJob(config, base, x, how)
        run.train(trainer, lambda t: learned_epoch(t, job), validate, stop_after)
        metrics = _test_metrics(model, base, split, config, run.device)
    metrics |= run.summary(trainer, split)
    _save_code(run.out, name, config, base_manifest, nets, metrics)
    write_json(run.out / METRICS_FILE, metrics | {"history": trainer.history})
    trainer.save()
    return metrics


@dataclass
class CodeNets:
    """The encoder (after its input normalisation) and decoder, with their arguments."""

    encoder: nn.Module
    decoder: nn.Module
    encoder_args: dict[str, Any]
    decoder_args: dict[str, Any]
    mean: float
    std: float
    k: int
    r: int

    def module(self, base: nn.Module) -> CodedModel:
        """The trainable whole: normalisation, encoder, frozen F, decoder."""
        encoder = nn.Sequential(Preprocess([self.mean], [self.std]), self.encoder)
        return CodedModel(LearnedCode(encoder, self.decoder, self.k, self.r), base)


def _networks(config: LearnedConfig, base: Manifest, x: torch.Tensor, model: nn.Module) -> CodeNets:
    if config.loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {config.loss!r}")
    if config.encoder not in ENCODERS or config.decoder not in DECODERS:
        raise ValueError(
            f"encoder must be one of {sorted(ENCODERS)} and decoder one of "
            f"{sorted(DECODERS)}, got {config.encoder!r} and {config.decoder!r}"
        )
    sample = tuple(x.shape[1:])
    stats = input_stats(x.reshape(len(x), -1))  # one mean/std: encoder inputs are (B, k, ...)
    mean, std = stats["mean"][0], stats["std"][0]
    shape: dict[str, Any] = {"sample_shape": list(sample)}
    if config.encoder == "conv":
        shape = {"input_shape": list(image_shape(sample))}
    encoder_args = {"k": config.k, "r": config.r, **shape, "output_mean": mean, "output_std": std}
    scale = float(predict(model, x).std())  # F's outputs' spread: the decoder's unit
    decoder_args = {
        "k": config.k, "r": config.r, "out_features": prod(base.outputs[0].shape),
        "hidden": config.decoder_width, "output_scale": scale,
    }  # fmt: skip
    encoder_args |= config.encoder_args
    decoder_args |= config.decoder_args
    return CodeNets(
        seeded_build(ENCODERS[config.encoder], encoder_args, config.seed),
        seeded_build(DECODERS[config.decoder], decoder_args, config.seed + 1),
        encoder_args,
        decoder_args,
        mean,
        std,
        config.k,
        config.r,
    )


def _save_code(
    out: Path,
    name: str,
    config: LearnedConfig,
    base: Manifest,
    nets: CodeNets,
    metrics: dict[str, Any],
) -> None:
    """Write ``out/encoder`` and ``out/decoder`` as bundles."""
    info = ParityInfo(
        config.k, f"learned-{config.encoder}", base.weights_sha256, base.name, config.r
    )
    sample, spec = base.inputs[0].shape, base.outputs[0]
    classes = nets.decoder_args["out_features"]
    save_bundle(
        out / "encoder",
        name=f"{name}-encoder",
        role="encoder",
        architecture=ENCODERS[config.encoder],
        arch_args=nets.encoder_args,
        module=nets.encoder,
        input_spec=TensorSpec("inputs", base.inputs[0].datatype, (config.k, *sample)),
        output_spec=TensorSpec("parities", base.inputs[0].datatype, (config.r, *sample)),
        preprocessing={"mean": [nets.mean], "std": [nets.std]},
        parity=info,
        metrics=metrics,
    )
    save_bundle(
        out / "decoder",
        name=f"{name}-decoder",
        role="decoder",
        architecture=DECODERS[config.decoder],
        arch_args=nets.decoder_args,
        module=nets.decoder,
        input_spec=TensorSpec("outputs", spec.datatype, (config.k + config.r, classes)),
        output_spec=TensorSpec("reconstructed", spec.datatype, (config.k, classes)),
        preprocessing={"mean": [0.0], "std": [1.0]},
        parity=info,
        metrics=metrics,
    )


def _test_metrics(
    model: CodedModel, base: nn.Module, split: Split, config: LearnedConfig, dev: torch.device
) -> dict[str, Any]:
    x = torch.from_numpy(split.x_test).to(dev)
    y = torch.from_numpy(split.y_test).to(dev)
    groups = eval_groups(len(x), config.k, config.eval_rounds, 0).to(dev)
    result = learned_accuracy(model, base, x, y, config.k, groups)
    a_a = top1(predict(base, x), y)
    return {"A_a": a_a, **result, "k": config.k, "r": config.r, "code": f"learned-{config.encoder}"}
