"""What removing the directions between demographic groups costs and buys (`facerec debias`),
for 0, 1, ... k directions: verification accuracy on LFW fold 9 and CACD-VS, and the spread of
the groups' false-match rates on held-out labelled faces at one global threshold.

Each model is the real folded network (written by the same code as `facerec debias`), embedded
through the pipeline on pre-aligned copies (with flip, as the commands do); LFW fold 9 from an
aligned copy of its images (`facerec align`, person/<name>.jpg), its pairs from pairs.txt.

    python benchmarks/debias_tradeoff.py --model fast --fit data/utk_fit \\
        --groups runs/issue19/utkface_labels/race.csv --test data/utk_bias \\
        --lfw ../shared/data/lfw --lfw-aligned runs/lfw_fold9_mtcnn112 --cacd data/cacd_vs_mtcnn112 \\
        --out runs/issue19/debias/race
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from facerec.analysis import bias
from facerec.analysis.common import ImageSet, embed, folder_images, lfw_pair_set
from facerec.analysis.studies import DEFAULT_CACHE, Source, debias_study, group_table
from facerec.eval.cross_age import CACD_PAIRS, cacd_vs_labels
from facerec.eval.verification import kfold_accuracy


def lfw9_accuracy(model: str, lfw: Path, aligned: Path) -> float:
    pairs = lfw_pair_set(lfw, [9])
    crops = [aligned / Path(p).parent.name / Path(p).name for p in pairs.images]
    emb = embed_paths(model, crops)
    scores = (emb[pairs.left] * emb[pairs.right]).sum(1)
    return kfold_accuracy(scores, pairs.same, pairs.fold).accuracy


def cacd_accuracy(model: str, root: Path) -> float:
    crops = [root / f"{i:04d}_{side}.jpg" for i in range(CACD_PAIRS) for side in (0, 1)]
    emb = embed_paths(model, crops)
    same, fold = cacd_vs_labels()
    return kfold_accuracy((emb[0::2] * emb[1::2]).sum(1), same, fold).accuracy


def embed_paths(model: str, paths: list[Path]) -> np.ndarray:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        raise SystemExit(f"aligned image not found: {missing[0]}")
    return embed(ImageSet(paths, np.array([p.parent.name for p in paths])), model, "none", DEFAULT_CACHE)


def group_fmrs(model: str, test: Path, groups: str, target_fmr: float) -> dict[str, float]:
    """Each group's false-match rate among its own members at the threshold that gives
    `target_fmr` over all impostor pairs of the labelled test faces (`facerec analyze bias`'s
    pair counts, without its bootstrap)."""
    images = folder_images(test)
    labels = bias.groups_of(images.paths, images.identities, group_table(groups, None))
    labelled = labels != ""
    emb, identities = embed(images, model, "none", DEFAULT_CACHE)[labelled], images.identities[labelled]
    threshold = bias.impostor_threshold(emb, np.unique(identities, return_inverse=True)[1], target_fmr)
    counts = bias.count_pairs(emb, identities, labels[labelled], threshold)
    within = {}
    for g, name in enumerate(counts.group_names):
        members = counts.subject_group == g
        within[name] = float(counts.false_match[members, g].sum() / counts.impostor[members, g].sum())
    return within


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="fast")
    parser.add_argument("--fit", type=Path, required=True, help="labelled faces the directions are fitted on")
    parser.add_argument("--groups", required=True, help="CSV key,group of the --fit and --test faces")
    parser.add_argument("--test", type=Path, required=True, help="held-out labelled faces for the FMRs")
    parser.add_argument("--lfw", type=Path, required=True)
    parser.add_argument("--lfw-aligned", type=Path, required=True)
    parser.add_argument("--cacd", type=Path, required=True)
    parser.add_argument("--directions", type=int, nargs="+", help="how many to remove (default 0 to groups - 1)")
    parser.add_argument("--target-fmr", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, required=True, help="folder for the models and results.json")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    source = Source(images=args.fit)
    groups_found = len(set(group_table(args.groups, None).values()) - {""})
    rows = []
    for k in args.directions or range(groups_found):
        model = args.model
        if k:
            model = str(args.out / f"directions_{k}.pt")
            debias_study(source, args.model, "none", args.groups, Path(model), components=k)
        fmrs = group_fmrs(model, args.test, args.groups, args.target_fmr)
        row = {
            "directions": k,
            "lfw9": lfw9_accuracy(model, args.lfw, args.lfw_aligned),
            "cacd_vs": cacd_accuracy(model, args.cacd),
            "fmr": fmrs,
            "max_over_min": max(fmrs.values()) / max(min(fmrs.values()), 1e-12),
        }
        rows.append(row)
        print(json.dumps(row))
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    names = sorted(rows[0]["fmr"])
    print("\n| directions removed | LFW fold 9 | CACD-VS | " + " | ".join(f"FMR {n}" for n in names) + " | max/min |")
    print("|---" * (4 + len(names)) + "|")
    for r in rows:
        fmr = " | ".join(f"{r['fmr'][n]:.2e}" for n in names)
        accuracy = f"{100 * r['lfw9']:.2f}% | {100 * r['cacd_vs']:.2f}%"
        print(f"| {r['directions']} | {accuracy} | {fmr} | {r['max_over_min']:.2f}x |")


if __name__ == "__main__":
    main()
