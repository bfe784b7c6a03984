"""The recognition pipeline against hand-computed references, and on real faces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import LFW, needs_lfw, needs_mtcnn
from facerec.data.transforms import degrade, resize, to_tensor
from facerec.errors import DataError
from facerec.models import build_backbone
from facerec.models.card import ModelCard, arcface_template
from facerec.models.io import RecognitionModel
from facerec.pipeline import RecognitionPipeline


def tiny_model(size: int = 16) -> RecognitionModel:
    torch.manual_seed(0)
    net = build_backbone("lowres_irse8", 8, size, {"widths": [4, 8, 8, 8]}).eval()
    card = ModelCard("lowres_irse8", 8, size, "arcface_112", arcface_template(size), digest="0" * 64, name="tiny")
    return RecognitionModel(net, card)


def reference_embedding(net: torch.nn.Module, crop: np.ndarray, flip: bool) -> np.ndarray:
    """By hand: one crop through the network (plus its mirror), then L2 normalization."""
    x = to_tensor(crop)[None]
    with torch.no_grad():
        e = net(x) + (net(x.flip(3)) if flip else 0)
    return F.normalize(e, dim=1)[0].numpy()


@pytest.mark.parametrize("flip", [False, True])
def test_pre_aligned_images_embed_as_the_network_does_by_hand(tmp_path, flip):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (24, 24, 3), dtype=np.uint8) for _ in range(5)]
    paths = []
    for i, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    model = tiny_model()
    pipeline = RecognitionPipeline(model, "none", flip=flip, device="cpu", batch_size=2)
    expected = np.stack([reference_embedding(model.net, resize(image, 16), flip) for image in images])
    embedded = pipeline.embed(paths, progress=False)
    assert np.allclose(embedded.get(flip), expected, atol=1e-5)
    assert np.allclose(np.stack([pipeline.represent(image) for image in images]), expected, atol=1e-5)
    results = pipeline.run(paths)
    assert np.allclose(np.stack([r.embedding for r in results]), expected, atol=1e-5)
    assert all(r.faces == [] and r.face is None and r.error is None for r in results)
    assert not embedded.detected.any()  # pre-aligned input: nothing was detected


def test_without_mirror_the_plain_embeddings_are_the_same_and_flipped_repeats_them(tmp_path):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(3)]
    pipeline = RecognitionPipeline(tiny_model(), "none", device="cpu")
    both, once = pipeline.embed(images, progress=False), pipeline.embed(images, progress=False, mirror=False)
    np.testing.assert_allclose(once.plain, both.plain, atol=1e-6)
    np.testing.assert_array_equal(once.flipped, once.plain)
    assert not np.allclose(both.flipped, both.plain, atol=1e-3)


def test_pre_aligned_crops_are_warped_onto_a_model_of_another_template():
    """A crop on the ArcFace template fed to a model on another template (dlib's chip): each of
    the five landmarks lands on the model's template point, and the part of the model's crop
    beyond the input crop repeats its edge instead of being black."""
    from facerec.core.geometry import ARCFACE_112, umeyama
    from facerec.models.reference import DLIB_150

    crop = np.full((112, 112, 3), 90, np.uint8)
    for x, y in ARCFACE_112:  # a bright 3x3 dot on each landmark
        crop[round(y) - 1 : round(y) + 2, round(x) - 1 : round(x) + 2] = 255
    card = ModelCard("lowres_irse8", 8, 150, "dlib_150", DLIB_150.tolist(), digest="0" * 64, name="chip")
    pipeline = RecognitionPipeline(RecognitionModel(tiny_model().net, card), "none", device="cpu")
    out = pipeline.align(crop).crop
    assert out.shape == (150, 150, 3)
    # where the least-squares similarity between the two templates sends each landmark (the
    # templates differ by more than a similarity: dlib's mouth is wider, ~3 px of residual)
    matrix = umeyama(ARCFACE_112, DLIB_150)
    for x, y in ARCFACE_112.round() @ matrix[:, :2].T + matrix[:, 2]:  # the dots' centers
        r, c = round(y), round(x)
        weights = (out[r - 5 : r + 6, c - 5 : c + 6, 0].astype(float) - 90).clip(0)
        ys, xs = np.mgrid[r - 5 : r + 6, c - 5 : c + 6]
        centroid = np.array([(xs * weights).sum(), (ys * weights).sum()]) / weights.sum()
        assert weights.max() > 60 and np.hypot(*(centroid - (x, y))) < 0.75, (x, y, centroid)
    # dlib's chip reaches ~13 px below the ArcFace crop: filled from the crop's last rows
    assert out[-5:].min() >= 85
    # and a model on the ArcFace template still gets a plain resize
    arcface = RecognitionPipeline(tiny_model(), "none", device="cpu")
    np.testing.assert_array_equal(arcface.align(crop).crop, resize(crop, 16))


def test_degradation_is_applied_to_every_crop():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    model = tiny_model()
    pipeline = RecognitionPipeline(model, "none", flip=False, degrade=8, device="cpu")
    scale = 16 / 112  # this model's crop has 16 px across the 112 template
    expected = reference_embedding(model.net, degrade(image, 8, scale), flip=False)
    assert np.allclose(pipeline.represent(image), expected, atol=1e-5)
    assert not np.allclose(pipeline.represent(image), reference_embedding(model.net, image, False), atol=1e-3)


def test_tensor_batches_are_resized_to_the_input():
    model = tiny_model()
    pipeline = RecognitionPipeline.for_network(model.net, 16, flip=True)
    big = torch.rand(3, 3, 32, 32) * 2 - 1
    small = F.interpolate(big, size=(16, 16), mode="bilinear", antialias=True, align_corners=False)
    with torch.no_grad():
        expected = F.normalize(model.net(small) + model.net(small.flip(3)), dim=1)
    assert torch.allclose(pipeline.embed_tensors(big), expected, atol=1e-5)


def test_bad_input_is_a_clear_error_and_does_not_stop_a_batch(tmp_path):
    pipeline = RecognitionPipeline(tiny_model(), "none", device="cpu")
    with pytest.raises(DataError, match=r"uint8 RGB of shape \(H, W, 3\)"):
        pipeline.represent(np.zeros((10, 10), dtype=np.uint8))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    good = tmp_path / "good.png"
    Image.fromarray(np.full((20, 20, 3), 100, dtype=np.uint8)).save(good)
    results = pipeline.run([tmp_path / "broken.jpg", good, tmp_path / "missing.png"])
    assert [r.error is None for r in results] == [False, True, False]
    assert "cannot decode image" in results[0].error and "image not found" in results[2].error
    with pytest.raises(DataError, match="the image list is empty"):
        pipeline.embed([], progress=False)


@needs_lfw
@needs_mtcnn
def test_every_face_of_an_image_is_reported_and_the_chosen_one_embedded():
    """Two LFW faces side by side: both found, the larger chosen, one embedding per face."""
    a = np.asarray(Image.open(LFW / "images" / "Bill_Clinton" / "Bill_Clinton_0001.jpg").convert("RGB"))
    b = np.asarray(Image.open(LFW / "images" / "Ariel_Sharon" / "Ariel_Sharon_0001.jpg").convert("RGB"))
    small_b = np.asarray(Image.fromarray(b).resize((200, 200)))
    canvas = np.zeros((250, 450, 3), dtype=np.uint8)
    canvas[:250, :250], canvas[25:225, 250:450] = a, small_b
    pipeline = RecognitionPipeline.load("fast", detector="mtcnn", device="cpu")
    (result,) = pipeline.run([canvas], every_face=True)
    assert len(result.faces) == 2 and result.face is not None
    assert result.face.area == max(f.area for f in result.faces)  # policy 'largest'
    assert len(result.face_embeddings) == 2
    chosen = next(i for i, face in enumerate(result.faces) if face is result.face)
    assert np.allclose(result.face_embeddings[chosen], result.embedding, atol=1e-5)
    alone = pipeline.represent(a)
    assert float(result.embedding @ alone) > 0.9  # the chosen face is Bill Clinton's


def test_stored_rows_match_images_by_their_stored_label_else_by_path(tmp_path):
    from facerec.errors import DataError
    from facerec.pipeline import stored_rows

    a, b = tmp_path / "p" / "a.jpg", tmp_path / "p" / "b.jpg"
    names = ["0001_0.jpg", str(b), str(a)]  # a flat set's stored name, then two paths
    assert stored_rows(names, [a, b], "x.npz").tolist() == [2, 1]
    assert stored_rows(names, [tmp_path / "elsewhere.jpg", a], "x.npz", ["0001_0.jpg", "not stored"]).tolist() == [0, 2]
    with pytest.raises(DataError, match=r"1 of the protocol's images are not in x\.npz \(first: .*c\.jpg\)"):
        stored_rows(names, [a, tmp_path / "c.jpg"], "x.npz")
