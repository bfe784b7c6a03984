"""Distillation through the training loop: teacher targets by image path, the loss terms, and
a student that moves towards the teacher."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_student, tiny_teacher_targets
from facerec.cli import main
from facerec.config import load_config
from facerec.distill.targets import load_targets
from facerec.errors import ConfigError, DataError
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
    _, targets = tiny_teacher_targets(tmp_path / "faces", tmp_path)
    return tmp_path / "faces", targets


def student(tmp_path: Path, faces: Path, *extra: str):
    return tiny_student(tmp_path, faces, "optim.lr=0.2", "train.epochs=20", *extra)


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
    # a targets file of another tree over the same sources: its rows are found by `sources`
    # (its `names` are that tree's crops), so no teacher is needed
    crops = tmp_path / "crops"
    shutil.copytree(faces, crops)
    np.savez(
        tmp_path / "t4.npz",
        names=data["names"],
        sources=data["sources"],
        plain=-data["plain"],
        flipped=-data["flipped"],
    )
    out = write_targets(crops, tmp_path / "t5.npz", "missing-teacher.pt", "none", faces, [tmp_path / "t4.npz"])
    from_crops = load_targets(out)
    assert all(np.allclose(from_crops[str(crops / Path(k).relative_to(faces.resolve()))], -first[k]) for k in first)


def test_centered_targets_are_the_teacher_minus_its_mean(tmp_path, tree_and_teacher):
    faces, targets = tree_and_teacher
    raw = Trainer(student(tmp_path / "a", faces, f"distill.targets={targets}")).train_set.targets.double()
    trainer = Trainer(student(tmp_path / "b", faces, f"distill.targets={targets}", "distill.center=true"))
    centered = trainer.train_set.targets.double()
    expected = raw - raw.mean(0)
    expected = expected / expected.norm(dim=1, keepdim=True)
    assert np.allclose(centered.numpy(), expected.numpy(), atol=1e-6)
    assert np.allclose(centered.norm(dim=1).numpy(), 1.0, atol=1e-6)


def test_teacher_on_the_fly_matches_precomputed_targets_and_distils(tmp_path, tree_and_teacher):
    faces, targets = tree_and_teacher
    teacher = str(tmp_path / "teacher.pt")
    terms = "distill.terms={cosine: 1.0, similarity: 1.0}"
    trainer = Trainer(student(tmp_path / "run", faces, f"distill.teacher={teacher}", terms, "data.augment.flip=false"))
    assert trainer.teacher_size == 12 and trainer.net["distill"].projection.weight.shape == (12, 8)
    # un-augmented images at the teacher's own input size: the precomputed targets exactly
    images = torch.stack([trainer.train_set[i]["image"] for i in range(len(trainer.train_set))])
    table = load_targets(targets)
    expected = np.stack([table[str(Path(trainer.train_set.describe(i)).resolve())] for i in range(len(images))])
    assert np.allclose(trainer.teacher_embeddings(images).numpy(), expected, atol=1e-5)
    trainer.fit()
    rows = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert np.mean([r["loss"] for r in rows[-3:]]) < 0.5 * np.mean([r["loss"] for r in rows[:3]])
    with pytest.raises(ConfigError, match="not both"):
        Trainer(student(tmp_path / "r2", faces, f"distill.teacher={teacher}", f"distill.targets={targets}", terms))
    with pytest.raises(ConfigError, match="needs precomputed targets"):
        Trainer(student(tmp_path / "r3", faces, f"distill.teacher={teacher}", "distill.center=true", terms))


def test_morphs_labelled_by_the_teacher_join_the_training_images(tmp_path, tree_and_teacher):
    faces, targets = tree_and_teacher
    morphs = tmp_path / "morphs"
    assert main(["morphs", str(faces), str(morphs), "--count", "6"]) == 0
    morph_targets = tmp_path / "morph_targets.npz"
    args = ["distill-targets", str(morphs), "--teacher", str(tmp_path / "teacher.pt"), "--detector", "none"]
    assert main([*args, "--out", str(morph_targets)]) == 0
    both = load_targets([targets, morph_targets])
    assert len(both) == len(load_targets(targets)) + 6
    run = tmp_path / "run"
    cfg = student(
        run,
        faces,
        f"data.extra_roots=[{morphs}]",
        "head.name=none",
        "head.weight=1.0",
        f"distill.targets=[{targets}, {morph_targets}]",
        "distill.terms={cosine: 1.0}",
    )
    trainer = Trainer(cfg)
    assert len(trainer.train_set) == 24 + 6
    row = trainer.train_set.describe(24)
    assert np.allclose(trainer.train_set.targets[24].numpy(), both[str(Path(row).resolve())])
    trainer.fit()
    rows = [r for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert np.mean([r["loss"] for r in rows[-3:]]) < 0.5 * np.mean([r["loss"] for r in rows[:3]])
    # a list with a missing file names it
    with pytest.raises(DataError, match=r"nowhere\.npz"):
        load_targets([targets, tmp_path / "nowhere.npz"])


def test_identity_balanced_batches_distil_people_with_one_image(tmp_path, tree_and_teacher):
    faces, targets = tree_and_teacher
    for i in (1, 2, 3):  # p0 keeps one image: its batch slots are two augmented views of it
        (faces / "p0" / f"{i}.png").unlink()
    pk = ["data.sampler=pk", "data.images_per_identity_in_batch=2", "data.augment={flip: true}"]
    terms = "distill.terms={cosine: 1.0, similarity: 1.0, evaluation: 1.0}"
    cfg = student(tmp_path / "run", faces, f"distill.targets={targets}", *pk, terms, "train.epochs=30")
    trainer = Trainer(cfg)
    measured = trainer.parts.teacher.threshold  # not set: the teacher's, on its training targets
    assert measured is not None and -1 < measured < 1
    assert cfg.distill.threshold is None, "the run's config is left as given"
    trainer.fit()
    # config.yaml and the checkpoints record the measured value: a rerun from them trains the same
    assert load_config(str(tmp_path / "run" / "config.yaml")).distill.threshold == measured
    assert Trainer(cfg).resume(), "resuming with the config as given (threshold measured again)"
    rows = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "loss" in r]
    assert np.mean([r["loss"] for r in rows[-3:]]) < 0.5 * np.mean([r["loss"] for r in rows[:3]])
    with pytest.raises(ConfigError, match="on-the-fly teacher's threshold"):
        Trainer(student(tmp_path / "run3", faces, f"distill.teacher={tmp_path / 'teacher.pt'}", terms))
    # a triplet loss needs two different images of everyone in the batch
    with pytest.raises(DataError, match="single image"):
        Trainer(student(tmp_path / "run2", faces, *pk, "head.name=triplet", "head.options={}"))


def test_the_output_layer_is_fitted_before_the_first_step_and_not_again_on_resume(tmp_path, tree_and_teacher, caplog):
    """dlib's network (103 px, its 128-d output made 12-d) distilled from the tiny teacher with
    distill.fit_output: the fitted layer is in place before any step, and a resumed run keeps
    what it trained instead of fitting again."""
    import torch

    from facerec.distill.refit import fit_output_layer

    faces, targets = tree_and_teacher
    dlib_student = (
        "backbone.name=dlib_resnet",
        "backbone.embedding_size=12",
        "backbone.input_size=103",
        "backbone.options={}",
        f"distill.targets={targets}",
        "distill.fit_output=16",
        "optim.lr=0.0",  # no step moves a weight: the output layer is the fit's alone
        "train.epochs=1",
    )
    trainer = Trainer(student(tmp_path / "run", faces, *dlib_student))
    fresh = {k: v.clone() for k, v in trainer.net["backbone"].state_dict().items()}
    trainer.fit()
    fitted = trainer.net["backbone"].output.weight.detach().clone()
    assert not torch.equal(fitted, fresh["output.weight"])
    trainer.net["backbone"].load_state_dict(fresh)  # the same fit, done by hand
    fit_output_layer(trainer.net["backbone"], trainer.train_set, 16, seed=1)
    assert torch.allclose(trainer.net["backbone"].output.weight, fitted, atol=1e-6)

    caplog.clear()
    with caplog.at_level(logging.INFO, logger="facerec.train"):
        Trainer(student(tmp_path / "run", faces, *dlib_student, "train.epochs=2")).fit(resume=True)
    assert "resum" in caplog.text.lower() and "output layer fitted" not in caplog.text


def test_fit_output_with_sizes_that_differ_or_a_layer_that_cannot_be_fitted_is_a_config_error(
    tmp_path, tree_and_teacher
):
    faces, targets = tree_and_teacher
    with pytest.raises(ConfigError, match=r"backbone\.embedding_size \(8\) must be the teacher's \(12\)"):
        Trainer(student(tmp_path / "a", faces, f"distill.targets={targets}", "distill.fit_output=8"))
    with pytest.raises(ConfigError, match="needs a backbone whose output layer is one bias-free linear layer"):
        Trainer(
            student(
                tmp_path / "b",
                faces,
                f"distill.targets={targets}",
                "distill.fit_output=8",
                "backbone.embedding_size=12",
            )
        )
