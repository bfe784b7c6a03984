"""The gallery store: import old .npz galleries, list galleries, set a threshold, erase a
subject, make a key, move a gallery to a new model."""

from __future__ import annotations

import argparse

from facerec.cli.pipeline_options import add_runtime_argument
from facerec.cli.registry import command
from facerec.cli.store_options import add_store_arguments, store_from
from facerec.serve.store.crypto import write_key_file
from facerec.serve.store.legacy import import_npz, model_identity


def run_import(args: argparse.Namespace) -> int:
    model, digest = model_identity(args.model) if args.model else (None, None)
    with store_from(args) as store:
        done = import_npz(store, args.npz, args.name, model, digest)
    print(f"imported {done.faces} faces of {done.subjects} people into gallery '{done.gallery}' of {args.store}")
    return 0


@command("gallery import", "import an old .npz gallery into a gallery store", run_import)
def _import_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("npz", help="the old gallery (.npz)")
    add_store_arguments(p, "--into", gallery_name=False)
    p.add_argument("--name", default="default", help="the new gallery's name (default: default)")
    p.add_argument("--model", help="the model that made it (needed for galleries without a model digest)")


def run_list(args: argparse.Namespace) -> int:
    with store_from(args, create=False) as store:
        for g in store.galleries():
            counts = store.counts(g.name)
            threshold = "model card" if g.threshold is None else f"{g.threshold:.4f}"
            print(
                f"{g.name}: {counts.subjects} people, {counts.faces} faces; model '{g.model}' "
                f"(digest {g.digest[:12]}), detector {g.pipeline.get('detector', '?')}, threshold {threshold}"
                + ("; keeps crops" if g.keep_crops else "")
                + (f"; {migration_note(g.migration)}" if g.migration else "")
            )
    return 0


def migration_note(record: dict) -> str:
    """How a migrated gallery was made, in a few words."""
    note = f"migrated from '{record['from_gallery']}' of model '{record['from_model']}'"
    note += f" ({record['re_embedded']} faces embedded again, {record['mapped']} mapped"
    loss = f", map loss {record['map']['loss']:.3f} on {record['map']['calibration']} faces" if "map" in record else ""
    return note + loss + ")"


@command("gallery list", "the galleries of a store, with their model and size", run_list)
def _list_args(p: argparse.ArgumentParser) -> None:
    add_store_arguments(p, gallery_name=False)


def threshold_value(text: str) -> float | None:
    """A cosine threshold, or None for 'card' (the model card's)."""
    if text == "card":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor 'card'") from None


def run_threshold(args: argparse.Namespace) -> int:
    with store_from(args, create=False) as store:
        store.set_threshold(args.gallery_name, args.value)
    shown = "the model card's" if args.value is None else f"{args.value:.4f}"
    print(f"gallery '{args.gallery_name}': threshold {shown}")
    return 0


@command("gallery threshold", "set a gallery's cosine threshold ('card': the model card's again)", run_threshold)
def _threshold_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("value", type=threshold_value, help="a cosine similarity, or 'card'")
    add_store_arguments(p)


def run_erase(args: argparse.Namespace) -> int:
    with store_from(args, create=False) as store:
        faces = store.delete_subject(args.gallery_name, args.subject)
    print(f"erased '{args.subject}' and {faces} faces from gallery '{args.gallery_name}'")
    return 0


@command("gallery erase", "erase a person and their faces from a gallery (for good)", run_erase)
def _erase_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("subject", help="the person's name in the gallery")
    add_store_arguments(p)


def run_key(args: argparse.Namespace) -> int:
    path = write_key_file(args.out)
    print(f"wrote a new key to {path} (readable by you only): keep it safe, a store cannot be read without it")
    return 0


@command("gallery key", "make a new random key file for encrypting a store", run_key)
def _key_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="the key file to create (never overwritten)")


def run_migrate(args: argparse.Namespace) -> int:
    from facerec.serve.migrate import migrate_to_model

    with store_from(args, create=False) as store:
        models = (args.to, args.as_name, args.calibration, args.from_model, args.detector, args.device, args.runtime)
        done = migrate_to_model(store, args.gallery, *models)
    print(
        f"gallery '{done.gallery.name}' of model '{done.gallery.model}': {done.re_embedded} faces embedded again "
        f"from their kept crops, {done.mapped} mapped from '{args.gallery}'"
    )
    if done.fitted is not None:
        f = done.fitted
        print(f"map: {f.calibration} calibration faces, lambda {f.lam:g}, held-out loss {f.loss:.4f} (1 - cosine)")
    print(f"gallery '{args.gallery}' is unchanged: delete it once '{done.gallery.name}' is checked")
    return 0


@command("gallery migrate", "move a gallery to a new model: kept crops embedded again, other faces mapped", run_migrate)
def _migrate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("gallery", help="the gallery to migrate (its name in the store)")
    p.add_argument("--to", required=True, help="the new model: default, dlib, resnet128, fast, or a model file")
    p.add_argument("--as", dest="as_name", help="the new gallery's name (default: GALLERY-MODEL)")
    p.add_argument(
        "--calibration", help="a folder of face images (not the gallery's people) to fit the map old -> new on"
    )
    p.add_argument("--from-model", help="the gallery's model, when its recorded name does not load it (a file)")
    p.add_argument("--detector", help="the new model's detector (default: the gallery's)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_runtime_argument(p)
    add_store_arguments(p, gallery_name=False)
