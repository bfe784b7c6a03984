"""API keys of the face service: `facerec keys create | list | revoke`."""

from __future__ import annotations

import argparse
import sys

from facerec.cli.registry import command
from facerec.serve.keys import DEFAULT_DATA_DIR, SCOPES, KeyStore, gallery_grants, parse_scopes


def add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="the service's data directory (keys.db)")


def run_create(args: argparse.Namespace) -> int:
    scopes = parse_scopes(args.scope)
    grants = gallery_grants(scopes, args.gallery, args.all_galleries)
    key, token = KeyStore(args.data_dir).create(scopes, grants, args.name)
    print(f"created API key {key.id} ({', '.join(sorted(key.scopes))}); it is shown once:", file=sys.stderr)
    print(token)
    return 0


@command("keys create", "create an API key for the service; prints it once (only its hash is stored)", run_create)
def _create_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scope", required=True, help=f"comma-separated: {', '.join(SCOPES)}")
    p.add_argument("--gallery", action="append", default=[], help="a gallery the key may use (repeatable)")
    p.add_argument("--all-galleries", action="store_true", help="the key may use every gallery")
    p.add_argument("--name", default="", help="a label for `facerec keys list`")
    add_data_dir(p)


def run_list(args: argparse.Namespace) -> int:
    keys = KeyStore(args.data_dir, create=False).list()
    print(f"{'id':14s} {'status':8s} {'created':26s} {'name':16s} scopes / galleries")
    for key in keys:
        status = "revoked" if key.revoked else "active"
        galleries = "*" if key.galleries is None else ",".join(key.galleries) or "-"
        print(f"{key.id:14s} {status:8s} {key.created:26s} {key.name:16s} {','.join(sorted(key.scopes))} / {galleries}")
    return 0


@command("keys list", "list the service's API keys (never their secrets)", run_list)
def _list_args(p: argparse.ArgumentParser) -> None:
    add_data_dir(p)


def run_revoke(args: argparse.Namespace) -> int:
    key = KeyStore(args.data_dir, create=False).revoke(args.id)
    print(f"revoked API key {key.id} ({key.name or 'no name'}); a running server refuses it from now on")
    return 0


@command("keys revoke", "revoke an API key (a running server refuses it at once)", run_revoke)
def _revoke_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", help="the key's id (`facerec keys list`)")
    add_data_dir(p)
