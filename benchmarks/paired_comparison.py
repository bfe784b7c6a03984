"""Two models on the same pairs: is the difference more than noise?

Both models' embeddings come from earlier `facerec eval` runs (their `embeddings.npz`, with
flip). Each pair is judged at its fold's threshold, chosen on the other folds, exactly as the
k-fold accuracy of the reports. Per yaw-difference range (when a pose file is given) and over all
pairs:
- accuracy of A and B, the discordant pairs (A right and B wrong, and the reverse) and the exact
  two-sided McNemar p-value on them;
- TAR@FAR 1e-2 of A and B with a 95% paired-bootstrap interval of B - A (pairs resampled;
  pairs sharing a person are not independent, so the interval is, if anything, too narrow).

    python benchmarks/paired_comparison.py --protocol pairs csv=runs/pose/celeba_heldout_cross_pose.csv \\
        --pose data/celeba_mtcnn112/pose.tsv \\
        --a plain=runs/issue19/eval/abl_plain/celeba_xpose/embeddings.npz \\
        --b pose3d=runs/issue19/eval/abl_pose3d/celeba_xpose/embeddings.npz
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import binomtest

from facerec.align.pose_files import YAW_EDGES, PoseTable, bucket_label, buckets
from facerec.errors import DataError
from facerec.eval.metrics import roc_curve, tar_at_fars
from facerec.eval.pairs import PairSet
from facerec.eval.pose_breakdown import fold_decisions, pair_yaw_differences
from facerec.eval.protocols import build_protocol
from facerec.eval.verification import kfold_accuracy
from facerec.pipeline import stored_rows

FAR = 1e-2


def flipped_rows(pairs: PairSet, npz: Path) -> np.ndarray:
    """The flip embeddings of the pairs' images: matched by the name `facerec eval` stored for
    each image, else by resolved path."""
    stored = np.load(npz)
    return stored["flipped"][stored_rows(stored["names"], pairs.images, npz, pairs.names)]


def judged(pairs: PairSet, npz: Path) -> tuple[np.ndarray, np.ndarray]:
    """(flip scores, correct at the fold thresholds) of one model's embeddings."""
    scores = pairs.scores(flipped_rows(pairs, npz))
    thresholds = kfold_accuracy(scores, pairs.same, pairs.fold).thresholds
    return scores, fold_decisions(scores, pairs.same, pairs.fold, thresholds)


def tar(scores: np.ndarray, same: np.ndarray) -> float | None:
    if same.all() or not same.any() or (~same).sum() < 1 / FAR:
        return None
    return tar_at_fars(roc_curve(scores, same), (FAR,))[f"{FAR:g}"]


def bootstrap_difference(a: np.ndarray, b: np.ndarray, same: np.ndarray, draws: int, seed: int) -> list[float] | None:
    """The 95% percentile interval of TAR_b - TAR_a over pairs drawn with replacement; None when
    a tenth of the draws or more leave too few impostors to read the TAR (the rest would be a
    biased sample)."""
    if tar(a, same) is None:
        return None
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(draws):
        i = rng.integers(0, len(same), len(same))
        ta, tb = tar(a[i], same[i]), tar(b[i], same[i])
        if ta is not None and tb is not None:
            diffs.append(tb - ta)
    if len(diffs) < 0.9 * draws:
        return None
    return [float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5))]


def compare(
    scores: dict[str, np.ndarray], correct: dict[str, np.ndarray], same: np.ndarray, draws: int
) -> dict[str, Any]:
    (na, nb) = scores
    only_a = int((correct[na] & ~correct[nb]).sum())
    only_b = int((correct[nb] & ~correct[na]).sum())
    p = binomtest(only_b, only_a + only_b).pvalue if only_a + only_b else 1.0
    return {
        "pairs": len(same),
        "genuine": int(same.sum()),
        "accuracy": {n: float(correct[n].mean()) for n in (na, nb)},
        f"only_{na}_right": only_a,
        f"only_{nb}_right": only_b,
        "mcnemar_p": float(p),
        "tar_at_far_1e-2": {n: tar(scores[n], same) for n in (na, nb)},
        "tar_difference_ci95": bootstrap_difference(scores[na], scores[nb], same, draws, seed=0),
    }


def line(label: str, row: dict[str, Any], na: str, nb: str) -> str:
    acc, t, ci = row["accuracy"], row["tar_at_far_1e-2"], row["tar_difference_ci95"]
    tars = " / ".join("-" if t[n] is None else f"{100 * t[n]:.2f}%" for n in (na, nb))
    interval = "-" if ci is None else f"[{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]"
    return (
        f"| {label} | {row['pairs']} | {100 * acc[na]:.2f}% / {100 * acc[nb]:.2f}% | "
        f"{row[f'only_{na}_right']} / {row[f'only_{nb}_right']} | {row['mcnemar_p']:.3f} | {tars} | {interval} |"
    )


def named(spec: str) -> tuple[str, Path]:
    name, _, path = spec.partition("=")
    return name, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", nargs="+", required=True, help="NAME key=value ... (as build_protocol takes)")
    parser.add_argument("--a", required=True, help="NAME=embeddings.npz of the first model")
    parser.add_argument("--b", required=True, help="NAME=embeddings.npz of the second model")
    parser.add_argument("--pose", type=Path, help="pose.tsv of the images: the yaw-difference ranges")
    parser.add_argument("--draws", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--out", type=Path, help="write the comparison here as JSON")
    args = parser.parse_args()
    options: dict[str, Any] = dict(kv.split("=", 1) for kv in args.protocol[1:])
    if "folds" in options:
        options["folds"] = [int(f) for f in options["folds"].split(",")]
    pairs = build_protocol(args.protocol[0], options).pairs
    models = dict(named(s) for s in (args.a, args.b))
    if len(models) != 2:
        raise DataError(f"--a and --b need two different names, got {args.a} and {args.b}")
    judged_by = {name: judged(pairs, npz) for name, npz in models.items()}
    scores = {n: s for n, (s, _) in judged_by.items()}
    correct = {n: c for n, (_, c) in judged_by.items()}
    na, nb = models
    groups = {"all pairs": np.ones(len(pairs), dtype=bool)}
    if args.pose:
        _, difference = pair_yaw_differences(pairs, PoseTable.read(args.pose))
        for lo, hi in buckets(YAW_EDGES):
            groups[bucket_label(lo, hi)] = np.isfinite(difference) & (difference >= lo) & (difference < hi)
    draws = args.draws
    report = {}
    for label, m in groups.items():
        if m.any():
            report[label] = compare(
                {n: s[m] for n, s in scores.items()}, {n: c[m] for n, c in correct.items()}, pairs.same[m], draws
            )
    head = f"accuracy {na} / {nb} | only {na} / only {nb} right | McNemar p | TAR@FAR 1e-2 | {nb} - {na}, 95%"
    print(f"| pairs | n | {head} |")
    print("|---|---|---|---|---|---|---|")
    for label, row in report.items():
        print(line(label, row, na, nb))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
