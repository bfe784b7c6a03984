"""The `facerec` command line. Each group module registers its commands (`registry.command`);
a handler parses, calls the library, prints and returns the exit code."""

from __future__ import annotations

import importlib
import logging
import sys

from facerec.cli.registry import build_parser
from facerec.errors import FacerecError

# Importing a group module registers its commands, in this order in `facerec --help`.
GROUPS = (
    "train",
    "data",
    "use",
    "gallery",
    "export",
    "eval",
    "benchmark",
    "calibrate",
    "explain",
    "analyze",
    "debias",
    "privacy",
    "distill",
    "serve",
    "keys",
    "pose",
    "duplicates",
)
for _group in GROUPS:
    importlib.import_module(f"facerec.cli.{_group}")


def main(argv: list[str] | None = None) -> int:
    """Run one command; a FacerecError is printed without a traceback and exits with 2."""
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


__all__ = ["build_parser", "main"]
