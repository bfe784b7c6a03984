import numpy as np
import pytest
from PIL import Image

from facerec.config import AugmentConfig
from facerec.data import SyntheticFaces
from facerec.data.datasets import (
    FileListDataset,
    ImageFolderDataset,
    ListDataset,
    SyntheticDataset,
    drop_small_identities,
    split_by_identity,
)
from facerec.data.samplers import PKBatchSampler, ShuffleBatchSampler
from facerec.data.transforms import Augment, degrade_resolution, random_similarity, to_tensor
from facerec.errors import DataError


def test_synthetic_faces_are_deterministic_and_identity_dependent():
    a = SyntheticFaces(3, 2, size=48, seed=1)
    b = SyntheticFaces(3, 2, size=48, seed=1)
    assert np.array_equal(a.render(4), b.render(4))
    assert a.render(0).shape == (48, 48, 3) and a.render(0).dtype == np.uint8
    assert not np.array_equal(a.render(0), SyntheticFaces(3, 2, size=48, seed=2).render(0))
    assert [a.label(i) for i in range(6)] == [0, 0, 1, 1, 2, 2]
    with pytest.raises(IndexError):
        a.render(6)


def test_synthetic_same_identity_images_are_closer_than_different_identities():
    faces = SyntheticFaces(20, 2, size=32, seed=0, difficulty=0.3)
    x = np.stack([faces.render(i).astype(float).ravel() for i in range(len(faces))])
    x = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    same = [np.linalg.norm(x[2 * k] - x[2 * k + 1]) for k in range(20)]
    diff = [np.linalg.norm(x[2 * k] - x[2 * k + 2]) for k in range(19)]
    assert np.median(same) < np.median(diff)


def test_image_folder_dataset(tree):
    ds = ImageFolderDataset(tree, input_size=32)
    assert len(ds) == 12 and ds.num_classes == 4
    img, label = ds[5]
    assert img.shape == (3, 32, 32) and label == 1
    assert float(img.min()) >= -1.0 and float(img.max()) <= 1.0


def test_folder_errors_name_the_problem(tmp_path, tree):
    with pytest.raises(DataError, match="dataset folder not found"):
        ImageFolderDataset(tmp_path / "nope")
    (tmp_path / "empty" / "someone").mkdir(parents=True)
    with pytest.raises(DataError, match="no images in"):
        ImageFolderDataset(tmp_path / "empty")
    bad = tmp_path / "bad" / "person"
    bad.mkdir(parents=True)
    (bad / "broken.jpg").write_bytes(b"not a jpeg")
    ds = ImageFolderDataset(tmp_path / "bad")
    with pytest.raises(DataError, match=r"cannot decode image .*broken.jpg"):
        ds[0]


def test_list_dataset(tmp_path, tree):
    files = sorted(tree.rglob("*.png"))
    lst = tmp_path / "train.txt"
    lst.write_text("".join(f"{p.relative_to(tree)} {10 + i // 3}\n" for i, p in enumerate(files)))
    ds = ListDataset(lst, tree, input_size=40)
    assert len(ds) == 12 and ds.num_classes == 4 and ds.labels.tolist()[:4] == [0, 0, 0, 1]
    lst.write_text("just_a_path.png\n")
    with pytest.raises(DataError, match=r"train.txt:1: expected 'path label'"):
        ListDataset(lst, tree)
    lst.write_text("")
    with pytest.raises(DataError, match="no entries"):
        ListDataset(lst, tree)


def test_file_list_dataset_reports_missing_file(tmp_path):
    with pytest.raises(DataError, match="image not found"):
        FileListDataset([tmp_path / "missing.jpg"])


def test_split_by_identity_is_disjoint_and_relabelled():
    ds = SyntheticDataset(SyntheticFaces(10, 3, size=16))
    train, val = split_by_identity(ds, 3, seed=0)
    assert val.num_classes == 3 and train.num_classes == 7
    assert set(train.class_names).isdisjoint(val.class_names)
    assert sorted(set(train.labels.tolist())) == list(range(7))
    with pytest.raises(DataError, match="cannot hold out"):
        split_by_identity(ds, 10, seed=0)


def test_drop_small_identities(tmp_path):
    ds = SyntheticDataset(SyntheticFaces(3, 2, size=16))
    kept = drop_small_identities(ds, 2)
    assert len(kept) == 6
    with pytest.raises(DataError, match="no identity has at least 3"):
        drop_small_identities(ds, 3)


def test_shuffle_sampler_is_deterministic_and_resumable():
    sampler = ShuffleBatchSampler(50, 8, seed=3)
    sampler.set_position(2)
    full = list(sampler)
    sampler.set_position(2, 4)
    assert list(sampler) == full[4:]
    sampler.set_position(3)
    assert list(sampler) != full
    assert len(full) == 6 and all(len(b) == 8 for b in full)
    assert len({i for b in full for i, _ in b}) == 48


def test_pk_sampler_batches_hold_p_identities_with_k_images():
    labels = np.repeat(np.arange(12), [5, 2, 3, 4, 6, 2, 2, 3, 3, 4, 5, 2])
    sampler = PKBatchSampler(labels, batch_size=8, k=4, seed=0)
    for batch in sampler:
        ids = labels[[i for i, _ in batch]]
        assert len(set(ids.tolist())) == 2 and all((ids == c).sum() == 4 for c in set(ids.tolist()))
    with pytest.raises(DataError, match="single image"):
        PKBatchSampler(np.array([0, 0, 1]), batch_size=4, k=2)


def test_pk_sampler_repeats_single_images_as_views_when_pairs_are_not_required():
    labels = np.array([0, 0, 0, 1, 2, 3])  # identities 1-3 have one image each
    sampler = PKBatchSampler(labels, batch_size=4, k=2, seed=0, require_pairs=False)
    batches = list(sampler)
    assert len(batches) == 2  # every identity once per epoch
    for batch in batches:
        ids = labels[[i for i, _ in batch]]
        assert sorted(np.bincount(ids, minlength=4)[np.unique(ids)]) == [2, 2]
        for c in set(ids.tolist()) - {0}:  # one image shown twice, each view with its own seed
            views = [(i, s) for i, s in batch if labels[i] == c]
            assert views[0][0] == views[1][0] and views[0][1] != views[1][1]


def test_augmentation_is_reproducible_from_its_seed():
    img = SyntheticFaces(1, 1, size=32).render(0)
    aug = Augment(AugmentConfig(flip=True, lowres_prob=1.0, lowres_min_size=8, color_jitter=0.2))
    a = aug(img, np.random.default_rng(5))
    assert np.array_equal(a, aug(img, np.random.default_rng(5)))
    assert a.shape == img.shape and a.dtype == np.uint8


def test_degrade_resolution_removes_detail():
    img = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    low = degrade_resolution(img, 8)
    assert low.shape == img.shape
    assert np.abs(np.diff(low.astype(float), axis=1)).mean() < np.abs(np.diff(img.astype(float), axis=1)).mean() / 2


def test_to_tensor_range():
    x = to_tensor(np.array([[[0, 255, 128]]], dtype=np.uint8))
    assert x.shape == (3, 1, 1)
    assert x.flatten().tolist() == pytest.approx([-1.0, 1.0, 128 / 127.5 - 1], abs=1e-6)


def test_png_written_by_tree_is_readable(tree):
    first = sorted(tree.rglob("*.png"))[0]
    assert Image.open(first).size == (40, 40)


def test_lowres_augmentation_with_a_fixed_size():

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    cfg = AugmentConfig(flip=False, lowres_prob=1.0, lowres_min_size=36, lowres_max_size=36)
    for seed in range(3):
        out = Augment(cfg)(image, np.random.default_rng(seed))
        np.testing.assert_array_equal(out, degrade_resolution(image, 36))
    flat = np.full((112, 112, 3), 77, dtype=np.uint8)
    assert np.abs(degrade_resolution(flat, 20).astype(int) - 77).max() <= 1


def test_random_similarity_stays_within_its_bounds():
    rng = np.random.default_rng(0)
    center = np.array([31.5, 31.5, 1.0])
    for _ in range(200):
        m = random_similarity(64, shift=0.05, rotate=10, scale=0.1, rng=rng)
        s = np.sqrt(np.linalg.det(m[:, :2]))
        assert 0.9 - 1e-9 <= s <= 1.1 + 1e-9
        assert np.allclose(m[:, :2] @ m[:, :2].T, s * s * np.eye(2))  # a rotation times a scale
        angle = np.degrees(np.arctan2(m[1, 0], m[0, 0]))
        assert abs(angle) <= 10 + 1e-9
        assert np.all(np.abs(m @ center - center[:2]) <= 0.05 * 64 + 1e-9)  # the center moves by the shift only


def test_small_scale_jitter_skips_the_supersampling_and_stays_close_to_it():
    """Scale jitter of a few percent is sampled plainly: equal to the antialiased warp where the
    sampled scale enlarges (no supersampling there anyway), within a grey level or two where it
    shrinks; larger scale jitter keeps the antialiasing."""
    from facerec.core.geometry import warp_affine

    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((64, 64), Image.BICUBIC))
    cfg = AugmentConfig(flip=False, shift=0.03, rotate=5, scale=0.05)
    shrinks, differ = 0, 0
    for seed in range(20):
        out = Augment(cfg)(image, np.random.default_rng(seed))
        m = random_similarity(64, 0.03, 5, 0.05, np.random.default_rng(seed))
        smooth = warp_affine(image, m, (64, 64))
        np.testing.assert_array_equal(out, warp_affine(image, m, (64, 64), antialias=False))
        if np.linalg.det(m[:, :2]) >= 1:
            np.testing.assert_array_equal(out, smooth)
        else:
            shrinks += 1
            differ += not np.array_equal(out, smooth)
            assert np.abs(out.astype(float) - smooth).mean() < 3
    assert shrinks > 0 and differ > 0  # the supersampled path was really left out
    wide = AugmentConfig(flip=False, scale=0.4)
    for seed in range(5):
        m = random_similarity(64, 0.0, 0.0, 0.4, np.random.default_rng(seed))
        out = Augment(wide)(image, np.random.default_rng(seed))
        np.testing.assert_array_equal(out, warp_affine(image, m, (64, 64)))


def test_geometric_jitter_moves_a_dot_where_its_matrix_says():
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[20:23, 40:43] = 255  # a 3x3 dot centered at (x=41, y=21)
    cfg = AugmentConfig(flip=False, shift=0.1, rotate=15, scale=0.1)
    for seed in range(5):
        out = Augment(cfg)(image, np.random.default_rng(seed))
        m = random_similarity(64, 0.1, 15, 0.1, np.random.default_rng(seed))
        expected = m @ np.array([41.0, 21.0, 1.0])
        ys, xs = np.nonzero(out[..., 0] > 60)
        weights = out[ys, xs, 0].astype(float)
        assert np.average(xs, weights=weights) == pytest.approx(expected[0], abs=0.5)
        assert np.average(ys, weights=weights) == pytest.approx(expected[1], abs=0.5)
    still = AugmentConfig(flip=False)
    assert np.array_equal(Augment(still)(image, np.random.default_rng(0)), image)


def test_a_crop_on_the_arcface_template_is_framed_as_dlibs_chip():
    """Dots drawn on the ArcFace landmarks of a 112 px crop land where the similarity that best
    maps ArcFace's template onto dlib's puts them (the two templates differ by up to 1.9 px)."""
    from facerec.core.geometry import ARCFACE_112, DLIB_150, framing_points, umeyama
    from facerec.data.transforms import from_arcface_crop

    crop = np.zeros((112, 112, 3), np.uint8)
    dots = np.round(ARCFACE_112)
    for x, y in dots.astype(int):
        crop[y - 1 : y + 2, x - 1 : x + 2] = 255
    framed = from_arcface_crop(crop, framing_points("dlib", 96), 96).astype(float)[..., 0]
    fit = umeyama(ARCFACE_112, DLIB_150 * 96 / 150)
    for want in dots @ fit[:, :2].T + fit[:, 2]:
        ys, xs = np.mgrid[0:96, 0:96]
        near = (np.hypot(xs - want[0], ys - want[1]) < 6) * framed
        centroid = np.array([(near * xs).sum(), (near * ys).sum()]) / near.sum()
        assert np.linalg.norm(centroid - want) < 0.3, (centroid, want)
    # dlib's chip reaches below the crop: the crop's edge is repeated there, not black
    grey = np.full((112, 112, 3), 100, np.uint8)
    assert (from_arcface_crop(grey, framing_points("dlib", 96), 96) == 100).all()
    # on the ArcFace template it is a resize
    assert np.array_equal(
        from_arcface_crop(crop, None, 56), np.asarray(Image.fromarray(crop).resize((56, 56), Image.BILINEAR))
    )
