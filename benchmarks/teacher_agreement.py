"""How closely a distilled student follows its teacher: the cosine between the student's
embedding of each image and the teacher's (centered like the training run's targets when the
config says `distill.center`), on the run's training identities, on its held-out ones, and
on the images of its `data.extra_roots` (e.g. morphs), each on its own.

    python benchmarks/teacher_agreement.py runs/default_model_stage3

The run folder holds `config.yaml` (the resolved training config: data, seed, targets) and
`model.pt`; another model can be scored on the same split with `--model`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from facerec.config import load_config
from facerec.data import JoinedDataset, build_datasets
from facerec.distill.targets import centered, load_targets, targets_of
from facerec.errors import FacerecError
from facerec.pipeline import RecognitionPipeline


def agreement(run: Path, model_file: Path) -> dict[str, dict[str, float]]:
    cfg = load_config(str(run / "config.yaml"))
    if not cfg.distill.targets:
        raise SystemExit(f"{run}/config.yaml names no distillation targets")
    train, val = build_datasets(cfg.data, cfg.backbone.input_size, cfg.train.seed)
    table = load_targets(cfg.distill.targets, flip=cfg.distill.flip)
    student_pipeline = RecognitionPipeline.load(model_file, detector="none", flip=cfg.distill.flip, batch_size=128)
    teacher_train = targets_of(train, table)
    # without centring, the targets are the teacher's unit embeddings as they are
    center = teacher_train.mean(0) if cfg.distill.center else np.zeros(teacher_train.shape[1])
    report = {}
    # a joined training set: the root's training identities first, then the extra trees
    parts = train.parts if isinstance(train, JoinedDataset) else [train]
    named = [("training", parts[0])] + [(f"extra_{k}", p) for k, p in enumerate(parts[1:], 1)] + [("held_out", val)]
    for name, part in named:
        if part is None:
            continue
        teacher = centered(targets_of(part, table), center)
        student = student_pipeline.embed_dataset(part)  # unit rows
        cos = np.sum(student * teacher, axis=1)
        report[name] = {"images": len(cos), "mean": float(cos.mean()), "std": float(cos.std())}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="training run folder (config.yaml, model.pt)")
    parser.add_argument("--model", type=Path, help="model file to score instead of RUN/model.pt")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        report = agreement(args.run, args.model or args.run / "model.pt")
    except FacerecError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
