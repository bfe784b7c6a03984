"""Augmentation on the training device: the loader's draws, applied to a whole batch, give the
loader's images (within interpolation error), and a run that augments there trains and resumes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import losses, tiny
from facerec.config import AugmentConfig
from facerec.data.batch_augment import augment_batch
from facerec.data.datasets import PreloadedImages
from facerec.data.synthetic import SyntheticFaces
from facerec.data.transforms import Augment, AugmentDraw, draw_augment, to_tensor
from facerec.errors import ConfigError
from facerec.train import Trainer
from facerec.train.builder import build_run

GEOMETRY = {"shift": 0.05, "rotate": 8.0, "scale": 0.1}


def smooth_faces(n: int = 12, size: int = 64) -> list[np.ndarray]:
    """Synthetic faces, bicubically enlarged so that bilinear resampling errors stay small."""
    faces = SyntheticFaces(n, 1, size=32)
    return [np.asarray(Image.fromarray(faces.render(i)).resize((size, size), Image.BICUBIC)) for i in range(n)]


def both_ways(cfg: AugmentConfig, images: list[np.ndarray], seeds: range) -> tuple[torch.Tensor, torch.Tensor]:
    """The same seeds' augmentation in the loader (per image) and on a batch: float images in [-1, 1]."""
    size = images[0].shape[0]
    augment = Augment(cfg)
    loader = torch.stack([to_tensor(augment(x, np.random.default_rng(s))) for x, s in zip(images, seeds, strict=True)])
    rows = np.stack([draw_augment(cfg, size, np.random.default_rng(s)).row() for s in seeds])
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    return loader, augment_batch(batch, torch.from_numpy(rows), cfg)


def grey_levels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).abs() * 127.5


def test_flips_alone_are_exactly_the_loaders():
    images = smooth_faces()
    cfg = AugmentConfig(flip=True)
    loader, device = both_ways(cfg, images, range(len(images)))
    assert torch.equal(loader, device)
    flipped = [draw_augment(cfg, 64, np.random.default_rng(s)).flip for s in range(len(images))]
    assert 0 < sum(flipped) < len(images)  # both kinds were compared


def test_flip_and_jitter_match_the_loader_within_interpolation_error():
    images = smooth_faces()
    cfg = AugmentConfig(flip=True, color_jitter=0.2, **GEOMETRY)
    loader, device = both_ways(cfg, images, range(100, 100 + len(images)))
    diff = grey_levels(loader, device)
    # the loader rounds to whole grey levels and marks a sample beyond the last pixel center
    # black, where the batch blends it with black: the borders of the black may differ, the
    # pixels sampled well inside the image (white in both when a white image is moved) may not
    white = [np.full_like(images[0], 255)] * len(images)
    moved = both_ways(AugmentConfig(flip=True, **GEOMETRY), white, range(100, 100 + len(images)))
    inside = (moved[0] == 1) & (moved[1] > 1 - 1e-5)
    assert diff.mean() < 1.5
    assert inside.float().mean() > 0.7 and diff[inside].max() < 2.5


def test_a_dot_lands_where_the_flip_and_the_matrix_put_it():
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[20:23, 40:43] = 255  # a 3x3 dot centered at (x=41, y=21)
    cfg = AugmentConfig(flip=True, **GEOMETRY)
    for seed in range(8):
        draw = draw_augment(cfg, 64, np.random.default_rng(seed))
        out = augment_batch(torch.from_numpy(image).permute(2, 0, 1)[None], torch.from_numpy(draw.row())[None], cfg)
        x = 63 - 41.0 if draw.flip else 41.0
        expected = draw.matrix @ np.array([x, 21.0, 1.0])
        weights = (out[0, 0] + 1).numpy()
        ys, xs = np.mgrid[:64, :64]
        assert np.average(xs, weights=weights) == pytest.approx(expected[0], abs=0.3)
        assert np.average(ys, weights=weights) == pytest.approx(expected[1], abs=0.3)


def test_resolution_loss_matches_the_loader_and_removes_detail():
    images = smooth_faces()
    cfg = AugmentConfig(flip=False, lowres_prob=1.0, lowres_min_size=16, lowres_max_size=32)
    loader, device = both_ways(cfg, images, range(len(images)))
    # area averaging and torch's bicubic against PIL's box and bicubic filters
    assert grey_levels(loader, device).mean() < 2.5
    noise = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, 3, 64, 64), dtype=np.uint8))
    rows = torch.from_numpy(np.stack([AugmentDraw(lowres=16).row(), AugmentDraw().row()]))
    out = augment_batch(noise, rows, cfg)
    detail = out.diff(dim=-1).abs().mean((1, 2, 3))
    assert detail[0] < detail[1] / 2  # the degraded one lost its detail
    assert torch.equal(out[1], noise[1].float() / 127.5 - 1)  # a size of 0: untouched


def test_rows_of_the_wrong_shape_are_refused():
    images = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"\(2, 11\)"):
        augment_batch(images, torch.zeros(3, 11), AugmentConfig())


def test_training_items_carry_the_draws_and_the_device_finishes_them(tmp_path):
    cfg = tiny(tmp_path / "run", "data.augment_on=device", "data.preload=true")
    parts = build_run(cfg)
    images = parts.train_set
    assert isinstance(images.base, PreloadedImages)
    for index in range(len(images)):
        np.testing.assert_array_equal(images.image(index), images.base.base.image(index))
    loader_view = build_run(tiny(tmp_path / "loader")).train_set
    items = [(i, 1000 + i) for i in range(8)]
    device_items = [images[item] for item in items]
    assert all(s["image"].dtype == torch.uint8 and s["augment"].shape == (AugmentDraw.ROW,) for s in device_items)
    batch = torch.utils.data.default_collate(device_items)
    augmented = augment_batch(batch["image"], batch["augment"], cfg.data.augment)
    expected = torch.stack([loader_view[item]["image"] for item in items])
    # the tiny run's 16 px faces, half degraded, colour-jittered: the same faces within filter differences
    assert grey_levels(augmented, expected).mean() < 1
    assert torch.equal(batch["label"], torch.tensor([loader_view[item]["label"] for item in items]))


def test_a_run_augmenting_on_the_device_trains_and_resumes_exactly(tmp_path):
    on_device = ("data.augment_on=device", "data.preload=true", "data.num_workers=2")
    Trainer(tiny(tmp_path / "whole", *on_device)).fit()
    Trainer(tiny(tmp_path / "parts", *on_device, "train.stop_after=6")).fit()
    Trainer(tiny(tmp_path / "parts", *on_device)).fit(resume=True)
    expected, got = losses(tmp_path / "whole"), losses(tmp_path / "parts")
    assert sorted(got) == sorted(expected) == list(range(1, 13))
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-6)
    early = np.mean([expected[s] for s in (1, 2, 3)])
    assert np.mean([expected[s] for s in (10, 11, 12)]) < early


def test_device_augmentation_settings_that_cannot_work_are_explained(tmp_path):
    with pytest.raises(ConfigError, match="augment_on must be one of loader, device"):
        build_run(tiny(tmp_path / "a", "data.augment_on=gpu"))
    with pytest.raises(ConfigError, match="supersampled in the loader"):
        build_run(tiny(tmp_path / "b", "data.augment_on=device", "data.augment.scale=0.3"))


def test_preloading_changes_no_loader_item(tmp_path):
    plain = build_run(tiny(tmp_path / "plain")).train_set
    preloaded = build_run(tiny(tmp_path / "preloaded", "data.preload=true")).train_set
    assert isinstance(preloaded.base, PreloadedImages)
    for item in [(i, 70 + i) for i in range(len(plain))]:
        a, b = plain[item], preloaded[item]
        assert torch.equal(a["image"], b["image"]) and a["label"] == b["label"]


def test_preloading_leaves_a_run_as_it_was(tmp_path):
    """Decoding the images beforehand draws nothing from the run's random state: the network
    starts and trains as without it."""
    Trainer(tiny(tmp_path / "plain")).fit()
    Trainer(tiny(tmp_path / "preloaded", "data.preload=true")).fit()
    expected, got = losses(tmp_path / "plain"), losses(tmp_path / "preloaded")
    assert sorted(got) == sorted(expected)
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-6)
