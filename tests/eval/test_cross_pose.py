"""The cross-pose pair set: its constraints checked pair by pair on the CSV it writes (read back
by the protocol's own reader), identity-disjoint folds, reproducibility, people and labels."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from facerec.align.pose_files import POSE_FILE
from facerec.errors import DataError
from facerec.eval.cross_pose import make_cross_pose_pairs
from facerec.eval.pairs import read_pairs_csv

MARKS = "\t50" * 10


def make_tree(root: Path, people: int = 40, images: int = 6, seed: int = 0, flat: bool = False) -> dict[str, float]:
    """Empty .jpg files (the pairs never decode them) and a pose.tsv; {relative path: yaw}."""
    rng = np.random.default_rng(seed)
    yaws = {}
    for p, k in itertools.product(range(people), range(images)):
        relative = f"{p:03d}_{k}.jpg" if flat else f"person{p:02d}/{k}.jpg"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(b"")
        yaws[relative] = float(np.round(rng.uniform(-70, 70), 2))
    lines = [f"{rel}\t{yaw:.2f}\t0\t0{MARKS}" for rel, yaw in yaws.items()]
    lines.append("person_x/none.jpg" + "\tNA" * 13 if not flat else "999_0.jpg" + "\tNA" * 13)
    (root / POSE_FILE).write_text("\n".join(lines) + "\n")
    return yaws


def person_of(path: Path, flat: bool) -> str:
    return path.name.split("_")[0] if flat else path.parent.name


def check_pairs(
    csv: Path, tree: Path, yaws: dict[str, float], min_diff: float, tol: float, per_person: int, flat=False
):
    pairs = read_pairs_csv(csv)
    paths = [Path(p).resolve() for p in pairs.images]
    yaw = [yaws[p.relative_to(tree.resolve()).as_posix()] for p in paths]
    person = [person_of(p, flat) for p in paths]
    assert sorted(set(pairs.fold.tolist())) == list(range(10))
    folds_of_person: dict[str, set[int]] = {}
    genuine_per_person: dict[str, int] = {}
    seen = set()
    # written in (fold, genuine, impostor, genuine, impostor ...) order: each impostor follows its genuine pair
    for k in range(0, len(pairs), 2):
        g, i = k, k + 1
        assert pairs.same[g] and not pairs.same[i] and pairs.fold[g] == pairs.fold[i]
        ga, gb, ia, ib = pairs.left[g], pairs.right[g], pairs.left[i], pairs.right[i]
        assert person[ga] == person[gb] and person[ia] != person[ib]
        d_gen, d_imp = abs(yaw[ga] - yaw[gb]), abs(yaw[ia] - yaw[ib])
        assert d_gen >= min_diff
        assert abs(d_imp - d_gen) <= tol + 1e-9
        assert (min(ia, ib), max(ia, ib)) not in seen
        seen.add((min(ia, ib), max(ia, ib)))
        genuine_per_person[person[ga]] = genuine_per_person.get(person[ga], 0) + 1
        for n in (ga, gb, ia, ib):
            folds_of_person.setdefault(person[n], set()).add(int(pairs.fold[g]))
    assert all(len(f) == 1 for f in folds_of_person.values())  # identity-disjoint folds
    assert max(genuine_per_person.values()) <= per_person
    return pairs, yaw, person


def test_pairs_meet_their_constraints(tmp_path):
    tree = tmp_path / "tree"
    yaws = make_tree(tree)
    summary = make_cross_pose_pairs(tree, tmp_path / "out" / "pairs.csv", min_yaw_diff=30, per_person=4, tolerance=2.5)
    pairs, _, _ = check_pairs(tmp_path / "out" / "pairs.csv", tree, yaws, 30, 2.5, 4)
    assert summary["genuine"] == summary["impostor"] == int(pairs.same.sum()) > 60
    # every person's genuine pairs: as many as qualify, up to 4 (a brute-force count), less those
    # whose impostor could not be matched (a 130-degree difference is rare among 24 images of a fold)
    by_person: dict[str, list[float]] = {}
    for rel, value in yaws.items():
        by_person.setdefault(rel.split("/")[0], []).append(value)
    expected = sum(min(4, sum(abs(a - b) >= 30 for a, b in itertools.combinations(v, 2))) for v in by_person.values())
    assert summary["genuine"] + summary["genuine_left_out_unmatched"] == expected
    assert summary["genuine_left_out_unmatched"] <= 0.05 * expected
    assert (tmp_path / "out" / "pairs.json").is_file() and (tmp_path / "out" / "pairs.png").is_file()
    # the image without a pose is never used
    assert not any("person_x" in str(p) for p in pairs.images)


def test_same_seed_same_file_other_seed_other_pairs(tmp_path):
    tree = tmp_path / "tree"
    make_tree(tree)
    for name, seed in (("a.csv", 0), ("b.csv", 0), ("c.csv", 1)):
        make_cross_pose_pairs(tree, tmp_path / name, seed=seed)
    a, b, c = ((tmp_path / name).read_text().splitlines() for name in ("a.csv", "b.csv", "c.csv"))
    assert a[1].startswith("# made by: facerec data cross-pose-pairs") and "--seed 0" in a[1] and "--seed 1" in c[1]
    assert a[2:] == b[2:] and a[2:] != c[2:]


def test_people_from_an_lfw_people_file(tmp_path):
    tree = tmp_path / "tree"
    yaws = make_tree(tree)
    # two folds of LFW's people.txt layout: fold 1 holds people 20-39
    lines = ["2", "20", *(f"person{p:02d}\t6" for p in range(20)), "20", *(f"person{p:02d}\t6" for p in range(20, 40))]
    (tmp_path / "people.txt").write_text("\n".join(lines) + "\n")
    make_cross_pose_pairs(tree, tmp_path / "p.csv", people_file=tmp_path / "people.txt", people_folds=[1])
    _, _, person = check_pairs(tmp_path / "p.csv", tree, yaws, 25, 2.5, 10)
    assert all(int(name[-2:]) >= 20 for name in person)


def test_flat_tree_with_a_labels_file(tmp_path):
    tree = tmp_path / "flat"
    yaws = make_tree(tree, flat=True)
    labels = "count\nimage identity\n" + "".join(f"{rel} {rel.split('_')[0]}\n" for rel in yaws)
    (tmp_path / "identity.txt").write_text(labels)
    make_cross_pose_pairs(tree, tmp_path / "f.csv", labels_file=tmp_path / "identity.txt")
    check_pairs(tmp_path / "f.csv", tree, yaws, 25, 2.5, 10, flat=True)


def test_no_qualifying_pair_is_a_data_error(tmp_path):
    tree = tmp_path / "tree"
    make_tree(tree, people=3, images=2)
    with pytest.raises(DataError, match="no genuine pair"):
        make_cross_pose_pairs(tree, tmp_path / "x.csv", min_yaw_diff=179)
    with pytest.raises(DataError, match="people file not found"):
        make_cross_pose_pairs(tree, tmp_path / "x.csv", people_file=tmp_path / "nobody.txt")
