"""Explained decisions (facerec.analysis.explain): the maps against independent references on toy
networks whose answer is known, the literature's sanity checks on real LFW faces with the default
model, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from conftest import LFW, needs_dlib, needs_lfw, needs_mtcnn
from facerec.align.pipeline import NoFaceError
from facerec.analysis.explain import (
    ExplainError,
    ExplainOptions,
    deletion_check,
    explain_crops,
    explain_face,
    explain_pair,
    occlusion_positions,
    randomized_copy,
    rank_correlation,
    write_explanation,
)
from facerec.cli import main
from facerec.data.transforms import to_tensor
from facerec.errors import DataError
from facerec.pipeline import RecognitionPipeline

SIZE = 16  # toy crops: small enough for a finite-difference reference in numpy


class LeftHalf(nn.Module):
    """An embedding that reads only the left half of the crop: tanh(W x_left + b), in float64."""

    def __init__(self, size: int = SIZE, dim: int = 4, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.weight = nn.Parameter(torch.randn(dim, 3 * size * (size // 2), generator=generator, dtype=torch.float64))
        self.bias = nn.Parameter(torch.randn(dim, generator=generator, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        left = x[..., : x.shape[-1] // 2].double().flatten(1)
        return torch.tanh(left @ self.weight.T * 0.1 + self.bias)


class Opaque(nn.Module):
    """A network outside autograd, like dlib's: its output carries no graph."""

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :8] + 1.0


def toy_pipeline(net: nn.Module, size: int = SIZE) -> RecognitionPipeline:
    return RecognitionPipeline.for_network(net, size, flip=False)


def random_crops(seed: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return tuple(rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(2))


def numpy_score(net: LeftHalf, x: np.ndarray, other: np.ndarray) -> float:
    """cos(f(x), other) written again in numpy, float64 (x: CHW in [-1, 1])."""
    w, b = net.weight.detach().numpy(), net.bias.detach().numpy()
    emb = np.tanh(w @ x[..., : x.shape[-1] // 2].ravel() * 0.1 + b)
    return float(emb @ other / np.linalg.norm(emb))


# ---- toy networks: the answer is known ------------------------------------------------------------
def test_occlusion_equals_a_patch_by_patch_loop():
    net = LeftHalf()
    pipeline = toy_pipeline(net)
    crop_a, crop_b = random_crops(0)
    found = explain_crops(pipeline, crop_a, crop_b, ExplainOptions(("occlusion",), patch=5, stride=3))
    x, other = to_tensor(crop_a).double().numpy(), pipeline.embed_tensors(to_tensor(crop_b)[None])[0].double().numpy()
    base = numpy_score(net, x, other)
    total, count = np.zeros((SIZE, SIZE)), np.zeros((SIZE, SIZE))
    starts = [0, 3, 6, 9, 11]  # every 3 pixels, and one flush with the edge (16 - 5)
    assert occlusion_positions(SIZE, 5, 3) == starts
    for y in starts:
        for x0 in starts:
            hidden = x.copy()
            hidden[:, y : y + 5, x0 : x0 + 5] = 0.0  # mid-grey
            total[y : y + 5, x0 : x0 + 5] += base - numpy_score(net, hidden, other)
            count[y : y + 5, x0 : x0 + 5] += 1
    np.testing.assert_allclose(found.faces[0].maps["occlusion"], total / count, atol=1e-6)
    assert found.score == pytest.approx(base, abs=1e-6)


def test_integrated_gradients_equal_a_finite_difference_riemann_sum():
    net = LeftHalf()
    pipeline = toy_pipeline(net)
    crop_a, crop_b = random_crops(1)
    steps = 6
    found = explain_crops(pipeline, crop_a, crop_b, ExplainOptions(("gradient",), steps=steps)).faces[0]
    x, other = to_tensor(crop_a).double().numpy(), pipeline.embed_tensors(to_tensor(crop_b)[None])[0].double().numpy()
    expected = np.zeros_like(x)
    h = 1e-6
    for alpha in (np.arange(steps) + 0.5) / steps:  # the midpoint rule along grey -> x
        point = alpha * x
        for idx in np.ndindex(x.shape):
            up, down = point.copy(), point.copy()
            up[idx] += h
            down[idx] -= h
            expected[idx] += (numpy_score(net, up, other) - numpy_score(net, down, other)) / (2 * h)
    expected = (x * expected / steps).sum(0)
    np.testing.assert_allclose(found.maps["gradient"], expected, atol=1e-6)


def test_integrated_gradients_are_complete():
    """With enough steps the map sums to the score's change from the grey image."""
    net = LeftHalf()
    crop_a, crop_b = random_crops(2)
    face = explain_crops(toy_pipeline(net), crop_a, crop_b, ExplainOptions(("gradient",), steps=400)).faces[0]
    change = face.notes["gradient"]["score_change_from_grey"]
    assert abs(change) > 0.05
    assert face.maps["gradient"].sum() == pytest.approx(change, rel=1e-3)


@pytest.mark.parametrize(("patch", "stride"), [(4, 4), (4, 2), (5, 3)])
def test_a_network_blind_to_the_right_half_gets_maps_zero_there(patch, stride):
    crop_a, crop_b = random_crops(3)
    options = ExplainOptions(("occlusion", "gradient"), patch=patch, stride=stride, steps=4)
    for face in explain_crops(toy_pipeline(LeftHalf()), crop_a, crop_b, options).faces:
        gradient, occlusion = face.maps["gradient"], face.maps["occlusion"]
        assert np.all(gradient[:, SIZE // 2 :] == 0) and np.abs(gradient[:, : SIZE // 2]).max() > 0
        # a pixel is zero unless some patch covering it reaches into the left half
        left_reach = max(s + patch for s in occlusion_positions(SIZE, patch, stride) if s < SIZE // 2)
        assert np.all(occlusion[:, left_reach:] == 0) and np.abs(occlusion[:, : SIZE // 2]).max() > 0
        if patch == stride:  # no patch straddles the middle
            assert left_reach == SIZE // 2


def test_a_network_outside_autograd_gets_a_clear_error_for_the_gradient_map():
    crop_a, crop_b = random_crops(4)
    pipeline = toy_pipeline(Opaque())
    with pytest.raises(ExplainError, match=r"torch autograd.*occlusion"):
        explain_crops(pipeline, crop_a, crop_b, ExplainOptions(("gradient",)))
    occlusion = explain_crops(pipeline, crop_a, crop_b, ExplainOptions(("occlusion",))).faces[0].maps["occlusion"]
    assert np.isfinite(occlusion).all()
    with pytest.raises(ExplainError, match="no torch weights"):
        randomized_copy(pipeline)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ExplainOptions(("saliency",)), "unknown method"),
        (ExplainOptions(patch=SIZE + 1), "patch must be"),
        (ExplainOptions(patch=4, stride=5), "stride must be"),
        (ExplainOptions(steps=0), "steps and top"),
    ],
)
def test_bad_options_are_named(options, message):
    crop_a, crop_b = random_crops(5)
    with pytest.raises(ExplainError, match=message):
        explain_crops(toy_pipeline(LeftHalf()), crop_a, crop_b, options)


def test_report_overlay_and_maps_are_written(tmp_path):
    crop_a, crop_b = random_crops(6)
    explanation = explain_crops(toy_pipeline(LeftHalf()), crop_a, crop_b, ExplainOptions(patch=4, steps=4, top=3))
    paths = write_explanation(explanation, tmp_path, {"images": ["a", "b"]})
    report = json.loads(paths["json"].read_text())
    assert report["score"] == pytest.approx(explanation.score) and report["images"] == ["a", "b"]
    top = report["faces"]["a"]["occlusion"]["top_regions"]
    assert len(top) == 3 and top[0]["mean"] >= top[1]["mean"] >= top[2]["mean"]
    x0, y0, x1, y1 = top[0]["box"]
    assert top[0]["mean"] == pytest.approx(explanation.faces[0].maps["occlusion"][y0:y1, x0:x1].mean())
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    maps = np.load(paths["maps"])
    np.testing.assert_array_equal(maps["b_gradient"], explanation.faces[1].maps["gradient"])


# ---- bad input -------------------------------------------------------------------------------------
def test_an_unreadable_image_is_a_data_error(tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image at all")
    pipeline = toy_pipeline(LeftHalf())
    with pytest.raises(DataError, match="cannot decode image"):
        explain_pair(pipeline, broken, broken)
    assert main(["explain", str(broken), str(broken), "--detector", "none", "--out", str(tmp_path / "out")]) == 2


@needs_mtcnn
def test_an_image_without_a_face_is_a_no_face_error(tmp_path):
    from PIL import Image

    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((160, 160, 3), 128, dtype=np.uint8)).save(blank)
    pipeline = RecognitionPipeline.load("fast", detector="mtcnn", device="cpu", several="largest")
    with pytest.raises(NoFaceError, match="no face detected"):
        explain_pair(pipeline, blank, blank)


# ---- real faces, the default model: the literature's sanity checks --------------------------------
SAME_PERSON = [("Aaron_Peirsol", 1, 2), ("Colin_Powell", 1, 2), ("Serena_Williams", 1, 3)]


def lfw_image(name: str, number: int):
    return LFW / "images" / name / f"{name}_{number:04d}.jpg"


@pytest.fixture(scope="module")
def default_pipeline():
    # no flip: half the network calls, and the unflipped score is as good a thing to explain
    return RecognitionPipeline.load("fast", detector="mtcnn", device="cpu", flip=False, several="largest")


LFW_OPTIONS = ExplainOptions(steps=8)  # 16 px patches every 8 px over the 64 px crop


@pytest.fixture(scope="module")
def lfw_faces(default_pipeline):
    """Three same-person LFW pairs: A's crop, B's crop, B's embedding and A's maps (computed once)."""
    faces = []
    for name, first, second in SAME_PERSON:
        crop_a, crop_b = (default_pipeline.align(lfw_image(name, n)).crop for n in (first, second))
        other = default_pipeline.embed_tensors(to_tensor(crop_b)[None])[0]
        faces.append((crop_a, crop_b, other, explain_face(default_pipeline, crop_a, other, LFW_OPTIONS)))
    return faces


@needs_lfw
@needs_mtcnn
def test_maps_change_when_the_weights_are_randomised(default_pipeline, lfw_faces):
    randomised = randomized_copy(default_pipeline, seed=0)
    correlations = {"occlusion": [], "gradient": []}
    for crop_a, crop_b, _, trained in lfw_faces:
        # the randomised network explains its own score: cos(f'(A), f'(B))
        random_other = randomised.embed_tensors(to_tensor(crop_b)[None])[0]
        random = explain_face(randomised, crop_a, random_other, LFW_OPTIONS)
        for method, found in correlations.items():
            found.append(rank_correlation(trained.maps[method], random.maps[method]))
            # the check can tell: the same map twice correlates perfectly
            assert rank_correlation(trained.maps[method], trained.maps[method]) == pytest.approx(1.0)
    assert max(np.abs(correlations["gradient"])) < 0.3, correlations
    # occlusion maps partly follow the image itself (a random network is also most disturbed
    # where the face has contrast), so the bound holds on average over the pairs
    assert np.mean(correlations["occlusion"]) < 0.4, correlations


@needs_lfw
@needs_mtcnn
def test_hiding_the_top_ranked_regions_lowers_the_similarity_more_than_hiding_random_ones(default_pipeline, lfw_faces):
    for crop_a, _, other, explained in lfw_faces:
        for method, saliency in explained.maps.items():
            result = deletion_check(default_pipeline, crop_a, other, saliency, 8, 4, seeds=10)
            assert result.top_drop > result.random_drop + 0.01, (method, result)


@needs_lfw
@needs_mtcnn
@needs_dlib
def test_the_reference_model_is_explained_by_occlusion_and_by_its_gradient(tmp_path):
    """dlib's network runs in torch (facerec.models.dlib_resnet), so its gradient map exists."""
    a, b = lfw_image("Aaron_Peirsol", 1), lfw_image("Aaron_Peirsol", 2)
    out = tmp_path / "dlib"
    common = [str(a), str(b), "--model", "dlib", "--out", str(out)]
    args = ["--method", "both", "--patch", "50", "--stride", "50", "--steps", "4"]
    assert main(["explain", *common, *args]) == 0
    report = json.loads((out / "explanation.json").read_text())
    assert report["model"] == "dlib" and set(report["options"]["methods"]) == {"occlusion", "gradient"}
    assert report["faces"]["a"]["occlusion"]["patches"] == 9 and report["same"] is True
    assert set(np.load(out / "maps.npz")) >= {"a_gradient", "b_gradient"}


@needs_lfw
@needs_mtcnn
def test_the_command_explains_the_score_verify_gives(tmp_path):
    a, b = lfw_image("Aaron_Peirsol", 1), lfw_image("Aaron_Peirsol", 2)
    out = tmp_path / "default"
    assert (
        main(
            ["explain", str(a), str(b), "--model", "fast", "--method", "occlusion", "--patch", "32", "--out", str(out)]
        )
        == 0
    )
    report = json.loads((out / "explanation.json").read_text())
    pipeline = RecognitionPipeline.load("fast", detector="mtcnn", device="cpu", several="largest")
    assert report["score"] == pytest.approx(float(pipeline.represent(a) @ pipeline.represent(b)), abs=1e-5)
    assert report["options"] == {"methods": ["occlusion"], "patch": 32, "stride": 16, "steps": 32, "top": 5}
    assert report["faces"]["b"]["occlusion"]["patches"] == 9 and report["images"] == [str(a), str(b)]
    assert (out / "explanation.png").is_file() and set(np.load(out / "maps.npz")) == {"a_occlusion", "b_occlusion"}
