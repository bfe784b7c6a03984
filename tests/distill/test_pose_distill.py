"""Pose-invariant distillation (issue 19, item 4): with the 3-D pose augmentation on, the student
sees the turned face while its target stays the teacher's embedding of the image as stored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_student, tiny_teacher_targets
from facerec.core.geometry import ARCFACE_112
from facerec.data.transforms import resize, to_tensor
from facerec.distill.targets import load_targets
from facerec.errors import ConfigError
from facerec.train import Trainer
from facerec.train.logger import read_metrics

SIDE = 32


@pytest.fixture
def posed_tree_and_teacher(tmp_path):
    """6 people x 4 smooth random faces (32 px) with a pose.tsv (template landmarks, yaw 0), a
    tiny teacher and its precomputed targets."""
    rng = np.random.default_rng(0)
    faces = tmp_path / "faces"
    marks = "\t".join(f"{v:.3f}" for v in (ARCFACE_112 * SIDE / 112).ravel())
    lines = []
    for person in range(6):
        (faces / f"p{person}").mkdir(parents=True)
        for i in range(4):
            coarse = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
            Image.fromarray(coarse).resize((SIDE, SIDE), Image.BICUBIC).save(faces / f"p{person}" / f"{i}.png")
            lines.append(f"p{person}/{i}.png\t0\t0\t0\t{marks}")
    (faces / "pose.tsv").write_text("\n".join(lines) + "\n")
    teacher, targets = tiny_teacher_targets(faces, tmp_path)
    return faces, targets, teacher


def student(out: Path, faces: Path, *extra: str):
    return tiny_student(
        out,
        faces,
        "data.augment.flip=false",  # the pose augmentation is the only change to the images
        "data.augment.pose3d={probability: 0.45, yaw: [20, 40], entropy_below: 10.0}",
        "train.epochs=2",
        *extra,
    )


def test_the_turned_face_keeps_the_original_images_teacher_target(tmp_path, posed_tree_and_teacher):
    faces, targets, _ = posed_tree_and_teacher
    trainer = Trainer(student(tmp_path / "run", faces, f"distill.targets={targets}"))
    images = trainer.train_set
    assert images.image_augment is not None
    table = load_targets(targets)
    turned = 0
    for index in range(len(images)):
        original = table[str(Path(images.describe(index)).resolve())]
        plain = to_tensor(resize(images.load(index), 16))
        for seed in range(100 * index, 100 * index + 8):
            sample = images[(index, seed)]
            image, target = sample["image"], sample["target"]
            # the target row is the teacher's embedding of the stored image, turned or not
            assert torch.equal(target, images.targets[index])
            np.testing.assert_allclose(target.numpy(), original, atol=1e-6)
            # the sample's first draw decides whether it is turned (probability 0.45)
            chosen = np.random.default_rng(seed).random() < 0.45
            assert torch.equal(image, plain) != chosen
            turned += chosen
    assert 0.3 * 24 * 8 < turned < 0.6 * 24 * 8
    trainer.fit()  # and the loop trains on them
    rows = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert rows and all(np.isfinite(r["loss"]) for r in rows)


def test_an_on_the_fly_teacher_is_refused_with_the_pose_augmentation(tmp_path, posed_tree_and_teacher):
    faces, _, teacher = posed_tree_and_teacher
    with pytest.raises(ConfigError, match=r"distill\.targets"):
        Trainer(student(tmp_path / "run", faces, f"distill.teacher={teacher}"))


def test_turned_faces_reach_the_device_augmentation_and_preloading_them_is_refused(tmp_path, posed_tree_and_teacher):
    """With the augmentation on the device the workers still turn the faces (on the stored image)
    and send them as uint8 beside their draws; a preloaded copy at the input size cannot be turned."""
    faces, targets, _ = posed_tree_and_teacher
    loader = Trainer(student(tmp_path / "a", faces, f"distill.targets={targets}")).train_set
    device = Trainer(student(tmp_path / "b", faces, f"distill.targets={targets}", "data.augment_on=device")).train_set
    for item in [(i, 500 + i) for i in range(len(loader))]:
        on_device = device[item]
        assert on_device["image"].dtype == torch.uint8 and torch.equal(on_device["target"], loader[item]["target"])
        # flips are off: the device path's image is the loader path's turned face, before normalization
        assert torch.equal(on_device["image"].float() / 127.5 - 1, loader[item]["image"])
    with pytest.raises(ConfigError, match=r"data\.preload keeps the images at the input size"):
        Trainer(student(tmp_path / "c", faces, f"distill.targets={targets}", "data.preload=true"))
