"""``parm train`` and ``parm eval``: thin command-line entry points over `train`.

parm train base        train a base model (classifier) into a bundle
parm train parity      train a parity model for a base bundle (paradigm 2)
parm train learned     learn an encoder and decoder for a base bundle (paradigm 1)
parm train experiment  run the cross product of an experiment file
parm eval              A_a, A_d and A_o of a base and parity bundle (or a training-free code)

`add_commands` hangs them on the ``parm`` parser; nothing here imports torch until a
command runs, so ``parm up`` starts as fast as before.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

DATASET_HELP = "digits, npz:PATH, mnist:DIR, fashion-mnist:DIR, cifar10:DIR or cifar100:DIR"
# Options shared by every trainer (train.loop.TrainConfig); None keeps the config default.
COMMON = {
    "epochs": int,
    "batch_size": int,
    "lr": float,
    "weight_decay": float,
    "schedule": str,
    "warmup_epochs": float,
    "augment": str,
    "val_fraction": float,
    "eval_every": int,
    "seed": int,
    "threads": int,
}


def add_commands(sub: Any) -> None:
    """Add ``train`` and ``eval`` to the ``parm`` subcommand parsers ``sub``."""
    train = sub.add_parser("train", help="train base models, parity models, learned codes")
    kinds = train.add_subparsers(required=True, metavar="WHAT")
    _base_parser(kinds.add_parser("base", help="train a base model (classifier)"))
    _parity_parser(kinds.add_parser("parity", help="train a parity model for a base bundle"))
    _learned_parser(kinds.add_parser("learned", help="learn an encoder and decoder"))
    experiment = kinds.add_parser("experiment", help="run an experiment file (JSON or YAML)")
    experiment.add_argument("file", type=Path)
    experiment.add_argument("--out", type=Path, help="output folder (default: the file's 'out')")
    experiment.add_argument("--device", default=None, help="auto, cpu, cuda")
    experiment.set_defaults(run=_experiment)

    ev = sub.add_parser("eval", help="measure A_a, A_d and A_o of a parity model")
    ev.add_argument("--base", type=Path, required=True, help="base bundle")
    ev.add_argument(
        "--parity", type=Path, action="append", default=[],
        help="parity bundle (r times); none for a training-free code or approxifer",
    )  # fmt: skip
    ev.add_argument(
        "--code",
        help="default: the parity bundles'; training-free (the base model answers the "
        "parity queries): berrut, berrut-interpolate, mean; or approxifer (ApproxIFER's "
        "non-systematic Berrut setting); learned (with --code-bundle)",
    )
    ev.add_argument(
        "--code-bundle", type=Path, help="a learned code: the run folder of parm train learned"
    )
    ev.add_argument("--k", type=int, help="default: the parity bundles'; needed without one")
    ev.add_argument("--r", type=int, default=1, help="parities per group of a training-free code")
    ev.add_argument("--n", type=int, help="approxifer: queries per group (default k + S)")
    ev.add_argument("--stragglers", type=int, default=1, help="approxifer: lost answers S")
    ev.add_argument("--dataset", required=True, help=DATASET_HELP)
    ev.add_argument("--out", type=Path, required=True, help="writes metrics.json, accuracy.png")
    ev.add_argument("--rounds", type=int, default=10, help="passes over the test set")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--device", default="cpu", help="auto, cpu, cuda")
    ev.add_argument("--download", action="store_true", help="fetch the data with torchvision")
    ev.set_defaults(run=_eval)


def _run_options(p: argparse.ArgumentParser, *, base: bool = False) -> None:
    p.add_argument("--dataset", required=True, help=DATASET_HELP)
    p.add_argument("--out", type=Path, required=True, help="run folder (the bundle)")
    if not base:
        p.add_argument("--base", type=Path, required=True, help="base model bundle")
    p.add_argument("--name", help="model name in the manifest (default: the --out folder's)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    p.add_argument("--download", action="store_true", help="fetch the data with torchvision")
    p.add_argument(
        "--resume", action="store_true", help="continue --out's checkpoint with its saved config"
    )
    for name, kind in COMMON.items():
        p.add_argument("--" + name.replace("_", "-"), type=kind, default=None)


def _base_parser(p: argparse.ArgumentParser) -> None:
    _run_options(p, base=True)
    p.add_argument("--model", dest="architecture", help="mlp, lenet5, resnet18, vgg11")
    p.add_argument("--arch-args", type=json.loads, help="JSON, e.g. '{\"hidden\": [200, 100]}'")
    p.add_argument("--label-smoothing", type=float)
    p.set_defaults(run=_train, what="base")


def _parity_parser(p: argparse.ArgumentParser) -> None:
    _run_options(p)
    p.add_argument("--k", type=int, help="queries per coding group")
    p.add_argument("--code", help="sum, concat, linear")
    p.add_argument("--r", type=int, help="parities per group (linear code)")
    p.add_argument("--index", type=int, help="which parity this model computes (r > 1)")
    p.add_argument("--loss", help="mse (default), kl, ce")
    p.add_argument("--temperature", type=float, help="of the kl loss")
    p.add_argument("--model", dest="architecture", help="default: the base model's")
    p.add_argument("--arch-args", type=json.loads, help="JSON overrides of the architecture")
    p.add_argument("--init-from-base", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--groups-per-epoch", type=int, help="default: the training set size")
    p.set_defaults(run=_train, what="parity")


def _learned_parser(p: argparse.ArgumentParser) -> None:
    _run_options(p)
    p.add_argument("--k", type=int)
    p.add_argument("--r", type=int)
    p.add_argument("--encoder", help="mlp or conv")
    p.add_argument("--decoder", help="mlp")
    p.add_argument("--loss", help="kl (default) or mse")
    p.add_argument("--decoder-width", type=int, help="in multiples of k * outputs (default 10)")
    p.add_argument("--groups-per-epoch", type=int)
    p.set_defaults(run=_train, what="learned")


def config_from_args(cls: type[Any], args: argparse.Namespace) -> Any:
    """``cls`` from the options that were given, or from --out's checkpoint with --resume."""
    from train.loop import CHECKPOINT_FILE, checkpoint_config

    if args.resume:
        return cls(**checkpoint_config(args.out / CHECKPOINT_FILE))
    names = {f for f in cls.__dataclass_fields__ if f in vars(args)}
    return cls(**{f: getattr(args, f) for f in names if getattr(args, f) is not None})


def _train(args: argparse.Namespace) -> int:
    """``parm train base|parity|learned``: every trainer but ``base`` trains for ``--base``."""
    from train.data import load_dataset

    config_class, train = _trainer(args.what)
    config = config_from_args(config_class, args)
    split = load_dataset(args.dataset, download=args.download)
    for_base = () if args.what == "base" else (args.base,)
    result = train(
        *for_base, split, config, args.out, name=_name(args), device=args.device, checkpoint=True
    )
    _print_summary(args.out, result if isinstance(result, dict) else result.metrics)
    return 0


def _trainer(what: str) -> tuple[type[Any], Callable[..., Any]]:
    """The config class and training function of ``parm train WHAT`` (this imports torch)."""
    if what == "base":
        from train.base import BaseConfig, train_base

        return BaseConfig, train_base
    if what == "parity":
        from train.parity import ParityConfig, train_parity

        return ParityConfig, train_parity
    from train.learned import LearnedConfig, train_learned

    return LearnedConfig, train_learned


def _eval(args: argparse.Namespace) -> int:
    from train.data import load_dataset
    from train.evaluate import run_eval

    split = load_dataset(args.dataset, download=args.download)
    metrics = run_eval(
        args.base, args.parity, split, args.out, k=args.k, code=args.code, r=args.r, n=args.n,
        stragglers=args.stragglers, rounds=args.rounds, seed=args.seed, device=args.device,
        code_bundle=args.code_bundle,
    )  # fmt: skip
    _print_summary(args.out, metrics)
    return 0


def _experiment(args: argparse.Namespace) -> int:
    from train.experiment import load_experiment, run_experiment

    experiment = load_experiment(args.file)
    summary = run_experiment(experiment, out=args.out, device=args.device)
    print(f"{len(summary)} runs; summary in {(args.out or experiment.out) / 'summary.md'}")
    return 0


def _name(args: argparse.Namespace) -> str:
    return str(args.name or Path(args.out).resolve().name)


def _print_summary(out: Path, metrics: dict[str, Any]) -> None:
    parts = [f"{key} = {metrics[key]:.2%}" for key in ("A_a", "A_d") if key in metrics]
    if "train_seconds" in metrics:
        parts.append(f"trained in {metrics['train_seconds']:.0f} s")
    print(f"{out}: " + ", ".join(parts), flush=True)
