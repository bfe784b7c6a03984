"""Analysis commands: analyze bias, linear-map, resolution, membership, embeddings."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from facerec.cli.registry import command


def analysis_source(args: argparse.Namespace) -> Any:
    from facerec.analysis.options import parse_reuse
    from facerec.analysis.studies import DEFAULT_CACHE, Source

    cache = None if args.no_cache else Path(args.cache) if args.cache else DEFAULT_CACHE
    lfw = Path(args.lfw) if args.lfw else None
    images = Path(args.images) if getattr(args, "images", None) else None
    return Source(lfw, images, getattr(args, "folds", None), cache, parse_reuse(args.reuse or []), args.device)


def add_analysis_arguments(p: argparse.ArgumentParser, images: bool = True, model: bool = True) -> None:
    p.add_argument("--lfw", help="LFW root (images/ and meta/): the View 2 pair images are analyzed")
    if images:
        p.add_argument("--images", help="or an identity-folder tree root/<identity>/<image>")
        p.add_argument("--folds", type=int, nargs="+", help="LFW View 2 folds to use (0-based; default all)")
    if model:
        p.add_argument(
            "--model",
            default="dlib",
            help="'dlib' (reference model), 'default', 'resnet128', 'fast' or a facerec model.pt",
        )
        p.add_argument("--detector", default="mtcnn", help="mtcnn, dlib, dlib-native or none (pre-aligned input)")
    p.add_argument("--out", required=True, help="folder for report.json and the plots")
    p.add_argument("--cache", help="embedding cache folder (default ~/.cache/facerec/embeddings)")
    p.add_argument("--no-cache", action="store_true", help="always embed afresh")
    p.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    p.add_argument(
        "--reuse",
        nargs="*",
        metavar="MODEL=NPZ",
        help="a model's embeddings .npz (from facerec eval) to take rows from",
    )


def run_analyze_bias(args: argparse.Namespace) -> int:
    from facerec.analysis.bias import operating_points_table
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
    if "clustering_index" in report:
        ck = ", ".join(f"{c:.2f}" for c in report["clustering_index"]["C_k"][:5])
        clustering = f"clustering index C_1..5: {ck}"
    else:
        clustering = f"similarity matrix {report['matrix_subjects']}"
    print(f"threshold {report['threshold']:.4f} at FMR {args.target_fmr:g}; {clustering}")
    for name, g in report["groups"].items():
        fmr = g["fmr"] if isinstance(g["fmr"], str) else f"{g['fmr']:.2e} {g['ci']}"
        fnmr = g["fnmr"] if isinstance(g["fnmr"], str) else f"{g['fnmr']:.3f} {g['fnmr_ci']}"
        print(f"  {name}: {g['subjects']} subjects  FMR {fmr}  FNMR {fnmr}")
    print(operating_points_table(report["operating_points"]))
    print(f"report and plots in {args.out}")
    return 0


@command(
    "analyze bias",
    "demographic differentials: score matrix by group, PCA clustering index, FMR/FNMR",
    run_analyze_bias,
)
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


@command(
    "analyze linear-map",
    "fit ridge maps from model A's embedding space to model B's; verify across them",
    run_analyze_linear_map,
)
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


@command(
    "analyze resolution",
    "high vs low resolution faces: HR-HR, LR-LR, HR-LR; Procrustes and CPD alignment",
    run_analyze_resolution,
)
def _analyze_resolution_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=36, help="face size on the 112 template (36: ~12 px between the eyes)")
    p.add_argument("--eval-folds", type=int, nargs="+", default=[0, 1, 2], help="LFW folds whose pairs are scored")
    p.add_argument("--fit-folds", type=int, nargs="+", default=[3, 4], help="LFW folds the alignments are fitted on")
    add_analysis_arguments(p, images=False)


def run_analyze_membership(args: argparse.Namespace) -> int:
    from facerec.analysis.options import parse_models
    from facerec.analysis.studies import membership_study

    report = membership_study(
        analysis_source(args),
        args.model,
        args.detector,
        Path(args.members_from),
        Path(args.out),
        parse_models(args.control or []),
        args.attack_model,
        args.attack_detector,
    )
    for name, r in report["results"].items():
        print(f"{name}: membership AUC {r['auc']:.3f} [{r['auc_ci'][0]:.3f}, {r['auc_ci'][1]:.3f}]")
    if "mapping_attack" in report:
        print_mapping_attack(report["mapping_attack"])
    print(f"report and plots in {args.out}")
    return 0


def print_mapping_attack(attack: dict[str, Any]) -> None:
    rows = ", ".join(f"N={r['pairs']}: {100 * r['rank1']:.1f}%" for r in attack["results"])
    chance = 100 * attack["chance_rank1"]
    print(f"mapping attack rank-1 ({attack['gallery_identities']} identities, chance {chance:.2f}%): {rows}")


@command(
    "analyze membership",
    "membership inference from embeddings (members = a training tree's identities)",
    run_analyze_membership,
)
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


@command(
    "analyze embeddings", "2-D/3-D PCA or t-SNE pictures of embeddings by identity or group", run_analyze_embeddings
)
def _analyze_embeddings_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", default="pca", choices=["pca", "tsne"])
    p.add_argument("--dims", type=int, default=2, choices=[2, 3])
    p.add_argument("--top", type=int, default=12, help="the identities with the most images")
    p.add_argument("--groups", help="color by group instead: gender, race or a CSV")
    add_analysis_arguments(p)


def run_analyze_quality(args: argparse.Namespace) -> int:
    from facerec.analysis.quality import QualityStudy, quality_study
    from facerec.eval.quality import scorer_options

    study = QualityStudy(
        scorer_options(args.scorers, args.option or []),
        None if args.baseline_detector == "none" else args.baseline_detector,
        tuple(args.fmr),
        args.max_discard,
        args.repeats,
        tuple(args.norm_range) if args.norm_range else None,
    )
    aligned = Path(args.aligned) if args.aligned else None
    report = quality_study(analysis_source(args), args.model, args.detector, aligned, study, Path(args.out))
    for fmr, edc in report["edc"].items():
        print(f"FMR {fmr}: threshold {edc['threshold']:.4f}, FNMR {edc['fnmr_all_pairs']:.4f} on all pairs")
        print(f"  random   area {edc['random']['area']:.4f} (5-95%: {edc['random']['area_p5_p95']})")
        for name, r in edc["scorers"].items():
            verdict = "beats random" if r["beats_random"] else "does NOT beat random"
            print(f"  {name}: area {r['area']:.4f} ({r['area_over_random']:.2f} x random, {verdict})")
        print(f"  oracle   area {edc['oracle']['area']:.4f}")
    print(f"report and plots in {args.out}")
    return 0


@command(
    "analyze quality",
    "face quality scores on LFW pairs: error-versus-discard curves against random discarding",
    run_analyze_quality,
)
def _analyze_quality_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--aligned", help="aligned copy of the LFW images (facerec align); embedded with detector none")
    p.add_argument("--scorers", nargs="+", default=["stability", "feature_norm"], help="quality scorers to compare")
    p.add_argument("--option", nargs="*", metavar="SCORER.KEY=VALUE", help="scorer options, e.g. stability.count=4")
    p.add_argument("--baseline-detector", default="mtcnn", help="detector of the provisional score, or none")
    p.add_argument("--fmr", type=float, nargs="+", default=[1e-2, 1e-3], help="FMRs that fix the thresholds")
    p.add_argument("--max-discard", type=float, default=0.5, help="largest fraction of genuine pairs discarded")
    p.add_argument("--repeats", type=int, default=100, help="random discard orders averaged")
    p.add_argument("--norm-range", type=float, nargs=2, metavar=("LOW", "HIGH"), help="feature_norm's range")
    add_analysis_arguments(p, images=False)
    p.add_argument("--folds", type=int, nargs="+", help="LFW View 2 folds to use (0-based; default all)")
    p.set_defaults(model="fast")  # the study of docs/quality: our own model
