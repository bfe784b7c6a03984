"""Readers of FG-NET names and .pts files, UTKFace attribute names, and the CelebA identity tree,
on files written here."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

from facerec.analysis.bias import read_group_csv
from facerec.cli import main
from facerec.data.face_sets import (
    age_group,
    link_celeba_tree,
    parse_fgnet_name,
    parse_utkface_name,
    read_fgnet,
    read_pts,
    read_utkface,
)
from facerec.errors import DataError


def test_fgnet_names(tmp_path):
    assert parse_fgnet_name("078A11.JPG") == (78, 11)
    assert parse_fgnet_name("009a16B.jpg") == (9, 16) and parse_fgnet_name("001A43a.JPG") == (1, 43)
    assert parse_fgnet_name("78A11.JPG") is None and parse_fgnet_name("078A11ab.JPG") is None
    for name in ("002A05.JPG", "001A02.JPG", "readme.jpg", "points.txt"):
        (tmp_path / name).touch()
    images, odd = read_fgnet(tmp_path)
    assert [(i.path.name, i.person, i.age) for i in images] == [("001A02.JPG", 1, 2), ("002A05.JPG", 2, 5)]
    assert odd == ["readme.jpg"]


def test_read_pts(tmp_path):
    points = np.random.default_rng(0).uniform(0, 400, (68, 2)).round(4)
    body = "\n".join(f"{x} {y}" for x, y in points)
    (tmp_path / "001a02.pts").write_text(f"version: 1\nn_points:  68\n{{\n{body}\n}}\n")
    assert np.array_equal(read_pts(tmp_path / "001a02.pts"), points)
    (tmp_path / "short.pts").write_text(f"version: 1\nn_points: 69\n{{\n{body}\n}}\n")
    with pytest.raises(DataError, match="n_points says 69, found 68"):
        read_pts(tmp_path / "short.pts")
    (tmp_path / "junk.pts").write_text("hello\n")
    with pytest.raises(DataError, match=r"not a \.pts landmark file"):
        read_pts(tmp_path / "junk.pts")


def test_utkface_names():
    label = parse_utkface_name("25_1_2_20170116174525125.jpg.chip.jpg")
    assert (label.age, label.gender, label.race, label.age_group) == (25, "female", "asian", "adult_20_39")
    assert parse_utkface_name("3_0_4_2017.jpg.chip.jpg").race == "others"
    assert parse_utkface_name("55_0_0_20170116232725357jpg.chip.jpg").gender == "male"  # irregular date part
    for bad in ("39_1_20170116174525125.jpg.chip.jpg", "25_2_0_2017.jpg.chip.jpg", "25_0_5_2017.jpg", "x.jpg"):
        assert parse_utkface_name(bad) is None
    ages = {0: "child", 12: "child", 13: "teen", 19: "teen", 20: "adult_20_39", 59: "adult_40_59", 60: "senior_60_plus"}
    assert all(age_group(age) == group for age, group in ages.items())


def test_utkface_labels_command(tmp_path, capsys):
    src = tmp_path / "UTKFace" / "unlabeled"
    src.mkdir(parents=True)
    names = ["1_0_0_2017.jpg.chip.jpg", "40_1_1_2017.jpg.chip.jpg", "70_0_3_2017.jpg.chip.jpg"]
    for name in [*names, "61_1_20170109142408075.jpg.chip.jpg"]:
        (src / name).touch()
    assert main(["data", "utkface-labels", str(tmp_path / "UTKFace"), "--out", str(tmp_path / "labels")]) == 0
    assert "3 images labelled; 1 malformed names skipped: 61_1_20170109142408075" in capsys.readouterr().out
    assert read_group_csv(tmp_path / "labels" / "gender.csv") == dict(
        zip(names, ["male", "female", "male"], strict=True)
    )
    assert read_group_csv(tmp_path / "labels" / "race.csv") == dict(
        zip(names, ["white", "black", "indian"], strict=True)
    )
    groups = ["child", "adult_40_59", "senior_60_plus"]
    assert read_group_csv(tmp_path / "labels" / "age_group.csv") == dict(zip(names, groups, strict=True))
    with (tmp_path / "labels" / "attributes.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["file"], r["age"], r["race"]) for r in rows][1] == (names[1], "40", "black")
    assert main(["data", "utkface-labels", str(tmp_path / "none"), "--out", str(tmp_path / "x")]) == 2
    assert "UTKFace folder not found" in capsys.readouterr().err


def test_celeba_tree(tmp_path, capsys):
    images = tmp_path / "Celeb"
    images.mkdir()
    for name in ("000001.jpg", "000002.jpg", "000003.jpg", "999999.jpg"):
        (images / name).write_bytes(name.encode())
    ident = tmp_path / "identity_CelebA.txt"
    ident.write_text("image identity\n000001.jpg 7\n000002.jpg 12\n000003.jpg 7\n000004.jpg 12\n")
    summary = link_celeba_tree(images, ident, tmp_path / "tree")
    assert (summary.identities, summary.images, summary.unlabelled) == (2, 3, ["999999.jpg"])
    tree = {p.relative_to(tmp_path / "tree").as_posix() for p in (tmp_path / "tree").rglob("*.jpg")}
    assert tree == {"7/000001.jpg", "7/000003.jpg", "12/000002.jpg"}
    linked = tmp_path / "tree" / "7" / "000003.jpg"
    assert linked.read_bytes() == b"000003.jpg" and os.path.samefile(linked, images / "000003.jpg")  # not a copy
    dst = str(tmp_path / "tree")
    assert main(["data", "celeba-tree", str(images), str(ident), dst]) == 0  # again: resumes
    assert "2 identities, 3 images linked under" in capsys.readouterr().out
    ident.write_text("image identity\n000001.jpg seven\n")
    with pytest.raises(DataError, match=r"identity_CelebA.txt:2: expected 'file identity'"):
        link_celeba_tree(images, ident, tmp_path / "t2")


def test_celeba_tree_rerun_counts(tmp_path, capsys):
    images = tmp_path / "Celeb"
    images.mkdir()
    (images / "000001.jpg").write_bytes(b"a")
    ident = tmp_path / "id.txt"
    ident.write_text("000001.jpg 3\n")
    assert main(["data", "celeba-tree", str(images), str(ident), str(tmp_path / "t")]) == 0
    assert main(["data", "celeba-tree", str(images), str(ident), str(tmp_path / "t")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("1 identities, 1 images linked") and "(0 already there); 0 files without" in out[0]
    assert "(1 already there)" in out[1]
    assert main(["data", "celeba-tree", str(tmp_path / "nope"), str(ident), str(tmp_path / "t")]) == 2
    assert "CelebA image folder not found" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(
    not Path(__file__).resolve().parents[2].joinpath("data", "sources", "FGNET").is_dir(), reason="no FG-NET copy"
)
def test_real_fgnet_and_utkface():
    sources = Path(__file__).resolve().parents[2] / "data" / "sources"
    images, odd = read_fgnet(sources / "FGNET")
    assert len(images) == 1002 and not odd and len({i.person for i in images}) == 82
    pts = sorted((sources / "FGNET" / "points").glob("*.pts"))
    assert read_pts(pts[0]).shape == (68, 2)
    utk = sources / "data" / "UTKFace"
    if utk.is_dir():
        labels, malformed = read_utkface(utk)
        assert len(labels) + len(malformed) == 23707 and len(malformed) < 10
