"""Readers of LFW pairs files, pairs CSVs and insightface .bin files, on files written here."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facerec.data.synthetic import SyntheticFaces
from facerec.errors import DataError
from facerec.eval.pairs import read_bin, read_lfw_pairs, read_pairs_csv, write_bin


@pytest.fixture(scope="module")
def lfw_like(tmp_path_factory):
    """An LFW-style tree: images/<Name>/<Name>_NNNN.jpg for 4 people x 3 images."""
    root = tmp_path_factory.mktemp("lfw")
    faces = SyntheticFaces(4, 3, size=32)
    for i in range(len(faces)):
        name = f"Person_{faces.label(i)}"
        folder = root / "images" / name
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(faces.render(i)).save(folder / f"{name}_{i % 3 + 1:04d}.jpg")
    return root


def test_lfw_view2_pairs(lfw_like, tmp_path):
    lines = ["2\t1", "Person_0\t1\t2", "Person_0\t1\tPerson_1\t3", "Person_2\t2\t3", "Person_3\t1\tPerson_1\t1"]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    pairs = read_lfw_pairs(tmp_path / "pairs.txt", lfw_like / "images")
    assert pairs.same.tolist() == [True, False, True, False]
    assert pairs.fold.tolist() == [0, 0, 1, 1]
    names = [pairs.names[i] for i in pairs.left]
    assert names[0].endswith("Person_0/Person_0_0001.jpg") and names[3].endswith("Person_3_0001.jpg")
    assert pairs.names[pairs.right[1]].endswith("Person_1/Person_1_0003.jpg")
    assert len(pairs.images) == 7  # Person_0_0001 is shared by two pairs


def test_lfw_view1_pairs_one_fold(lfw_like, tmp_path):
    (tmp_path / "dev.txt").write_text("1\nPerson_0\t1\t3\nPerson_2\t1\tPerson_3\t2\n")
    pairs = read_lfw_pairs(tmp_path / "dev.txt", lfw_like / "images")
    assert pairs.same.tolist() == [True, False] and pairs.fold.tolist() == [0, 0]


def test_lfw_pairs_errors(lfw_like, tmp_path):
    (tmp_path / "short.txt").write_text("1 2\nPerson_0\t1\t2\n")
    with pytest.raises(DataError, match="header promises 4 pairs, found 1"):
        read_lfw_pairs(tmp_path / "short.txt", lfw_like / "images")
    (tmp_path / "missing.txt").write_text("1\nPerson_0\t1\t9\nPerson_0\t1\tPerson_1\t1\n")
    with pytest.raises(DataError, match=r"Person_0_0009\.jpg"):
        read_lfw_pairs(tmp_path / "missing.txt", lfw_like / "images")


def test_pairs_csv(lfw_like, tmp_path):
    rel = "images/Person_0/Person_0_0001.jpg"
    (tmp_path / "p.csv").write_text(
        f"path1,path2,label\n{rel},images/Person_0/Person_0_0002.jpg,1\n{rel},images/Person_1/Person_1_0001.jpg,0\n"
    )
    pairs = read_pairs_csv(tmp_path / "p.csv", lfw_like)
    assert pairs.same.tolist() == [True, False] and len(pairs.images) == 3
    (tmp_path / "bad.csv").write_text(f"{rel},{rel},yes\n")
    with pytest.raises(DataError, match=r"bad.csv:1: expected path1,path2,label"):
        read_pairs_csv(tmp_path / "bad.csv", lfw_like)


def test_bin_round_trip(tmp_path):
    faces = SyntheticFaces(2, 3, size=32)
    images = [faces.render(i) for i in range(6)]
    write_bin(tmp_path / "t.bin", images, [True, False, True])
    pairs = read_bin(tmp_path / "t.bin", folds=3)
    assert pairs.same.tolist() == [True, False, True]
    assert pairs.left.tolist() == [0, 2, 4] and pairs.right.tolist() == [1, 3, 5]
    assert pairs.fold.tolist() == [0, 1, 2]
    assert np.abs(pairs.images[3].astype(int) - images[3]).mean() < 4  # JPEG at quality 95
    (tmp_path / "x.bin").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"not an insightface \.bin"):
        read_bin(tmp_path / "x.bin")


def test_select_keeps_only_used_images(lfw_like, tmp_path):
    lines = ["2\t1", "Person_0\t1\t2", "Person_0\t1\tPerson_1\t3", "Person_2\t2\t3", "Person_3\t1\tPerson_1\t1"]
    (tmp_path / "pairs.txt").write_text("\n".join(lines) + "\n")
    pairs = read_lfw_pairs(tmp_path / "pairs.txt", lfw_like / "images").select(np.array([False, False, True, True]))
    assert len(pairs) == 2 and len(pairs.images) == 4 and pairs.fold.tolist() == [1, 1]
    assert pairs.names[pairs.left[0]].endswith("Person_2_0002.jpg")
    assert pairs.names[pairs.right[1]].endswith("Person_1_0001.jpg")
