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

from facerec.analysis.common import lfw_pair_set
from facerec.eval.report import verification_metrics
from facerec.models.card import card_for_backbone
from facerec.models.io import read_model_file, write_model_file


def average_weights(files: list[Path], out: Path) -> Path:
    """A model file whose every floating-point tensor is the mean over `files` (integer buffers
    such as BatchNorm's step counter are the first file's); its card is rebuilt for the new weights."""
    records = [read_model_file(f) for f in files]
    first = records[0]
    for f, r in zip(files[1:], records[1:], strict=True):
        if r.card.architecture != first.card.architecture or r.backbone.keys() != first.backbone.keys():
            raise SystemExit(f"{f} is not the same architecture as {files[0]}")
    state = {}
    for key, value in first.backbone.items():
        if value.is_floating_point():
            state[key] = torch.stack([r.backbone[key] for r in records]).mean(0)
        else:
            state[key] = value
    cfg = {"name": first.card.architecture, "embedding_size": first.card.embedding_size}
    cfg.update(input_size=first.card.input_size, options=first.card.options)
    card = card_for_backbone(cfg, state, name=out.parent.name, notes=f"weight average of {len(files)} models")
    return write_model_file(out, card, state)


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
        average_weights(args.models, args.out)
        print(f"wrote the average of {len(args.models)} models to {args.out}")
        return
    pairs = lfw_pair_set(args.lfw, args.folds)
    emb = ensemble_embeddings(args.evals, [image_key(p) for p in pairs.images])
    m = verification_metrics(pairs.scores(emb), pairs.same, pairs.fold)
    print(json.dumps({k: m[k] for k in ("pairs", "kfold_accuracy", "kfold_std", "auc", "eer", "tar_at_far")}, indent=1))


if __name__ == "__main__":
    main()
