"""Face morphs: pairs of different people, exact blends, resumable trees; extra training trees
that join the training images but never the held-out identities."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from PIL import Image

from facerec.cli import main
from facerec.config import load_config
from facerec.core.images import decode_image
from facerec.data import build_datasets
from facerec.data.datasets import ImageFolderDataset, JoinedDataset
from facerec.data.morphs import blend, plan_morphs, write_morphs
from facerec.errors import DataError


def test_plan_pairs_two_different_people_with_weights_in_range():
    labels = np.repeat(np.arange(5), [1, 2, 50, 3, 4])  # one person with most images
    plan = plan_morphs(labels, 4000, seed=1, weights=(0.3, 0.6))
    assert (labels[plan.first] != labels[plan.second]).all()
    assert plan.weight.min() >= 0.3 and plan.weight.max() <= 0.6
    # identities, not images, are drawn uniformly: the big one is not favored
    share = np.mean(labels[plan.first] == 2)
    assert abs(share - 0.2) < 0.03
    again = plan_morphs(labels, 4000, seed=1, weights=(0.3, 0.6))
    assert (again.first == plan.first).all() and np.allclose(again.weight, plan.weight)


def test_plan_rejects_what_cannot_be_morphed():
    with pytest.raises(DataError, match="at least two identities"):
        plan_morphs(np.zeros(5, dtype=int), 3)
    with pytest.raises(DataError, match="positive"):
        plan_morphs(np.arange(3), 0)
    with pytest.raises(DataError, match="weights"):
        plan_morphs(np.arange(3), 2, weights=(0.0, 0.5))


def test_blend_is_the_weighted_mean_rounded():
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    mixed = blend(a, b, 0.3)
    reference = np.rint(0.3 * a.astype(np.float64) + 0.7 * b.astype(np.float64))
    assert mixed.dtype == np.uint8 and np.abs(mixed.astype(int) - reference).max() <= 1
    with pytest.raises(DataError, match="shapes"):
        blend(a, b[:4], 0.5)


def test_morph_tree_blends_the_images_it_names_and_resumes(tmp_path, tree):
    dst = tmp_path / "morphs"
    assert main(["morphs", str(tree), str(dst), "--count", "5", "--seed", "3"]) == 0
    folders = sorted(p for p in dst.iterdir() if p.is_dir())
    assert [p.name for p in folders] == [f"morph_{k:06d}" for k in range(5)]
    with open(dst / "morphs.csv", newline="") as table:
        rows = list(csv.reader(table))[1:]
    assert len(rows) == 5
    for name, first, second, weight in rows:
        assert first.split("/")[-2] != second.split("/")[-2]  # two different people
        expected = blend(decode_image(first), decode_image(second), float(weight))
        assert np.abs(decode_image(dst / name / f"{name}.png").astype(int) - expected).max() <= 1
    # a finished morph is kept when the run is repeated (resume after an interruption)
    marker = np.zeros((40, 40, 3), dtype=np.uint8)
    Image.fromarray(marker).save(folders[0] / f"{folders[0].name}.png")
    write_morphs(tree, dst, 5, seed=3, progress=False)
    assert (decode_image(folders[0] / f"{folders[0].name}.png") == 0).all()


def test_joined_dataset_offsets_labels_and_finds_each_image(tree, tmp_path):
    dst = write_morphs(tree, tmp_path / "m", 4, progress=False)
    a, b = ImageFolderDataset(tree, 32), ImageFolderDataset(dst, 32)
    joined = JoinedDataset([a, b])
    assert len(joined) == len(a) + len(b) and joined.num_classes == a.num_classes + b.num_classes
    assert (joined.labels[len(a) :] == b.labels + a.num_classes).all()
    assert joined.describe(len(a)) == b.describe(0) and joined.describe(len(a) - 1) == a.describe(len(a) - 1)
    assert (joined.load(len(a) + 3) == b.load(3)).all()


def test_extra_roots_join_training_but_never_the_held_out_identities(tree, tmp_path):
    extra = write_morphs(tree, tmp_path / "m", 7, progress=False)
    overrides = ["data.source=folder", f"data.root={tree}", "backbone.input_size=32", "data.val_identities=2"]
    base_train, base_val = build_datasets(load_config(None, overrides).data, 32, seed=0)
    train, val = build_datasets(load_config(None, [*overrides, f"data.extra_roots=[{extra}]"]).data, 32, seed=0)
    assert len(train) == len(base_train) + 7 and train.num_classes == base_train.num_classes + 7
    # the same held-out people as without the extra tree, and no morph among them
    assert [val.describe(i) for i in range(len(val))] == [base_val.describe(i) for i in range(len(base_val))]
    assert not any("morph_" in val.describe(i) for i in range(len(val)))
