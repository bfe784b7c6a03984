"""Distillation through the training loop: teacher targets by image path, the loss terms, and
a student that moves towards the teacher."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facerec.cli import main
from facerec.config import ModelConfig, load_config
from facerec.errors import DataError
from facerec.models import build_backbone
from facerec.models.io import export_model
from facerec.train import Trainer
from facerec.train.logger import read_metrics


@pytest.fixture
def tree_and_teacher(tmp_path):
    rng = np.random.default_rng(0)
    for person in range(6):
        folder = tmp_path / "faces" / f"p{person}"
        folder.mkdir(parents=True)
        base = rng.integers(0, 255, (24, 24, 3))
        for i in range(4):
            image = np.clip(base + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
            Image.fromarray(image).save(folder / f"{i}.png")
    cfg = ModelConfig("lowres_irse8", 12, {"widths": [8, 8, 8, 8], "se": False})
    teacher = export_model(tmp_path / "teacher.pt", build_backbone(cfg.name, 12, 16, cfg.options), asdict(cfg), 16)
    targets = tmp_path / "targets.npz"
    args = ["distill-targets", str(tmp_path / "faces"), "--teacher", str(teacher), "--detector", "none"]
    assert main([*args, "--out", str(targets)]) == 0
    return tmp_path / "faces", targets


def student(tmp_path: Path, faces: Path, *extra: str):
    return load_config(
        None,
        [
            "data.source=folder",
            f"data.root={faces}",
            "data.image_size=16",
            "data.batch_size=8",
            "model.name=lowres_irse8",
            "model.embedding_size=8",
            "model.options={widths: [4, 8, 8, 8]}",
            "head.name=arcface",
            "head.weight=0.0",
            "optim.lr=0.2",
            "train.epochs=20",
            "train.log_every=1",
            "train.progress=false",
            f"train.output_dir={tmp_path}",
            *extra,
        ],
    )


def test_student_distils_towards_the_teacher(tmp_path, tree_and_teacher):
    faces, targets = tree_and_teacher
    data = np.load(targets)
    assert len(data["names"]) == 24 and data["flipped"].shape == (24, 12)
    terms = "distill.terms={cosine: 1.0, similarity: 1.0}"
    trainer = Trainer(student(tmp_path / "run", faces, f"distill.targets={targets}", terms))
    assert trainer.net["distill"].projection.weight.shape == (12, 8)  # 8-d student, 12-d teacher
    trainer.fit()
    rows = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    first, last = np.mean([r["loss"] for r in rows[:3]]), np.mean([r["loss"] for r in rows[-3:]])
    assert last < 0.5 * first  # head weight 0: the loss is the distillation alone


def test_missing_targets_are_named(tmp_path, tree_and_teacher):
    faces, targets = tree_and_teacher
    extra = tmp_path / "faces" / "p0" / "new.png"
    Image.fromarray(np.zeros((24, 24, 3), dtype=np.uint8)).save(extra)
    with pytest.raises(DataError, match="1 of 25 training images have no teacher embedding"):
        Trainer(student(tmp_path / "run", faces, f"distill.targets={targets}"))
    with pytest.raises(DataError, match="teacher targets not found"):
        Trainer(student(tmp_path / "run2", faces, "distill.targets=nowhere.npz"))


def test_unlabelled_folder_distils_with_no_head(tmp_path, tree_and_teacher):
    faces, targets = tree_and_teacher
    cfg = student(
        tmp_path / "run",
        faces,
        "data.source=unlabelled",
        "head.name=none",
        "head.weight=1.0",
        f"distill.targets={targets}",
        "distill.terms={cosine: 1.0}",
    )
    trainer = Trainer(cfg)
    assert len(trainer.train_set) == 24 and trainer.train_set.num_classes == 1
    trainer.fit()
    rows = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert np.mean([r["loss"] for r in rows[-3:]]) < 0.5 * np.mean([r["loss"] for r in rows[:3]])
    with pytest.raises(Exception, match="trains nothing"):
        Trainer(student(tmp_path / "run2", faces, "data.source=unlabelled", "head.name=none"))


def test_targets_from_source_images_and_reused_rows(tmp_path, tree_and_teacher):
    faces, targets = tree_and_teacher
    from facerec.distill.targets import load_targets, write_targets

    first = load_targets(targets)
    teacher = str(tmp_path / "teacher.pt")
    # the same tree as "originals": same relative paths, embedded from there
    out = write_targets(faces, tmp_path / "t2.npz", teacher, "none", source_root=faces)
    again = load_targets(out)
    assert all(np.allclose(again[k], first[k], atol=1e-6) for k in first)
    # rows of a previous file are taken by source path instead of embedding again
    fake = tmp_path / "fake.npz"
    data = np.load(out)
    np.savez(fake, names=data["sources"], plain=-data["plain"], flipped=-data["flipped"])
    reused = load_targets(write_targets(faces, tmp_path / "t3.npz", teacher, "none", faces, [fake]))
    assert all(np.allclose(reused[k], -first[k], atol=1e-6) for k in first)
