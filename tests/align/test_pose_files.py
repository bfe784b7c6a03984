"""Landmarks written by `align_tree`, pose files of a tree (from landmarks.tsv or detected on the
crops, resumable), and pose lookup by image path."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from conftest import LFW, needs_lfw, needs_mtcnn
from facerec.align.pipeline import DETECTORS, Aligner, align_tree
from facerec.align.pose import estimate_pose
from facerec.align.pose_files import (
    LANDMARKS_FILE,
    POSE_FILE,
    PoseTable,
    detect_crop_landmarks,
    read_landmarks,
    read_poses,
    tree_poses,
)
from facerec.align.types import Face
from facerec.core.geometry import ARCFACE_112
from facerec.errors import DataError

# landmarks of a face in a 200x200 source image: not an exact similarity of the template
SOURCE_MARKS = np.array([[70.0, 80.0], [128.0, 84.0], [96.0, 118.0], [74.0, 150.0], [122.0, 152.0]])


class FixedDetector:
    """Finds one face with the given landmarks (or none) in any image."""

    def __init__(self, marks: np.ndarray | None, offset: float = 0.0) -> None:
        self.marks, self.offset, self.calls = marks, offset, 0

    def detect(self, image: np.ndarray) -> list[Face]:
        self.calls += 1
        if self.marks is None:
            return []
        h, w = image.shape[:2]
        return [Face(np.array([0.0, 0.0, w, h]), 0.99, self.marks + self.offset)]


def write_images(root, names, size=200):
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(root / name)


def similarity_by_least_squares(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """x' = a x - b y + tx, y' = b x + a y + ty fitted as a linear least-squares problem."""
    rows = []
    for x, y in src:
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), dst.ravel(), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


def test_align_tree_writes_the_landmarks_in_crop_coordinates(tmp_path, monkeypatch):
    monkeypatch.setitem(DETECTORS._entries, "fixed", lambda: FixedDetector(SOURCE_MARKS))
    write_images(tmp_path / "src", ["a/1.jpg", "b/2.png"])
    align_tree(tmp_path / "src", tmp_path / "dst", "fixed", workers=1, progress=False)
    marks = read_landmarks(tmp_path / "dst" / LANDMARKS_FILE)
    assert sorted(marks) == ["a/1.jpg", "b/2.png"]
    matrix = similarity_by_least_squares(SOURCE_MARKS, ARCFACE_112)
    expected = SOURCE_MARKS @ matrix[:, :2].T + matrix[:, 2]
    for value in marks.values():
        assert value == pytest.approx(expected, abs=0.01)  # two decimals in the file
    # a resumed run aligns nothing and keeps the file
    align_tree(tmp_path / "src", tmp_path / "dst", "fixed", workers=1, progress=False)
    assert read_landmarks(tmp_path / "dst" / LANDMARKS_FILE).keys() == marks.keys()


def test_tree_poses_uses_the_landmarks_file_detects_the_rest_and_resumes(tmp_path):
    tree = tmp_path / "tree"
    write_images(tree, ["p/known.jpg", "p/new.jpg", "q/none.jpg"], size=112)
    known = np.round(ARCFACE_112 + np.array([[0, 0], [0, 0], [9.0, 0], [0, 0], [0, 0]]), 2)  # nose to the right
    (tree / LANDMARKS_FILE).write_text("p/known.jpg\t" + "\t".join(f"{v:.2f}" for v in known.ravel()) + "\n")

    # the detector sees the crop padded by 22 px (0.2 x 112): its landmarks come back unpadded
    detector = FixedDetector(ARCFACE_112, offset=22.0)
    summary = tree_poses(tree, detector, progress=False)
    assert detector.calls == 2  # not on the image listed in landmarks.tsv
    rows = read_poses(tree / POSE_FILE)
    assert rows["p/known.jpg"].pose.yaw == pytest.approx(estimate_pose(known).yaw, abs=0.01)
    assert rows["p/known.jpg"].pose.yaw > 5
    assert rows["p/new.jpg"].landmarks == pytest.approx(ARCFACE_112, abs=0.01)
    assert summary["this_run"] == {"already_done": 0, "from_landmarks_file": 1, "detected": 2, "no_face": 0}
    assert (tree / "pose_summary.json").is_file() and (tree / "pose_yaw.png").is_file()

    # an interrupted run: drop one row, leave a half-written line; the rerun detects only that one
    lines = (tree / POSE_FILE).read_text().splitlines()
    kept = [line for line in lines if not line.startswith("q/none.jpg")]
    (tree / POSE_FILE).write_text("\n".join(kept) + "\nq/none.jpg\t1.5")
    nothing = FixedDetector(None)
    again = tree_poses(tree, nothing, progress=False)
    assert nothing.calls == 1 and again["this_run"]["already_done"] == 2 and again["this_run"]["no_face"] == 1
    rows = read_poses(tree / POSE_FILE)
    assert rows["q/none.jpg"].pose is None and rows["q/none.jpg"].landmarks is None
    assert "NA" in (tree / POSE_FILE).read_text()
    assert again["images"] == 3 and again["with_pose"] == 2


def test_pose_table_finds_images_by_relative_path_or_identity_and_name(tmp_path):
    tree = tmp_path / "aligned"
    write_images(tree, ["Ann/Ann_0001.png", "Bob/Bob_0001.jpg"], size=112)
    marks = ARCFACE_112.ravel()
    (tree / POSE_FILE).write_text(
        "Ann/Ann_0001.png\t12.5\t-3\t1\t" + "\t".join(map(str, marks)) + "\n" + "Bob/Bob_0001.jpg" + "\tNA" * 13 + "\n"
    )
    table = PoseTable.read(tree / POSE_FILE)
    original = tmp_path / "raw" / "Ann" / "Ann_0001.jpg"  # same person and file, other folder and extension
    yaws = table.yaws([tree / "Ann" / "Ann_0001.png", original, tree / "Bob" / "Bob_0001.jpg", tmp_path / "x.jpg"])
    assert yaws[:2] == pytest.approx([12.5, 12.5])
    assert np.isnan(yaws[2:]).all()
    # a flat tree elsewhere: by the file name alone, when no other image has that name
    assert table.yaws([tmp_path / "flat" / "Ann_0001.jpg"]) == pytest.approx([12.5])
    (tree / POSE_FILE).write_text((tree / POSE_FILE).read_text() + "Cy/Ann_0001.png\t1\t1\t1" + "\t0" * 10 + "\n")
    assert np.isnan(PoseTable.read(tree / POSE_FILE).yaws([tmp_path / "flat" / "Ann_0001.jpg"])).all()


def test_bad_pose_file_gives_a_data_error(tmp_path):
    (tmp_path / POSE_FILE).write_text("a.jpg\tx\t1\t2" + "\t0" * 10 + "\nb.jpg\t1\n")
    with pytest.raises(DataError, match="numbers"):
        read_poses(tmp_path / POSE_FILE)
    with pytest.raises(DataError, match="not found"):
        read_poses(tmp_path / "missing.tsv")


@needs_lfw
@needs_mtcnn
def test_landmarks_detected_on_a_real_crop_fall_on_the_template():
    from facerec.align.mtcnn import MTCNN

    detector = MTCNN(min_face_size=40)
    image = np.asarray(Image.open(LFW / "images" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg").convert("RGB"))
    crop = Aligner(detector).align(image).crop
    marks = detect_crop_landmarks(detector, crop)
    assert marks is not None
    # the crop was made by moving MTCNN's landmarks onto the template: found again within a few px
    assert np.abs(marks - ARCFACE_112).mean() < 4.0
