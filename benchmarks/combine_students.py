"""Two ways to combine students that share an architecture, scored on LFW pairs:

- weight averaging ("model soup"): one network whose weights are the mean of the students'
  (sensible when they were fine-tuned from one parent, as stage 3 and the morph stage were from
  stage 2), written as a model file for `facerec eval lfw --model`;
- an embedding ensemble: each student's flip-averaged embeddings, unit-normalized and
  concatenated, from the `embeddings.npz` that `facerec eval lfw` wrote for each.

    python benchmarks/combine_students.py average A.pt B.pt C.pt --out soup.pt
    python benchmarks/combine_students.py ensemble runs/stage2_fold9 runs/stage3_fold9 \
        --lfw ../shared/data/lfw --folds 9
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from facerec.eval.protocols import read_lfw_pairs
from facerec.eval.report import verification_metrics


def average_weights(files: list[Path]) -> dict:
    """The first file's model record with every floating-point tensor replaced by the mean
    over all files (integer buffers such as BatchNorm's step counter are kept)."""
    records = [torch.load(f, map_location="cpu", weights_only=False) for f in files]
    first = records[0]
    for f, r in zip(files[1:], records[1:], strict=True):
        if r["model"] != first["model"] or r["state_dict"].keys() != first["state_dict"].keys():
            raise SystemExit(f"{f} is not the same architecture as {files[0]}")
    state = {}
    for key, value in first["state_dict"].items():
        if value.is_floating_point():
            state[key] = torch.stack([r["state_dict"][key] for r in records]).mean(0)
        else:
            state[key] = value
    return {**first, "state_dict": state, "threshold": None}


def image_key(path: str | Path) -> str:
    """'Person/Person_0001.jpg': the same image whatever root it was read from."""
    return "/".join(Path(path).parts[-2:])


def ensemble_embeddings(eval_dirs: list[Path], keys: list[str]) -> np.ndarray:
    parts = []
    for d in eval_dirs:
        saved = np.load(d / "embeddings.npz")
        row = {image_key(n): i for i, n in enumerate(saved["names"])}
        e = saved["flipped"][[row[k] for k in keys]].astype(np.float64)
        parts.append(e / np.linalg.norm(e, axis=1, keepdims=True))
    joined = np.concatenate(parts, axis=1)
    return joined / np.linalg.norm(joined, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    avg = sub.add_parser("average", help="write the weight average of model files")
    avg.add_argument("models", nargs="+", type=Path)
    avg.add_argument("--out", type=Path, required=True)
    ens = sub.add_parser("ensemble", help="score concatenated embeddings of eval folders")
    ens.add_argument("evals", nargs="+", type=Path)
    ens.add_argument("--lfw", type=Path, default=Path("../shared/data/lfw"))
    ens.add_argument("--folds", type=int, nargs="+", default=list(range(10)))
    args = parser.parse_args()
    if args.command == "average":
        args.out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(average_weights(args.models), args.out)
        print(f"wrote the average of {len(args.models)} models to {args.out}")
        return
    pairs = read_lfw_pairs(args.lfw / "meta" / "pairs.txt", args.lfw / "images")
    pairs = pairs.select(np.isin(pairs.fold, args.folds))
    emb = ensemble_embeddings(args.evals, [image_key(p) for p in pairs.images])
    scores = (emb[pairs.left] * emb[pairs.right]).sum(1)
    m = verification_metrics(scores, pairs.same, pairs.fold)
    print(json.dumps({k: m[k] for k in ("pairs", "kfold_accuracy", "kfold_std", "auc", "eer", "tar_at_far")}, indent=1))


if __name__ == "__main__":
    main()
