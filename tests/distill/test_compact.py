"""Compact copies of training trees and their teacher targets under relative names."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facerec.distill.compact import TARGETS_FILE, compact_tree
from facerec.distill.targets import load_targets
from facerec.errors import DataError


def _tree(root: Path, people: int = 2, images: int = 2) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for p in range(people):
        for i in range(images):
            path = root / f"person{p}" / f"person{p}_{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            # smooth pictures: a gradient per image, so WebP keeps them close
            ramp = np.linspace(0, 255, 112)[None, :, None] * rng.uniform(0.3, 1.0, size=(1, 1, 3))
            Image.fromarray(np.broadcast_to(ramp, (112, 112, 3)).astype(np.uint8)).save(path, quality=95)
            paths.append(path)
    return paths


def _targets(paths: list[Path], out: Path, mirrored: bool = True) -> np.ndarray:
    vectors = np.random.default_rng(1).normal(size=(len(paths), 8)).astype(np.float32)
    names = np.array([str(p.resolve()) for p in paths])
    flipped = -vectors if mirrored else vectors  # without a mirror pass the teacher repeats plain
    np.savez(out, plain=vectors, flipped=flipped, detected=np.ones(len(paths), bool), names=names)
    return vectors


def test_copies_are_small_webp_at_the_size_and_targets_follow_the_folder(tmp_path: Path) -> None:
    paths = _tree(tmp_path / "src")
    vectors = _targets(paths, tmp_path / "t.npz")
    copy = compact_tree(tmp_path / "src", tmp_path / "dst", size=64, targets=[tmp_path / "t.npz"], progress=False)
    assert (copy.images, copy.identities) == (4, 2)
    first = tmp_path / "dst" / "person0" / "person0_0.webp"
    with Image.open(first) as img:
        assert img.format == "WEBP" and img.size == (64, 64)
    # the copy is the resized original, within WebP's error
    original = np.asarray(Image.open(paths[0]).convert("RGB").resize((64, 64), Image.BILINEAR), dtype=float)
    assert np.abs(np.asarray(Image.open(first).convert("RGB"), dtype=float) - original).mean() < 4
    stored = np.load(copy.targets)
    assert not any(Path(n).is_absolute() for n in stored["names"])
    # moved elsewhere (another machine), the targets still name the copies where they now are
    moved = tmp_path / "elsewhere"
    shutil.move(tmp_path / "dst", moved)
    table = load_targets(moved / TARGETS_FILE, flip=False)
    assert sorted(table) == sorted(str(p.resolve()) for p in moved.rglob("*.webp"))
    # half precision: 3 significant digits
    np.testing.assert_allclose(table[str((moved / "person1" / "person1_1.webp").resolve())], vectors[3], rtol=1e-3)
    flipped = load_targets(moved / TARGETS_FILE)[str((moved / "person0" / "person0_0.webp").resolve())]
    np.testing.assert_allclose(flipped, -vectors[0], rtol=1e-3)


def test_unlabelled_faces_become_one_identity_each(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in _tree(tmp_path / "src"):
        shutil.copy(path, flat / f"{path.stem}.jpg.chip.jpg")  # UTKFace's double suffix
    copy = compact_tree(flat, tmp_path / "dst", one_identity_per_image=True, progress=False)
    assert (copy.images, copy.identities, copy.targets) == (4, 4, None)
    assert (tmp_path / "dst" / "person0_1" / "person0_1.webp").is_file()


def test_an_image_without_a_teacher_embedding_is_named(tmp_path: Path) -> None:
    paths = _tree(tmp_path / "src")
    _targets(paths[:-1], tmp_path / "t.npz")
    with pytest.raises(DataError, match=r"1 images of .* have no teacher embedding"):
        compact_tree(tmp_path / "src", tmp_path / "dst", targets=[tmp_path / "t.npz"], progress=False)
    assert not (tmp_path / "dst").exists()  # checked before anything is written


def test_two_images_that_would_share_a_copy_are_an_error(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    path = _tree(tmp_path / "src", people=1, images=1)[0]
    shutil.copy(path, flat / "a.jpg")
    shutil.copy(path, flat / "a.png")
    with pytest.raises(DataError, match="would both be copied to"):
        compact_tree(flat, tmp_path / "dst", one_identity_per_image=True, progress=False)


def test_targets_without_a_mirror_pass_are_stored_once(tmp_path: Path) -> None:
    paths = _tree(tmp_path / "src")
    vectors = _targets(paths, tmp_path / "t.npz", mirrored=False)
    copy = compact_tree(tmp_path / "src", tmp_path / "dst", targets=[tmp_path / "t.npz"], progress=False)
    assert np.load(copy.targets).files == ["plain", "detected", "names", "names_relative_to_file"]
    key = str((tmp_path / "dst" / "person0" / "person0_1.webp").resolve())
    for flip in (True, False):  # training asks for the flip-summed array: the one array stands for it
        np.testing.assert_allclose(load_targets(copy.targets, flip=flip)[key], vectors[1], rtol=1e-3)


def test_relative_names_of_other_files_stay_relative_to_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    """Only a compact copy's targets name images relative to their own folder; a targets or eval
    file written with relative paths (e.g. for `distill-targets --reuse`) keeps meaning the
    working directory, as before."""
    paths = _tree(tmp_path / "src")
    monkeypatch.chdir(tmp_path)
    vectors = np.ones((len(paths), 4), np.float32)
    names = np.array([str(p.relative_to(tmp_path)) for p in paths])  # src/person0/person0_0.jpg ...
    (tmp_path / "runs").mkdir()
    np.savez(tmp_path / "runs" / "t.npz", plain=vectors, names=names)
    assert sorted(load_targets(tmp_path / "runs" / "t.npz")) == sorted(str(p.resolve()) for p in paths)


def test_bad_targets_and_options_are_clear_errors(tmp_path: Path) -> None:
    _tree(tmp_path / "src")
    with pytest.raises(DataError, match="teacher targets not found"):
        compact_tree(tmp_path / "src", tmp_path / "a", targets=[tmp_path / "missing.npz"], progress=False)
    np.savez(tmp_path / "odd.npz", vectors=np.zeros((1, 4)))
    with pytest.raises(DataError, match="not a teacher-targets file"):
        compact_tree(tmp_path / "src", tmp_path / "b", targets=[tmp_path / "odd.npz"], progress=False)
    np.savez(tmp_path / "empty.npz", plain=np.zeros((0, 4)), names=np.array([], dtype=str))
    with pytest.raises(DataError, match=r"4 images of .* have no teacher embedding"):
        compact_tree(tmp_path / "src", tmp_path / "c", targets=[tmp_path / "empty.npz"], progress=False)
    with pytest.raises(DataError, match="size of at least 1 px"):
        compact_tree(tmp_path / "src", tmp_path / "d", size=0, progress=False)
    compact_tree(tmp_path / "src", tmp_path / "e", progress=False)
    with pytest.raises(DataError, match="exists and is not empty"):
        compact_tree(tmp_path / "src", tmp_path / "e", progress=False)


def _blob_image(path: Path, center: tuple[float, float], size: int = 112) -> None:
    """A dark image with one bright Gaussian spot at `center` (x, y), in pixel-index coordinates."""
    y, x = np.mgrid[0:size, 0:size]
    spot = 255 * np.exp(-((x - center[0]) ** 2 + (y - center[1]) ** 2) / (2 * 3.0**2))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.repeat(spot[..., None], 3, axis=2).astype(np.uint8)).save(path)


def _centroid(path: Path) -> np.ndarray:
    image = np.asarray(Image.open(path).convert("L"), dtype=float)
    image = np.where(image > 0.2 * image.max(), image, 0)
    y, x = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
    return np.array([(x * image).sum(), (y * image).sum()]) / image.sum()


def test_poses_follow_the_copies_with_landmarks_where_the_resized_pixels_put_them(tmp_path: Path) -> None:
    from facerec.align.pose import estimate_pose
    from facerec.align.pose_files import POSE_HEADER, PoseRow, PoseTable, pose_line
    from facerec.config import Pose3DConfig
    from facerec.data.pose_augment import pose_augmenter

    template = np.array([[38.3, 51.7], [73.5, 51.5], [56.0, 71.7], [41.5, 92.4], [70.7, 92.2]])
    rows = {}
    for p, shift in enumerate((0.0, 7.3, -5.6)):
        landmarks = template + np.array([shift, 0.5 * shift])
        rel = f"person{p}/person{p}_0.png"
        _blob_image(tmp_path / "src" / rel, tuple(landmarks[2]))  # a spot on the nose tip
        rows[rel] = PoseRow(estimate_pose(landmarks), landmarks)
    _blob_image(tmp_path / "src" / "person3" / "person3_0.png", (56.0, 71.7))  # no pose known
    table = tmp_path / "src" / "pose.tsv"
    table.write_text(POSE_HEADER + "\n" + "".join(pose_line(rel, row) for rel, row in rows.items()))

    copy = compact_tree(tmp_path / "src", tmp_path / "dst", size=64, quality=100, poses=[table], progress=False)
    assert copy.poses == tmp_path / "dst" / "pose.tsv" and copy.without_pose == 1
    copied = PoseTable.read(copy.poses)
    assert sorted(copied.rows) == ["person0/person0_0.webp", "person1/person1_0.webp", "person2/person2_0.webp"]
    for rel, row in rows.items():
        image = tmp_path / "dst" / Path(rel).with_suffix(".webp")
        got = copied.get(image)
        assert got.pose.yaw == pytest.approx(row.pose.yaw, abs=0.01)  # the face's angles stay
        # the nose tip's landmark lands where the resize put the spot drawn on it
        np.testing.assert_allclose(got.landmarks[2], _centroid(image), atol=0.15)
        np.testing.assert_allclose(got.landmarks, (row.landmarks + 0.5) * 64 / 112 - 0.5, atol=0.006)
    # the pose augmentation finds the copy's pose file by itself
    images = sorted(str(p) for p in (tmp_path / "dst").rglob("*.webp"))
    augment = pose_augmenter(Pose3DConfig(probability=0.4), images, np.arange(4))
    assert [r is not None for r in augment.rows] == [True, True, True, False]


def test_the_compact_command_writes_the_poses(tmp_path: Path, capsys) -> None:
    from facerec.align.pose_files import POSE_HEADER
    from facerec.cli import main

    _tree(tmp_path / "src")
    table = tmp_path / "poses.tsv"
    line = "\t".join(["person0/person0_0.jpg", "10", "0", "0"] + ["50"] * 10)
    table.write_text(POSE_HEADER + "\n" + line + "\n")
    assert main(["compact", str(tmp_path / "src"), str(tmp_path / "dst"), "--poses", str(table)]) == 0
    assert "3 images without one" in capsys.readouterr().out
    assert main(["compact", str(tmp_path / "src"), str(tmp_path / "dst2"), "--poses", str(tmp_path / "no.tsv")]) == 2
    assert "pose file not found" in capsys.readouterr().err
