"""The `facerec` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from facerec.errors import FacerecError

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[Handler, Callable[[argparse.ArgumentParser], None], str]] = {}


def command(name: str, help_text: str) -> Callable[[Callable], Callable]:
    """Register a sub-command: the decorated function adds its arguments; handler = run_<name>."""

    def decorator(add_arguments: Callable[[argparse.ArgumentParser], None]) -> Callable:
        handler = globals()[f"run_{name.replace('-', '_')}"]
        COMMANDS[name] = (handler, add_arguments, help_text)
        return add_arguments

    return decorator


# ---- train / quickstart ------------------------------------------------------------------
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


@command("train", "train a model from a config")
def _train_args(p: argparse.ArgumentParser) -> None:
    add_train_arguments(p)


@command("quickstart", "train on synthetic faces on CPU and report verification accuracy")
def _quickstart_args(p: argparse.ArgumentParser) -> None:
    add_train_arguments(p, with_config=False)


# ---- embed -------------------------------------------------------------------------------
def run_embed(args: argparse.Namespace) -> int:
    import torch

    from facerec.data.datasets import FaceDataset, FileListDataset, ImageFolderDataset
    from facerec.eval.embed import embed_dataset
    from facerec.models.io import load_model

    model, size = load_model(args.model)
    dataset: FaceDataset
    inputs = [Path(p) for p in args.inputs]
    if len(inputs) == 1 and inputs[0].is_dir():
        dataset = ImageFolderDataset(inputs[0], size)
    else:
        dataset = FileListDataset(inputs, size)
    device = "cuda" if torch.cuda.is_available() and not args.cpu else "cpu"
    emb = embed_dataset(model.to(device), dataset, args.batch_size, device, flip=args.flip, progress=True)
    out = Path(args.out)
    np.save(out, emb)
    index = out.with_suffix(".json")
    index.write_text(json.dumps([dataset.describe(i) for i in range(len(dataset))], indent=1))
    print(f"wrote {len(emb)} embeddings of size {emb.shape[1]} to {out} (image paths in {index})")
    return 0


@command("embed", "compute L2-normalised embeddings of images with a trained model")
def _embed_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="image files, or one identity-folder tree")
    p.add_argument("--model", required=True, help="model.pt or a training checkpoint")
    p.add_argument("--out", default="embeddings.npy", help="output .npy (paths go to the .json beside it)")
    p.add_argument("--flip", action="store_true", help="add the mirrored image's embedding")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--cpu", action="store_true", help="stay on the CPU even when CUDA is available")


# ---- synth / configs / components --------------------------------------------------------
def run_synth(args: argparse.Namespace) -> int:
    from facerec.data.synthetic import SyntheticFaces

    faces = SyntheticFaces(args.identities, args.images, args.size, args.seed, args.difficulty)
    root = faces.write_tree(args.dst)
    print(f"wrote {len(faces)} images of {args.identities} identities to {root}")
    return 0


@command("synth", "write synthetic faces as an identity-folder tree")
def _synth_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dst")
    p.add_argument("--identities", type=int, default=20)
    p.add_argument("--images", type=int, default=5, help="images per identity")
    p.add_argument("--size", type=int, default=112)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--difficulty", type=float, default=1.0, help="scale of the nuisance (pose, light, blur...)")


def run_configs(args: argparse.Namespace) -> int:
    from facerec.config import BUNDLED_DIR

    for path in sorted(BUNDLED_DIR.glob("*.yaml")):
        first = path.read_text().splitlines()[0].lstrip("# ")
        print(f"{path.stem:28s} {first}")
    return 0


@command("configs", "list the bundled configs")
def _configs_args(p: argparse.ArgumentParser) -> None:
    pass


def run_components(args: argparse.Namespace) -> int:
    from facerec.data import SOURCES
    from facerec.heads import LOSSES
    from facerec.models import BACKBONES
    from facerec.train.optim import OPTIMIZERS, SCHEDULES

    for registry in (BACKBONES, LOSSES, OPTIMIZERS, SCHEDULES, SOURCES):
        print(f"{registry.kind}: {', '.join(registry.names())}")
    return 0


@command("components", "list the registered backbones, heads/losses, optimizers, schedules")
def _components_args(p: argparse.ArgumentParser) -> None:
    pass


# ---- entry point -------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facerec", description="Deep face recognition toolkit.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (handler, add_arguments, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_arguments(p)
        p.set_defaults(handler=handler)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.handler(args)
    except FacerecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; `--resume` continues from the last checkpoint", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
