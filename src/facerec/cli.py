"""The `facerec` command line."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from facerec.errors import FacerecError

Handler = Callable[[argparse.Namespace], int]
COMMANDS: dict[str, tuple[Handler, Callable[[argparse.ArgumentParser], None], str]] = {}


def command(name: str, help_text: str) -> Callable[[Callable], Callable]:
    """Register a sub-command: the decorated function adds its arguments; handler = run_<name>."""

    def decorator(add_arguments: Callable[[argparse.ArgumentParser], None]) -> Callable:
        handler = globals()[f"run_{name.replace('-', '_').replace(' ', '_')}"]
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


@command("embed", "compute L2-normalized embeddings of images with a trained model")
def _embed_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("inputs", nargs="+", help="image files, or one identity-folder tree")
    p.add_argument("--model", required=True, help="model.pt or a training checkpoint")
    p.add_argument("--out", default="embeddings.npy", help="output .npy (paths go to the .json beside it)")
    p.add_argument("--flip", action="store_true", help="add the mirrored image's embedding")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--cpu", action="store_true", help="stay on the CPU even when CUDA is available")


# ---- eval --------------------------------------------------------------------------------
def build_aligner(detector: str, embedder: Any, several: str = "central") -> Any:
    """None for pre-aligned input; dlib's own pipeline; or a detector + our alignment. Every
    image gets a crop (no face: centered fallback), since every pair must be scored."""
    from facerec.align.pipeline import DETECTORS, Aligner, AlignPolicy

    if detector == "none":
        return None
    if detector == "dlib-native":
        from facerec.align.dlib_models import DlibNativeAligner

        return DlibNativeAligner()
    size = (embedder.input_size, embedder.input_size)
    return Aligner(DETECTORS.build(detector), embedder.template, size, AlignPolicy(several=several, missing="center"))


def degradation(args: argparse.Namespace, embedder: Any) -> Any:
    """The crop transform of --degrade N for this model's crops (None when not asked for)."""
    if not args.degrade:
        return None
    from facerec.analysis.resolution import degrader

    return degrader(args.degrade, embedder.template)


def finish_eval(report: dict, out: Path) -> int:
    for key in ("no_flip", "flip"):
        r = report[key]
        print(
            f"{key:8s} accuracy {100 * r['kfold_accuracy']:.2f}% +- {100 * r['kfold_std']:.2f}%  "
            f"AUC {r['auc']:.4f}  EER {100 * r['eer']:.2f}%  TAR@FAR=1e-3 {r['tar_at_far']['0.001']}"
        )
    print(f"report and plots in {out}")
    return 0


def run_eval_lfw(args: argparse.Namespace) -> int:
    from facerec.eval.protocols import read_lfw_pairs

    root = Path(args.root)
    pairs = read_lfw_pairs(Path(args.pairs) if args.pairs else root / "meta" / "pairs.txt", root / "images")
    if args.folds:
        pairs = pairs.select(np.isin(pairs.fold, args.folds))
    return evaluate_protocol(pairs, args, [Path(p) for p in args.published or []])


def add_eval_model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default="dlib", help="'dlib' (reference model), 'default' (shipped model) or a model.pt / checkpoint"
    )
    p.add_argument(
        "--detector", default="mtcnn", help="mtcnn, dlib, dlib-native (dlib's own chips) or none (pre-aligned)"
    )
    p.add_argument("--out", default="runs/eval", help="folder for report.json and the plots")
    p.add_argument(
        "--degrade", type=int, default=0, help="score low-resolution faces: N px across on the 112 template (e.g. 36)"
    )


@command("eval lfw", "LFW 10-fold verification (View 2 pairs.txt, or View 1 with --pairs)")
def _eval_lfw_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", required=True, help="LFW folder holding images/<Name>/<Name>_NNNN.jpg and meta/")
    p.add_argument("--pairs", help="pairs file (default ROOT/meta/pairs.txt)")
    p.add_argument("--folds", type=int, nargs="+", help="evaluate only these protocol folds (0-based)")
    p.add_argument("--published", nargs="*", help="published ROC files to draw on the same axes")
    add_eval_model_arguments(p)


def evaluate_protocol(pairs: Any, args: argparse.Namespace, published: list[Path] | None = None) -> int:
    """Embed (aligning with --detector), score, write the report of a PairSet; print the summary."""
    from facerec.eval.evaluate import evaluate_pairs
    from facerec.models.io import load_embedder

    embedder = load_embedder(args.model)
    aligner = build_aligner(args.detector, embedder)
    name = f"{embedder.name}+{args.detector}" + (f", faces degraded to {args.degrade} px" if args.degrade else "")
    report = evaluate_pairs(pairs, embedder, aligner, args.out, name, published, transform=degradation(args, embedder))
    return finish_eval(report, Path(args.out))


def run_eval_pairs(args: argparse.Namespace) -> int:
    from facerec.eval.protocols import read_pairs_csv

    return evaluate_protocol(read_pairs_csv(args.csv, args.base), args)


@command("eval pairs", "verification on a CSV of path1,path2,label[,fold]")
def _eval_pairs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("csv")
    p.add_argument("--base", help="folder the CSV's relative paths start from (default: the CSV's folder)")
    add_eval_model_arguments(p)


def run_eval_bin(args: argparse.Namespace) -> int:
    from facerec.eval.protocols import read_bin

    return evaluate_protocol(read_bin(args.bin), args)


@command("eval bin", "verification on an insightface .bin file (lfw.bin, cfp_fp.bin, agedb_30.bin ...)")
def _eval_bin_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("bin")
    add_eval_model_arguments(p)
    p.set_defaults(detector="none")


def run_eval_identify(args: argparse.Namespace) -> int:
    from facerec.data.datasets import ImageFolderDataset
    from facerec.eval.identification import gallery_probe_split, identification_report
    from facerec.eval.report import write_json
    from facerec.eval.runner import embed_images
    from facerec.models.io import load_embedder

    dataset = ImageFolderDataset(args.root)
    embedder = load_embedder(args.model)
    aligner = build_aligner(args.detector, embedder)
    emb = embed_images(dataset.paths, embedder, aligner, transform=degradation(args, embedder)).get(args.flip)
    split = gallery_probe_split(dataset.labels, args.seed, args.gallery_images, args.unenrolled)
    report = identification_report(emb, dataset.labels, split)
    write_json(Path(args.out) / "identification.json", {"model": embedder.name, "seed": args.seed, **report})
    print(
        f"rank-1 {100 * report['rank1']:.2f}%  rank-5 {100 * report['rank5']:.2f}%  "
        f"({report['mated_probes']} mated probes, {report['gallery_identities']} enrolled identities)"
    )
    if "fnir_at_fpir" in report:
        print("FNIR at FPIR:", report["fnir_at_fpir"])
    return 0


@command("eval identify", "closed- and open-set identification on an identity-folder tree")
def _eval_identify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", required=True, help="root/<identity>/<image>")
    p.add_argument("--seed", type=int, default=0, help="seed of the gallery/probe split")
    p.add_argument("--gallery-images", type=int, default=1, help="images per identity enrolled")
    p.add_argument("--unenrolled", type=float, default=0.3, help="fraction of identities kept out (non-mated)")
    p.add_argument("--flip", action="store_true", help="flip test-time augmentation")
    add_eval_model_arguments(p)


# ---- verify / enroll / identify ----------------------------------------------------------
def recognizer(args: argparse.Namespace) -> Any:
    from facerec.serve.api import FaceRecognizer

    return FaceRecognizer(args.model, args.detector, threshold=args.threshold)


def add_use_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model", default="default", help="'default' (the shipped model), 'dlib' (reference model) or a model.pt"
    )
    p.add_argument("--detector", default="mtcnn", help="mtcnn or dlib")
    p.add_argument("--threshold", type=float, help="cosine threshold (default: calibrated on LFW)")


def run_verify(args: argparse.Namespace) -> int:
    result = recognizer(args).verify(args.image1, args.image2)
    verdict = "same person" if result.same else "different people"
    print(f"score {result.score:.4f} (threshold {result.threshold:.4f}): {verdict}")
    return 0 if result.same else 1


@command("verify", "are two face images the same person? (exit 0 yes, 1 no, 2 error)")
def _verify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("image1")
    p.add_argument("image2")
    add_use_arguments(p)


def run_enroll(args: argparse.Namespace) -> int:
    from facerec.align.pipeline import NoFaceError, image_files
    from facerec.serve.gallery import Gallery

    rec = recognizer(args)
    path = Path(args.gallery)
    gallery = Gallery.load(path) if path.exists() else Gallery(rec.embedder.name)
    if gallery.model != rec.embedder.name:
        raise FacerecError(f"gallery {path} holds '{gallery.model}' embeddings, not '{rec.embedder.name}'")
    root = Path(args.dir)
    if not root.is_dir():
        raise FacerecError(f"folder not found: {root}")
    added, skipped = 0, []
    for image in image_files(root):
        name = args.name or image.parent.name
        try:
            gallery.add(name, rec.represent(image), str(image))
            added += 1
        except NoFaceError as exc:
            skipped.append(str(exc))
    for line in skipped:
        print(f"skipped: {line}", file=sys.stderr)
    if not added:
        raise FacerecError(f"nothing enrolled from {root}: no image with a face")
    gallery.save(path)
    print(f"enrolled {added} images ({len(set(gallery.names))} people in {path}); {len(skipped)} skipped")
    return 0


@command("enroll", "add faces to a gallery: DIR/<person>/<image> (or DIR of one person with --name)")
def _enroll_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir")
    p.add_argument("--gallery", default="gallery.npz")
    p.add_argument("--name", help="all images of DIR belong to this person")
    add_use_arguments(p)


def run_identify(args: argparse.Namespace) -> int:
    from facerec.serve.gallery import Gallery

    rec = recognizer(args)
    gallery = Gallery.load(args.gallery)
    if gallery.model != rec.embedder.name:
        raise FacerecError(f"gallery {args.gallery} holds '{gallery.model}' embeddings, not '{rec.embedder.name}'")
    matches = gallery.search(rec.represent(args.image), args.top)
    best_name, best_score = matches[0]
    known = best_score >= rec.threshold
    print(f"{best_name if known else 'unknown'} (best score {best_score:.4f}, threshold {rec.threshold:.4f})")
    for name, score in matches:
        print(f"  {name:30s} {score:.4f}")
    return 0 if known else 1


@command("identify", "who is this? search a gallery (exit 0 known, 1 unknown, 2 error)")
def _identify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("image")
    p.add_argument("--gallery", default="gallery.npz")
    p.add_argument("--top", type=int, default=5)
    add_use_arguments(p)


# ---- align -------------------------------------------------------------------------------
def run_align(args: argparse.Namespace) -> int:
    from facerec.align.pipeline import AlignPolicy, align_tree

    policy = AlignPolicy(several=args.several, missing=args.missing)
    summary = align_tree(args.src, args.dst, args.detector, args.template, None, policy, args.workers)
    print(json.dumps(summary, indent=1))
    if summary["failed"]:
        print(f"{summary['failed']} images failed: see {Path(args.dst) / 'failures.tsv'}", file=sys.stderr)
    return 0


@command("align", "detect, align and crop every image of an identity-folder tree (resumable)")
def _align_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--detector", default="mtcnn", help="mtcnn or dlib")
    p.add_argument("--template", default="arcface_112", help="arcface_112 or arcface_112x96")
    p.add_argument("--several", default="central", help="several faces: central, largest or best")
    p.add_argument("--missing", default="skip", help="no face: skip (logged) or center (center crop)")
    p.add_argument("--workers", type=int, default=2)


# ---- analyze -----------------------------------------------------------------------------
def analysis_source(args: argparse.Namespace) -> Any:
    from facerec.analysis.studies import DEFAULT_CACHE, Source
    from facerec.errors import DataError

    cache = None if args.no_cache else Path(args.cache) if args.cache else DEFAULT_CACHE
    lfw = Path(args.lfw) if args.lfw else None
    images = Path(args.images) if getattr(args, "images", None) else None
    reuse: dict[str, list[Path]] = {}
    for item in args.reuse or []:
        model, sep, file = item.partition("=")
        if not sep:
            raise DataError(f"--reuse takes MODEL=FILE.npz (e.g. dlib=runs/eval/embeddings.npz), got '{item}'")
        reuse.setdefault(model, []).append(Path(file))
    return Source(lfw, images, getattr(args, "folds", None), cache, reuse)


def add_analysis_arguments(p: argparse.ArgumentParser, images: bool = True, model: bool = True) -> None:
    p.add_argument("--lfw", help="LFW root (images/ and meta/): the View 2 pair images are analyzed")
    if images:
        p.add_argument("--images", help="or an identity-folder tree root/<identity>/<image>")
        p.add_argument("--folds", type=int, nargs="+", help="LFW View 2 folds to use (0-based; default all)")
    if model:
        p.add_argument("--model", default="dlib", help="'dlib' (reference model), 'default' or a facerec model.pt")
        p.add_argument("--detector", default="mtcnn", help="mtcnn, dlib, dlib-native or none (pre-aligned input)")
    p.add_argument("--out", required=True, help="folder for report.json and the plots")
    p.add_argument("--cache", help="embedding cache folder (default ~/.cache/facerec/embeddings)")
    p.add_argument("--no-cache", action="store_true", help="always embed afresh")
    p.add_argument(
        "--reuse",
        nargs="*",
        metavar="MODEL=NPZ",
        help="a model's embeddings .npz (from facerec eval) to take rows from",
    )


def run_analyze_bias(args: argparse.Namespace) -> int:
    from facerec.analysis.studies import bias_study

    report = bias_study(
        analysis_source(args),
        args.model,
        args.detector,
        args.groups,
        Path(args.out),
        args.target_fmr,
        components=args.components,
        n_boot=args.bootstrap,
        min_mated=args.min_mated,
    )
    ck = ", ".join(f"{c:.2f}" for c in report["clustering_index"]["C_k"][:5])
    print(f"threshold {report['threshold']:.4f} at FMR {args.target_fmr:g}; clustering index C_1..5: {ck}")
    for name, g in report["groups"].items():
        fmr = g["fmr"] if isinstance(g["fmr"], str) else f"{g['fmr']:.2e} {g['ci']}"
        fnmr = g["fnmr"] if isinstance(g["fnmr"], str) else f"{g['fnmr']:.3f} {g['fnmr_ci']}"
        print(f"  {name}: {g['subjects']} subjects  FMR {fmr}  FNMR {fnmr}")
    print(f"report and plots in {args.out}")
    return 0


@command("analyze bias", "demographic differentials: score matrix by group, PCA clustering index, FMR/FNMR")
def _analyze_bias_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--groups", required=True, help="gender or race (LFW label lists), or a CSV key,group")
    p.add_argument("--target-fmr", type=float, default=1e-3, help="overall FMR that sets the global threshold")
    p.add_argument("--components", type=int, default=10, help="principal components to report")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the intervals")
    p.add_argument("--min-mated", type=int, default=20, help="fewest mated pairs for an FNMR")
    add_analysis_arguments(p)


def run_analyze_linear_map(args: argparse.Namespace) -> int:
    from facerec.analysis.studies import linear_map_study

    report = linear_map_study(
        analysis_source(args),
        args.model_a,
        args.detector_a,
        args.model_b,
        args.detector_b,
        args.eval_folds,
        args.fit_folds,
        tuple(args.sizes),
        Path(args.out),
    )
    print(f"B alone: {100 * report['b_alone']['accuracy']:.2f}%")
    for r in report["results"]:
        if "accuracy" in r:
            print(
                f"  {r['variant']:13s} N={r['images']:5d} lambda={r['lambda']:g}: {100 * r['accuracy']:.2f}% "
                f"(drop {100 * r['accuracy_drop']:.2f} points) TAR@1e-3 {r['tar_at_far']['0.001']}"
            )
    print(f"report and plots in {args.out}")
    return 0


@command("analyze linear-map", "fit ridge maps from model A's embedding space to model B's; verify across them")
def _analyze_linear_map_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-a", required=True)
    p.add_argument("--detector-a", default="mtcnn")
    p.add_argument("--model-b", default="dlib")
    p.add_argument("--detector-b", default="mtcnn")
    p.add_argument(
        "--eval-folds", type=int, nargs="+", default=[5, 6, 7, 8, 9], help="LFW folds whose pairs are scored"
    )
    p.add_argument("--fit-folds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="LFW folds the maps learn from")
    p.add_argument("--sizes", type=int, nargs="+", default=[100, 500, 2000], help="training images")
    add_analysis_arguments(p, images=False, model=False)


def run_analyze_resolution(args: argparse.Namespace) -> int:
    from facerec.analysis.studies import resolution_study

    report = resolution_study(
        analysis_source(args), args.model, args.detector, args.size, args.eval_folds, args.fit_folds, Path(args.out)
    )
    for stage in ("before", "procrustes", "cpd-rigid", "cpd-affine"):
        r = report[stage]
        line = "  ".join(f"{k} {100 * r[k]['accuracy']:.2f}%" for k in ("HR-HR", "LR-LR", "HR-LR"))
        print(f"{stage:11s} {line}  HR->LR distance {r['hr_to_lr_distance']['mean']:.3f}")
    print(f"report and plots in {args.out}")
    return 0


@command("analyze resolution", "high vs low resolution faces: HR-HR, LR-LR, HR-LR; Procrustes and CPD alignment")
def _analyze_resolution_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=36, help="face size on the 112 template (36: ~12 px between the eyes)")
    p.add_argument("--eval-folds", type=int, nargs="+", default=[0, 1, 2], help="LFW folds whose pairs are scored")
    p.add_argument("--fit-folds", type=int, nargs="+", default=[3, 4], help="LFW folds the alignments are fitted on")
    add_analysis_arguments(p, images=False)


def run_analyze_membership(args: argparse.Namespace) -> int:
    from facerec.analysis.studies import membership_study

    controls = [tuple(c.split(":", 1)) if ":" in c else (c, "mtcnn") for c in args.control or []]
    report = membership_study(
        analysis_source(args),
        args.model,
        args.detector,
        Path(args.members_from),
        Path(args.out),
        controls,
        args.attack_model,
        args.attack_detector,
    )
    for name, r in report["results"].items():
        print(f"{name}: membership AUC {r['auc']:.3f} [{r['auc_ci'][0]:.3f}, {r['auc_ci'][1]:.3f}]")
    if "mapping_attack" in report:
        m = report["mapping_attack"]
        rows = ", ".join(f"N={r['pairs']}: {100 * r['rank1']:.1f}%" for r in m["results"])
        chance = 100 * m["chance_rank1"]
        print(f"mapping attack rank-1 ({m['gallery_identities']} identities, chance {chance:.2f}%): {rows}")
    print(f"report and plots in {args.out}")
    return 0


@command("analyze membership", "membership inference from embeddings (members = a training tree's identities)")
def _analyze_membership_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--members-from", required=True, help="the model's training tree: its folders are the members")
    p.add_argument("--control", nargs="*", help="MODEL[:DETECTOR] that saw none of these people (e.g. dlib:mtcnn)")
    p.add_argument("--attack-model", help="also run the mapping attack from --model's space into this model's")
    p.add_argument("--attack-detector", default="mtcnn")
    add_analysis_arguments(p)


def run_analyze_embeddings(args: argparse.Namespace) -> int:
    from facerec.analysis.studies import embeddings_study

    report = embeddings_study(
        analysis_source(args), args.model, args.detector, Path(args.out), args.method, args.dims, args.top, args.groups
    )
    print(f"{report['points']} embeddings -> {Path(args.out) / report['plot']}")
    return 0


@command("analyze embeddings", "2-D/3-D PCA or t-SNE pictures of embeddings by identity or group")
def _analyze_embeddings_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="pca", choices=["pca", "tsne"])
    p.add_argument("--dims", type=int, default=2, choices=[2, 3])
    p.add_argument("--top", type=int, default=12, help="the identities with the most images")
    p.add_argument("--groups", help="color by group instead: gender, race or a CSV")
    add_analysis_arguments(p)


def run_lfw_people(args: argparse.Namespace) -> int:
    from facerec.data.lfw import link_people, people_folds

    folds = people_folds(Path(args.lfw) / "meta" / "people.txt")
    chosen = {name: n for f in args.folds for name, n in folds[f].items()}
    linked, images = link_people(args.src, args.dst, chosen, args.min_images)
    print(f"{linked} people ({images} images) of LFW people folds {args.folds} linked under {args.dst}")
    return 0


@command("lfw-people", "link the people of some LFW View 2 people folds (identity-disjoint) into a training tree")
def _lfw_people_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="identity-folder tree of LFW images (e.g. aligned by `facerec align`)")
    p.add_argument("dst", help="new tree of symbolic links")
    p.add_argument("--lfw", required=True, help="LFW root holding meta/people.txt")
    p.add_argument("--folds", type=int, nargs="+", required=True, help="0-based people folds")
    p.add_argument("--min-images", type=int, default=1, help="leave out people with fewer images")


def run_distill_targets(args: argparse.Namespace) -> int:
    from facerec.distill.targets import write_targets

    reuse = [Path(p) for p in args.reuse or []]
    out = write_targets(args.tree, args.out, args.teacher, args.detector, args.source_root, reuse)
    print(f"teacher embeddings of {args.tree} written to {out}; train with --set distill.targets={out}")
    return 0


@command("distill-targets", "embed a training tree with a teacher model, for distillation (distill.targets)")
def _distill_targets_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("tree", help="identity-folder tree of training images")
    p.add_argument("--out", required=True, help="output .npz")
    p.add_argument("--teacher", default="dlib", help="'dlib' (reference model) or a facerec model.pt")
    p.add_argument("--detector", default="mtcnn", help="how the teacher sees the images (none: as they are)")
    p.add_argument("--source-root", help="embed the same relative paths under this folder (e.g. the originals)")
    p.add_argument("--reuse", nargs="*", help="the teacher's embeddings .npz files (by source path) to take rows from")


def run_morphs(args: argparse.Namespace) -> int:
    from facerec.data.morphs import write_morphs

    root = write_morphs(args.src, args.dst, args.count, args.seed, (args.min_weight, args.max_weight))
    print(f"{args.count} morphs of {args.src} in {root}; label them with `facerec distill-targets {root}`")
    return 0


@command("morphs", "blend aligned faces of two different people: unlabelled faces for distillation")
def _morphs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="identity-folder tree of aligned crops")
    p.add_argument("dst", help="new tree, one folder per morph (resumes)")
    p.add_argument("--count", type=int, required=True, help="number of morphs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-weight", type=float, default=0.35, help="smallest weight of the first face")
    p.add_argument("--max-weight", type=float, default=0.65, help="largest weight of the first face")


# ---- checkpoints -------------------------------------------------------------------------
def run_checkpoint_convert(args: argparse.Namespace) -> int:
    from facerec.train.convert import convert

    written = convert(Path(args.checkpoint), args.world_size, Path(args.out))
    print(f"wrote {len(written)} file(s) for {args.world_size} process(es) to {args.out}")
    return 0


@command("checkpoint convert", "re-shard a Partial FC checkpoint for another number of processes (1: one file)")
def _checkpoint_convert_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="any rank's file of the step, e.g. runs/x/checkpoints/checkpoint_00001000.pt")
    p.add_argument("--world-size", type=int, required=True)
    p.add_argument("--out", required=True, help="folder for the converted files (e.g. a new run's checkpoints/)")


def run_pack(args: argparse.Namespace) -> int:
    from facerec.data.recordio import pack_folder

    rec, idx = pack_folder(args.src, args.prefix)
    print(f"wrote {rec} and {idx}")
    return 0


@command("pack", "pack an identity-folder tree into insightface's RecordIO format (PREFIX.rec + PREFIX.idx)")
def _pack_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("src")
    p.add_argument("prefix", help="e.g. data/train (writes data/train.rec and data/train.idx)")


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
    from facerec.heads import HEADS
    from facerec.models import BACKBONES
    from facerec.train.optim import OPTIMIZERS, SCHEDULES

    for registry in (BACKBONES, HEADS, OPTIMIZERS, SCHEDULES, SOURCES):
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
    groups: dict[str, argparse._SubParsersAction] = {}
    for name, (handler, add_arguments, help_text) in COMMANDS.items():
        target, leaf = sub, name
        if " " in name:  # "eval lfw": a sub-command of the 'eval' group
            group, leaf = name.split(" ", 1)
            if group not in groups:
                gp = sub.add_parser(group, help=f"{group} commands")
                groups[group] = gp.add_subparsers(dest=f"{group}_command", required=True)
            target = groups[group]
        p = target.add_parser(leaf, help=help_text, description=help_text)
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
