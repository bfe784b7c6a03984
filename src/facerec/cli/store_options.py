"""The options of every command that opens a gallery store: where it is, which gallery, its key."""

from __future__ import annotations

import argparse
import sys

from facerec.serve.store import DEFAULT_STORE, KEY_ENV, GalleryStore, IndexPolicy, open_store


def add_store_arguments(p: argparse.ArgumentParser, *flags: str, gallery_name: bool = True) -> None:
    """The store location under `flags` (default --gallery / --store), the gallery's name, the key."""
    p.add_argument(
        *(flags or ("--gallery", "--store")),
        dest="store",
        default=str(DEFAULT_STORE),
        help=f"the gallery store file (default: {DEFAULT_STORE})",
    )
    if gallery_name:
        p.add_argument("--gallery-name", default="default", help="which gallery of the store (default: default)")
    p.add_argument("--key-file", help=f"the file that holds the store's key (default: ${KEY_ENV})")
    p.add_argument(
        "--plaintext", action="store_true", help="a new store keeps its vectors unencrypted (tests, development)"
    )


# A command searches once per run: building a graph index would cost more than the exact scan.
ONE_SHOT = IndexPolicy(exact_limit=sys.maxsize)


def store_from(args: argparse.Namespace, create: bool = True) -> GalleryStore:
    return open_store(args.store, args.key_file, plaintext=args.plaintext, create=create, policy=ONE_SHOT)
