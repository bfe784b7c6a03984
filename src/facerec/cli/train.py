"""Training commands: train, quickstart, checkpoint convert; the listings configs and components."""

from __future__ import annotations

import argparse
from pathlib import Path

from facerec.cli.registry import command


def run_train(args: argparse.Namespace) -> int:
    from facerec.config import load_config
    from facerec.train import train

    overrides = list(args.set or [])
    if args.output_dir:
        overrides.append(f"train.output_dir={args.output_dir}")
    cfg = load_config(args.config, overrides)
    results = train(cfg, resume=args.resume)
    print_results(results, Path(cfg.train.output_dir))
    return 0


def run_quickstart(args: argparse.Namespace) -> int:
    args.config = "quickstart"
    return run_train(args)


def print_results(results: dict, out: Path) -> None:
    print(f"\nrun directory: {out}")
    print(f"  model: {out / 'model.pt'}\n  metrics: {out / 'metrics.jsonl'}")
    if "val_accuracy" in results:
        print(
            f"verification accuracy on held-out identities (10-fold): "
            f"{100 * results['val_accuracy']:.2f}% +- {100 * results['val_accuracy_std']:.2f}%"
        )


def add_train_arguments(p: argparse.ArgumentParser, with_config: bool = True) -> None:
    if with_config:
        p.add_argument("config", help="YAML config file or bundled config name (see `facerec configs`)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=3 (repeatable)",
    )
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in the output dir")
    p.add_argument("--output-dir", help="shortcut for --set train.output_dir=DIR")


@command("train", "train a model from a config", run_train)
def _train_args(p: argparse.ArgumentParser) -> None:
    add_train_arguments(p)


@command("quickstart", "train on synthetic faces on CPU and report verification accuracy", run_quickstart)
def _quickstart_args(p: argparse.ArgumentParser) -> None:
    add_train_arguments(p, with_config=False)


def run_checkpoint_convert(args: argparse.Namespace) -> int:
    from facerec.train.convert import convert

    written = convert(Path(args.checkpoint), args.world_size, Path(args.out))
    print(f"wrote {len(written)} file(s) for {args.world_size} process(es) to {args.out}")
    return 0


@command(
    "checkpoint convert",
    "re-shard a Partial FC checkpoint for another number of processes (1: one file)",
    run_checkpoint_convert,
)
def _checkpoint_convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="any rank's file of the step, e.g. runs/x/checkpoints/checkpoint_00001000.pt")
    p.add_argument("--world-size", type=int, required=True)
    p.add_argument("--out", required=True, help="folder for the converted files (e.g. a new run's checkpoints/)")


def run_configs(args: argparse.Namespace) -> int:
    from facerec.config import list_bundled

    for name, description in list_bundled().items():
        print(f"{name:28s} {description}")
    return 0


@command("configs", "list the bundled configs", run_configs)
def _configs_args(p: argparse.ArgumentParser) -> None:
    pass


def run_components(args: argparse.Namespace) -> int:
    from facerec.components import component_names

    for kind, names in component_names().items():
        print(f"{kind}: {', '.join(names)}")
    return 0


@command("components", "list the registered backbones, heads/losses, optimizers, schedules", run_components)
def _components_args(p: argparse.ArgumentParser) -> None:
    pass
