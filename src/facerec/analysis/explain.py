"""Explained decisions: which regions of two faces drive their similarity.

Both faces are aligned once; each is then explained against the other's (fixed) embedding, so
the score explained is exactly the one `facerec verify` gives: cos(f(A), f(B)) with the
pipeline's flip setting. Two maps, both in units of cosine:

- occlusion sensitivity (Zeiler & Fergus 2014): a mid-grey patch slides over the crop; a
  pixel's value is the drop in cosine, averaged over every patch covering it. All occluded
  crops go through the network in batches (not one call per patch). Needs only forward
  passes, so it works for every model, the dlib reference and ONNX models included.
- integrated gradients (Sundararajan et al. 2017) from the same mid-grey image: the gradient
  of the cosine averaged along the straight path grey -> crop, times (crop - grey), summed over
  the colour channels. Chosen over gradient x input because it satisfies completeness (the map
  sums to cos(A, B) - cos(grey, B), checked and reported) and does not saturate where the
  local gradient vanishes; the grey baseline is the occlusion patch's grey, so the two maps
  measure the same thing. It needs a network that computes in torch autograd: onnxruntime
  models get an ExplainError saying so.

Sanity checks from the literature, used by the tests: the maps must change when the network's
weights are randomised (Adebayo et al. 2018, `randomized_copy` + `rank_correlation`), and
occluding a map's top-ranked regions must lower the similarity more than occluding as many
random regions (the deletion test of Samek et al. 2017, `deletion_check`).
"""

from __future__ import annotations

import copy
import dataclasses
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from facerec.align.pipeline import PRE_ALIGNED
from facerec.core.files import save_npz, write_json
from facerec.core.plots import pyplot, save_figure
from facerec.data.transforms import resize, to_tensor
from facerec.errors import FacerecError
from facerec.models.card import arcface_template
from facerec.models.io import RecognitionModel
from facerec.pipeline import Image, RecognitionPipeline

GREY = 0.0  # mid-grey (pixel 127.5) in the [-1, 1] scale every facerec model takes
LANDMARKS = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")  # the template's order
MAX_CHUNK = 256  # most crops per network call (bounds memory)


class ExplainError(FacerecError):
    """An explanation that cannot be made: bad options, or a method the model cannot support."""


@dataclass(frozen=True)
class ExplainOptions:
    methods: tuple[str, ...] = ("occlusion", "gradient")
    patch: int | None = None  # occlusion patch side in crop pixels; None: a quarter of the crop
    stride: int | None = None  # None: half the patch
    steps: int = 32  # integrated-gradients steps (midpoint rule)
    top: int = 5  # regions listed in the summary

    def resolved(self, size: int) -> ExplainOptions:
        """The options with defaults filled in for a crop of `size` pixels, checked."""
        unknown = [m for m in self.methods if m not in MAP_METHODS]
        if unknown or not self.methods:
            raise ExplainError(f"unknown method(s) {unknown or '(none)'}: choose from {', '.join(MAP_METHODS)}")
        patch = self.patch if self.patch is not None else max(1, size // 4)
        stride = self.stride if self.stride is not None else max(1, patch // 2)
        if not 1 <= patch <= size:
            raise ExplainError(f"patch must be 1..{size} pixels (the model's crop is {size} px), got {patch}")
        if not 1 <= stride <= patch:
            raise ExplainError(f"stride must be 1..patch ({patch}) so that patches cover the crop, got {stride}")
        if self.steps < 1 or self.top < 1:
            raise ExplainError(f"steps and top must be positive, got {self.steps} and {self.top}")
        return dataclasses.replace(self, patch=patch, stride=stride)


@dataclass
class FaceExplanation:
    crop: np.ndarray  # the aligned crop, uint8 HWC
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # method -> (H, W), units of cosine
    notes: dict[str, dict[str, float]] = field(default_factory=dict)  # method -> checks (completeness)


@dataclass
class Explanation:
    model: str
    score: float  # cos(f(A), f(B)), the pipeline's flip setting
    threshold: float | None  # the model card's for this detector and flip, if any
    options: ExplainOptions
    faces: tuple[FaceExplanation, FaceExplanation]
    template: np.ndarray | None = None  # the model's five landmarks in its crop; None: ArcFace's

    def summary(self) -> dict[str, Any]:
        """The JSON report: score, options and, per face and method, the top regions."""
        faces = {}
        for name, face in zip(("a", "b"), self.faces, strict=True):
            faces[name] = {
                m: summarize_map(v, self.options, face.notes.get(m, {}), self.template) for m, v in face.maps.items()
            }
        same = None if self.threshold is None else self.score >= self.threshold
        return {
            "model": self.model,
            "score": self.score,
            "threshold": self.threshold,
            "same": same,
            "options": dataclasses.asdict(self.options),
            "faces": faces,
        }


# ---- the two maps --------------------------------------------------------------------------------
def occlusion_positions(size: int, patch: int, stride: int) -> list[int]:
    """Patch starts along one side: every `stride`, plus one flush with the far edge."""
    starts = list(range(0, size - patch + 1, stride))
    return starts if starts[-1] == size - patch else [*starts, size - patch]


def occlusion_map(
    pipeline: RecognitionPipeline, crop: torch.Tensor, other: torch.Tensor, options: ExplainOptions, progress: bool
) -> tuple[np.ndarray, dict[str, float]]:
    """Drop in cos(f(crop), other) when a grey patch hides each pixel, averaged over patches."""
    size, patch = crop.shape[-1], int(options.patch or 0)
    starts = occlusion_positions(size, patch, int(options.stride or 0))
    boxes = [(y, x) for y in starts for x in starts]
    occluded = crop.expand(len(boxes), *crop.shape).clone()
    for i, (y, x) in enumerate(boxes):
        occluded[i, :, y : y + patch, x : x + patch] = GREY
    scores = _scores(pipeline, torch.cat([crop[None], occluded]), other, progress)
    total, count = np.zeros((size, size)), np.zeros((size, size))
    for (y, x), score in zip(boxes, scores[1:], strict=True):
        total[y : y + patch, x : x + patch] += scores[0] - score
        count[y : y + patch, x : x + patch] += 1
    return total / np.maximum(count, 1), {"patches": float(len(boxes))}


def integrated_gradients(
    pipeline: RecognitionPipeline, crop: torch.Tensor, other: torch.Tensor, options: ExplainOptions, progress: bool
) -> tuple[np.ndarray, dict[str, float]]:
    """Integrated gradients of cos(f(crop), other) from the grey image, summed over channels."""
    x = crop.to(pipeline.device)
    baseline = torch.full_like(x, GREY)
    _require_differentiable(pipeline, x)
    alphas = (torch.arange(options.steps, dtype=x.dtype, device=x.device) + 0.5) / options.steps
    gradient_sum = torch.zeros_like(x)
    chunks = alphas.split(max(1, min(pipeline.batch_size, MAX_CHUNK)))
    for chunk in tqdm(chunks, desc="integrated gradients", unit="batch", disable=not progress, dynamic_ncols=True):
        path = (baseline + chunk[:, None, None, None] * (x - baseline)).requires_grad_(True)
        with torch.enable_grad():
            scores = differentiable_embed(pipeline, path) @ other.to(x.device)
            (grad,) = torch.autograd.grad(scores.sum(), path)
        gradient_sum += grad.sum(0)
    attribution = ((x - baseline) * gradient_sum / options.steps).sum(0).detach().cpu().double().numpy()
    end_scores = _scores(pipeline, torch.stack([x, baseline]).cpu(), other, False)
    # completeness: the map's sum should equal this (up to the path integral's error)
    return attribution, {"score_change_from_grey": float(end_scores[0] - end_scores[1])}


MapMethod = Callable[
    [RecognitionPipeline, torch.Tensor, torch.Tensor, ExplainOptions, bool], tuple[np.ndarray, dict[str, float]]
]
MAP_METHODS: dict[str, MapMethod] = {"occlusion": occlusion_map, "gradient": integrated_gradients}


def differentiable_embed(pipeline: RecognitionPipeline, images: torch.Tensor) -> torch.Tensor:
    """`pipeline.embed_tensors` with autograd on: L2-normalized, flip-summed when it flips."""
    size = pipeline.model.input_size
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    emb = pipeline.net(images).float()
    if pipeline.flip:
        emb = emb + pipeline.net(images.flip(3)).float()
    return F.normalize(emb, dim=1)


def _require_differentiable(pipeline: RecognitionPipeline, x: torch.Tensor) -> None:
    """One probe forward pass: a network outside torch autograd returns a tensor without graph."""
    with torch.enable_grad():
        probe = pipeline.net(x[None].clone().requires_grad_(True))
    if not probe.requires_grad:
        raise ExplainError(
            f"the gradient map needs a network that computes in torch autograd; model '{pipeline.model.name}' "
            "does not (an ONNX model runs in onnxruntime): "
            "use the occlusion method for it"
        )


def _scores(pipeline: RecognitionPipeline, crops: torch.Tensor, other: torch.Tensor, progress: bool) -> np.ndarray:
    """cos(f(crop), other) for each crop, in network calls of the pipeline's batch size."""
    parts = []
    bar = tqdm(total=len(crops), desc="occluded crops", unit="crop", disable=not progress, dynamic_ncols=True)
    for chunk in crops.split(max(1, min(pipeline.batch_size, MAX_CHUNK))):
        parts.append((pipeline.embed_tensors(chunk) @ other.to(pipeline.device)).double().cpu().numpy())
        bar.update(len(chunk))
    bar.close()
    return np.concatenate(parts)


# ---- explaining a pair ---------------------------------------------------------------------------
def explain_pair(
    pipeline: RecognitionPipeline,
    image_a: Image,
    image_b: Image,
    options: ExplainOptions | None = None,
    progress: bool = False,
) -> Explanation:
    """Align both images once (NoFaceError / DataError for no face / an unreadable image), then
    explain their similarity (see `explain_crops`)."""
    crops = [pipeline.align(image).crop for image in (image_a, image_b)]
    return explain_crops(pipeline, crops[0], crops[1], options, progress)


def explain_crops(
    pipeline: RecognitionPipeline,
    crop_a: np.ndarray,
    crop_b: np.ndarray,
    options: ExplainOptions | None = None,
    progress: bool = False,
) -> Explanation:
    """Each aligned crop (uint8 HWC) explained against the other's embedding, by each method."""
    size = pipeline.model.input_size
    resolved = (options or ExplainOptions()).resolved(size)
    crops = [resize(np.asarray(c, dtype=np.uint8), size) for c in (crop_a, crop_b)]
    embeddings = pipeline.embed_tensors(torch.stack([to_tensor(c) for c in crops]))
    score = float(embeddings[0] @ embeddings[1])
    faces = (
        explain_face(pipeline, crops[0], embeddings[1], resolved, progress),
        explain_face(pipeline, crops[1], embeddings[0], resolved, progress),
    )
    threshold = pipeline.threshold()
    threshold_value = threshold.value if threshold else None
    return Explanation(pipeline.model.name, score, threshold_value, resolved, faces, pipeline.model.template)


def explain_face(
    pipeline: RecognitionPipeline,
    crop: np.ndarray,
    other: torch.Tensor,
    options: ExplainOptions | None = None,
    progress: bool = False,
) -> FaceExplanation:
    """One aligned crop (uint8 HWC) explained against another face's embedding `other`."""
    size = pipeline.model.input_size
    resolved = (options or ExplainOptions()).resolved(size)
    face = FaceExplanation(resize(np.asarray(crop, dtype=np.uint8), size))
    tensor = to_tensor(face.crop)
    for method in resolved.methods:
        face.maps[method], face.notes[method] = MAP_METHODS[method](pipeline, tensor, other, resolved, progress)
    return face


# ---- summaries: the regions that matter ----------------------------------------------------------
def grid_cells(size: int, cell: int) -> list[tuple[int, int, int, int]]:
    """Non-overlapping (y0, y1, x0, x1) cells tiling a size x size crop (the last ones clipped)."""
    edges = [(start, min(start + cell, size)) for start in range(0, size, cell)]
    return [(y0, y1, x0, x1) for y0, y1 in edges for x0, x1 in edges]


def cell_means(saliency: np.ndarray, cells: list[tuple[int, int, int, int]]) -> np.ndarray:
    return np.array([saliency[y0:y1, x0:x1].mean() for y0, y1, x0, x1 in cells])


def summarize_map(
    saliency: np.ndarray, options: ExplainOptions, notes: dict[str, float], template: np.ndarray | None = None
) -> dict[str, Any]:
    """The map's top cells (patch-sized, by mean value) and its mean around each landmark."""
    patch = int(options.patch or 1)
    cells = grid_cells(saliency.shape[0], patch)
    means = cell_means(saliency, cells)
    top = [
        {"box": [cells[i][2], cells[i][0], cells[i][3], cells[i][1]], "mean": float(means[i])}
        for i in np.argsort(-means, kind="stable")[: options.top]
    ]
    return {
        "top_regions": top,  # box: x0, y0, x1, y1 in crop pixels
        "landmarks": landmark_means(saliency, patch, template),
        "sum": float(saliency.sum()),
        "max": float(saliency.max()),
        "min": float(saliency.min()),
        **notes,
    }


def landmark_means(saliency: np.ndarray, patch: int, template: np.ndarray | None = None) -> dict[str, float]:
    """The map's mean in a patch-sized square around each of the model's five landmarks (its
    `template`, in the model's crop, which the map covers pixel for pixel; None: the ArcFace
    template)."""
    size, half = saliency.shape[0], max(1, patch // 2)
    points = np.asarray(arcface_template(size)) if template is None else np.asarray(template)
    means = {}
    for name, (x, y) in zip(LANDMARKS, points, strict=True):
        y0, x0 = max(0, round(y) - half), max(0, round(x) - half)
        means[name] = float(saliency[y0 : round(y) + half, x0 : round(x) + half].mean())
    return means


# ---- sanity checks -------------------------------------------------------------------------------
def randomized_copy(pipeline: RecognitionPipeline, seed: int = 0) -> RecognitionPipeline:
    """The pipeline over a copy of its network with every layer re-initialised (the model
    randomisation test): a map that survives this reflects the image, not what the model learnt."""
    if not any(True for _ in pipeline.net.parameters()):
        raise ExplainError(f"model '{pipeline.model.name}' has no torch weights to randomise")
    net = copy.deepcopy(pipeline.net)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in net.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()  # BatchNorm's also resets its running statistics
    card = dataclasses.replace(pipeline.model.card, name=f"{pipeline.model.name} (randomised)", digest="")
    return RecognitionPipeline(
        RecognitionModel(net, card),
        PRE_ALIGNED,
        flip=pipeline.flip,
        device=pipeline.device,
        batch_size=pipeline.batch_size,
    )


def rank_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation of two maps, pixel by pixel."""
    from scipy.stats import spearmanr

    return float(spearmanr(np.ravel(a), np.ravel(b)).statistic)


@dataclass
class DeletionResult:
    base: float  # cos(f(crop), other) unoccluded
    top_drop: float  # drop when the map's k top cells are grey
    random_drops: list[float]  # drop when k random cells are grey, one per seed

    @property
    def random_drop(self) -> float:
        return float(np.mean(self.random_drops))


def deletion_check(
    pipeline: RecognitionPipeline,
    crop: np.ndarray,
    other: torch.Tensor,
    saliency: np.ndarray,
    cell: int,
    k: int,
    seeds: int = 10,
) -> DeletionResult:
    """Grey out the k cells (of a cell x cell grid) where the map is highest, and k random
    cells per seed: one network call for all of them."""
    x = to_tensor(resize(np.asarray(crop, dtype=np.uint8), pipeline.model.input_size))
    cells = grid_cells(x.shape[-1], cell)
    if not 1 <= k < len(cells):
        raise ExplainError(f"k must be 1..{len(cells) - 1} (the grid has {len(cells)} cells), got {k}")
    chosen = [np.argsort(-cell_means(saliency, cells), kind="stable")[:k]]
    chosen += [np.random.default_rng(seed).choice(len(cells), k, replace=False) for seed in range(seeds)]
    batch = [x]
    for picks in chosen:
        hidden = x.clone()
        for i in picks:
            y0, y1, x0, x1 = cells[i]
            hidden[:, y0:y1, x0:x1] = GREY
        batch.append(hidden)
    scores = _scores(pipeline, torch.stack(batch), other, False)
    drops = scores[0] - scores[1:]
    return DeletionResult(float(scores[0]), float(drops[0]), [float(d) for d in drops[1:]])


# ---- outputs -------------------------------------------------------------------------------------
METHOD_TITLES = {"occlusion": "occlusion: drop in cosine", "gradient": "integrated gradients"}


def overlay_figure(explanation: Explanation) -> Any:
    """Rows: the two aligned crops, then each method's map over them (red: raises the
    similarity, blue: lowers it), with the score in the title."""
    plt = pyplot()
    methods = list(explanation.options.methods)
    fig, axes = plt.subplots(1 + len(methods), 2, figsize=(6.4, 3.1 * (1 + len(methods))), squeeze=False)
    for col, (face, label) in enumerate(zip(explanation.faces, ("A", "B"), strict=True)):
        axes[0, col].imshow(face.crop)
        axes[0, col].set_title(f"face {label} (aligned)", fontsize=9)
        for row, method in enumerate(methods, start=1):
            _overlay(fig, axes[row, col], face.crop, face.maps[method], f"{label}: {METHOD_TITLES[method]}")
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(_headline(explanation), fontsize=10)
    return fig


def _overlay(fig: Any, ax: Any, crop: np.ndarray, saliency: np.ndarray, title: str) -> None:
    limit = float(np.abs(saliency).max()) or 1.0  # symmetric, so white means zero
    ax.imshow(crop)
    shown = ax.imshow(saliency, cmap="RdBu_r", vmin=-limit, vmax=limit, alpha=0.6, interpolation="bilinear")
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.03)
    ax.set_title(title, fontsize=9)


def _headline(explanation: Explanation) -> str:
    verdict = ""
    if explanation.threshold is not None:
        same = "same person" if explanation.score >= explanation.threshold else "different people"
        verdict = f" ({same} at threshold {explanation.threshold:.3f})"
    return f"{explanation.model}: cosine {explanation.score:.3f}{verdict}"


def write_explanation(
    explanation: Explanation, out: str | Path, extra: dict[str, Any] | None = None
) -> dict[str, Path]:
    """explanation.json (score, options, top regions), explanation.png (the overlays) and
    maps.npz (the full maps: a_<method>, b_<method>) in `out`."""
    out = Path(out)
    paths = {"json": out / "explanation.json", "png": out / "explanation.png", "maps": out / "maps.npz"}
    write_json(paths["json"], {**explanation.summary(), **(extra or {})})
    save_figure(overlay_figure(explanation), paths["png"], dpi=110)
    maps = {f"{side}_{m}": v for side, f in zip("ab", explanation.faces, strict=True) for m, v in f.maps.items()}
    save_npz(paths["maps"], **maps)
    return paths


def overlay_png(explanation: Explanation) -> bytes:
    """The overlay figure as PNG bytes (for the service)."""
    with tempfile.TemporaryDirectory() as folder:
        return save_figure(overlay_figure(explanation), Path(folder) / "explanation.png", dpi=110).read_bytes()
