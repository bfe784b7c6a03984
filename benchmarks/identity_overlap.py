"""How many faces of an evaluation set show people of a training set, estimated by a model.

Near-duplicate search finds the same photo; this finds the same person in other photos. For each
evaluation face, the highest cosine to any training face (the reference model's embeddings) is
compared with the same statistic on a control set whose people are known to be absent from the
training set (LFW fold 9 against LFW folds 0-8): evaluation faces above every control score very
likely show a training person. Pairs of a pairs CSV-like set named iiii_0 / iiii_1 (CACD-VS) are
counted when either face is above. With `--rescore NAME=EMBEDDINGS.npz` (a model's CACD-VS
embeddings from `facerec eval cacd-vs --out`), that model's ten-fold accuracy is given on all
pairs and on the pairs that touch no training person (same folds, thresholds from the other
folds' remaining pairs).

    python benchmarks/identity_overlap.py --train data/dlib_lfw_0-8_t.npz data/dlib_lfw_rest_crops.npz \\
        --eval runs/issue19/dlib/cacd/embeddings.npz --control runs/lfw_pipeline_dlib_mtcnn/embeddings.npz \\
        --control-people data/lfw_people_9
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from facerec.eval.cross_age import cacd_vs_labels
from facerec.eval.verification import kfold_accuracy


def unit_rows(files: list[str], people: set[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Flip-summed (else plain) embeddings and names of .npz files, L2-normalized; with
    `people`, only the images in those identity folders."""
    vectors, names = [], []
    for file in files:
        data = np.load(file)
        rows = data["flipped"] if "flipped" in data.files else data["plain"]
        keep = np.ones(len(rows), bool)
        if people is not None:
            keep = np.array([Path(str(n)).parent.name in people for n in data["names"]])
        vectors.append(rows[keep].astype(np.float64))
        names.extend(str(n) for n in data["names"][keep])
    v = np.concatenate(vectors)
    return v / np.linalg.norm(v, axis=1, keepdims=True), np.array(names)


def nearest(queries: np.ndarray, train: np.ndarray, chunk: int = 2048) -> np.ndarray:
    return np.concatenate([(queries[i : i + chunk] @ train.T).max(1) for i in range(0, len(queries), chunk)])


def rescore(embeddings: str, touched: dict[str, bool], folds: int = 10) -> dict[str, float]:
    """CACD-VS ten-fold accuracy (flip) on all pairs and on those whose faces show no training
    person. Pair i is iiii_0 / iiii_1; each fold is 400 consecutive pairs, the first 200 genuine."""
    data = np.load(embeddings)
    rows = {Path(str(n)).name: i for i, n in enumerate(data["names"])}
    wanted = [f"{i:04d}_{side}.jpg" for i in range(len(touched)) for side in (0, 1)]
    if len(touched) % folds or any(name not in rows for name in wanted):
        raise SystemExit(
            f"identity_overlap: {embeddings} does not hold CACD-VS pairs 0000_0/0000_1 ... in {folds} folds"
        )
    vectors = data["flipped"] / np.linalg.norm(data["flipped"], axis=1, keepdims=True)
    index = np.arange(len(touched))
    scores = np.array([vectors[rows[f"{i:04d}_0.jpg"]] @ vectors[rows[f"{i:04d}_1.jpg"]] for i in index])
    same, fold = cacd_vs_labels(len(touched), folds)
    clean = ~np.array([touched[f"{i:04d}"] for i in index])
    return {
        "all_pairs": kfold_accuracy(scores, same, fold).accuracy,
        "pairs_without_training_people": kfold_accuracy(scores[clean], same[clean], fold[clean]).accuracy,
        "pairs_kept": int(clean.sum()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", nargs="+", required=True, help="embeddings .npz of the training faces")
    p.add_argument("--eval", nargs="+", required=True, help="embeddings .npz of the evaluation faces")
    p.add_argument("--control", nargs="+", required=True, help="embeddings .npz holding the control faces")
    p.add_argument("--control-people", required=True, help="folder whose subfolder names are the control people")
    p.add_argument("--rescore", nargs="*", default=[], help="NAME=EMBEDDINGS.npz of CACD-VS to rescore")
    p.add_argument("--out", help="report .json")
    args = p.parse_args()
    train, _ = unit_rows(args.train)
    if not Path(args.control_people).is_dir():
        raise SystemExit(f"identity_overlap: --control-people {args.control_people} is not a folder")
    control, _ = unit_rows(args.control, {d.name for d in Path(args.control_people).iterdir()})
    if len(control) == 0:
        raise SystemExit("identity_overlap: no control face is in a --control-people folder (names differ?)")
    faces, names = unit_rows(args.eval)
    control_best, eval_best = nearest(control, train), nearest(faces, train)
    report: dict = {"train_faces": len(train), "control_faces": len(control), "eval_faces": len(faces), "levels": []}
    for q in (0.99, 0.999, 1.0):
        t = float(np.quantile(control_best, q))
        above = eval_best > t
        report["levels"].append(
            {
                "control_quantile": q,
                "threshold": t,
                "control_above": float((control_best > t).mean()),
                "eval_above": float(above.mean()),
                "eval_faces_above": int(above.sum()),
            }
        )
    t = float(control_best.max())
    pairs: dict[str, bool] = {}
    for name, hit in zip(names, eval_best > t, strict=True):
        match = re.match(r"(\d+)_[01]\.", Path(name).name)
        if match:
            pairs[match.group(1)] = pairs.get(match.group(1), False) or bool(hit)
    if pairs:
        report["pairs"] = len(pairs)
        report["pairs_touching_training_people"] = sum(pairs.values())
        report["rescored"] = {spec.split("=", 1)[0]: rescore(spec.split("=", 1)[1], pairs) for spec in args.rescore}
    print(json.dumps(report, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
