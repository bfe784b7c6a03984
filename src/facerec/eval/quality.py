"""Face quality: how much a face can be trusted for recognition, as a score in [0, 1] (higher is
better), and its validation by error-versus-discard curves (EDC).

Scorers (`QUALITY`, by name), each a pure function of a recognition pipeline and aligned crops:

- `stability` (SER-FIQ-like, Terhoerst et al. 2020, with deterministic perturbations instead of
  dropout): the same crop is embedded under several small perturbations (sub-pixel shift, scale
  jitter, mirror, light noise; the same seeded set for every face) and the score is the mean
  pairwise cosine of those embeddings, clipped to [0, 1]. 1: the embedding does not move; a
  blurred, tiny, occluded or badly aligned face moves more. Works for every model (dlib too).
- `feature_norm` (MagFace, Meng et al. 2021; AdaFace): the norm of the network's raw output,
  mapped linearly from [low, high] onto [0, 1] (clipped). Meaningful for models trained with a
  norm-aware head; the defaults are MagFace's l_a = 10, u_a = 110.
- `detector` (the service's former provisional score): detector confidence x face size x
  frontality, from the detected face alone (no model call); a baseline, and the fallback
  where there is no crop.

EDC (Grother & Tabassi 2007; ISO/IEC 29794-1): a pair's quality is the lower of its two faces';
the decision threshold is set once on all pairs at a target FMR and kept fixed; the genuine
pairs of lowest quality are discarded a fraction at a time and the FNMR of the rest is plotted.
A useful score makes the curve fall faster than random discarding (whose expected curve is
flat: removing random pairs leaves the FNMR unchanged on average).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from facerec.align.types import Face
from facerec.errors import DataError, FacerecError
from facerec.pipeline import RecognitionPipeline
from facerec.registry import Registry


class QualityScorer(Protocol):
    name: str
    needs_crops: bool  # False: the detected face alone suffices

    def __call__(
        self, pipeline: RecognitionPipeline, crops: torch.Tensor, faces: Sequence[Face | None] | None = None
    ) -> np.ndarray:
        """One score in [0, 1] per crop (N, 3, H, W) in [-1, 1] (or per face, when the scorer
        needs no crop)."""
        ...


QUALITY: Registry[QualityScorer] = Registry("quality scorer")
DEFAULT_SCORER = "stability"


def build_scorer(name: str = DEFAULT_SCORER, options: dict[str, Any] | None = None) -> QualityScorer:
    return QUALITY.build(name, **(options or {}))


# ---- stability under perturbations ---------------------------------------------------------
@dataclass(frozen=True)
class Perturbation:
    """A small geometric change of a crop: shift (in pixels of a 112-pixel crop), zoom, mirror."""

    dx: float
    dy: float
    scale: float
    mirror: bool

    def theta(self) -> torch.Tensor:
        """The affine_grid matrix (output -> input, normalized coordinates) of this change."""
        tx, ty = 2 * self.dx / 112, 2 * self.dy / 112  # normalized coordinates span 2
        sx = (-1.0 if self.mirror else 1.0) / self.scale
        return torch.tensor([[sx, 0.0, tx], [0.0, 1.0 / self.scale, ty]], dtype=torch.float32)


def perturbations(count: int, shift: float, scale: float, mirror: bool, seed: int) -> list[Perturbation]:
    """`count` perturbations drawn with `seed`: shifts uniform in +-shift px, zoom in 1 +- scale,
    every second one mirrored (when `mirror`)."""
    rng = np.random.default_rng(seed)
    return [
        Perturbation(
            float(rng.uniform(-shift, shift)),
            float(rng.uniform(-shift, shift)),
            float(1 + rng.uniform(-scale, scale)),
            mirror and k % 2 == 1,
        )
        for k in range(count)
    ]


@QUALITY.register("stability")
@dataclass
class Stability:
    """Mean pairwise cosine of a crop's embeddings under `count` perturbations, clipped to [0, 1]."""

    count: int = 4  # two plain, two mirrored: each costs one forward pass per face
    shift: float = 1.5  # pixels of a 112-pixel crop
    scale: float = 0.05
    noise: float = 0.03  # std of Gaussian noise, in the [-1, 1] pixel range
    mirror: bool = True
    seed: int = 0
    name: ClassVar[str] = "stability"
    needs_crops: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.count < 2:
            raise FacerecError(f"stability needs at least 2 perturbations, got count={self.count}")

    def perturb(self, crops: torch.Tensor) -> torch.Tensor:
        """(N * count, 3, H, W): each crop's perturbations, one crop after the other. The noise is
        one seeded pattern per perturbation, the same for every crop, so a face's score never
        depends on the other faces of the batch."""
        n, channels, height, width = crops.shape
        theta = torch.stack([p.theta() for p in self._perturbations()])  # (K, 2, 3)
        grid = F.affine_grid(theta, [self.count, channels, height, width], align_corners=False)
        grid = grid.repeat(n, 1, 1, 1).to(crops.device)
        repeated = crops.float().repeat_interleave(self.count, dim=0)
        warped = F.grid_sample(repeated, grid, mode="bilinear", padding_mode="border", align_corners=False)
        generator = torch.Generator().manual_seed(self.seed)
        noise = torch.randn((self.count, channels, height, width), generator=generator) * self.noise
        return (warped + noise.repeat(n, 1, 1, 1).to(crops.device)).clamp(-1.0, 1.0)

    def _perturbations(self) -> list[Perturbation]:
        return perturbations(self.count, self.shift, self.scale, self.mirror, self.seed)

    def __call__(
        self, pipeline: RecognitionPipeline, crops: torch.Tensor, faces: Sequence[Face | None] | None = None
    ) -> np.ndarray:
        if not len(crops):
            return np.zeros(0)
        emb = pipeline.embed_tensors(self.perturb(crops), flip=False).cpu().double()  # one model call
        emb = emb.reshape(len(crops), self.count, -1)
        # mean over the K(K-1) ordered pairs of unit vectors: (|sum|^2 - K) / (K (K - 1))
        total = emb.sum(1).pow(2).sum(1)
        agreement = (total - self.count) / (self.count * (self.count - 1))
        return agreement.clamp(0.0, 1.0).numpy()


# ---- feature norm --------------------------------------------------------------------------
@QUALITY.register("feature_norm")
@dataclass
class FeatureNorm:
    """(|f| - low) / (high - low), clipped to [0, 1], with f the un-normalized embedding."""

    low: float = 10.0
    high: float = 110.0
    name: ClassVar[str] = "feature_norm"
    needs_crops: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not self.high > self.low:
            raise FacerecError(f"feature_norm needs low < high, got low={self.low}, high={self.high}")

    def norms(self, pipeline: RecognitionPipeline, crops: torch.Tensor) -> np.ndarray:
        return pipeline.features(crops).double().norm(dim=1).cpu().numpy()

    def __call__(
        self, pipeline: RecognitionPipeline, crops: torch.Tensor, faces: Sequence[Face | None] | None = None
    ) -> np.ndarray:
        if not len(crops):
            return np.zeros(0)
        return np.clip((self.norms(pipeline, crops) - self.low) / (self.high - self.low), 0.0, 1.0)


# ---- the detector's view (provisional baseline) --------------------------------------------
@QUALITY.register("detector")
@dataclass
class DetectorQuality:
    """`face_quality` of each detected face (0 where no face was detected)."""

    name: ClassVar[str] = "detector"
    needs_crops: ClassVar[bool] = False

    def __call__(
        self, pipeline: RecognitionPipeline, crops: torch.Tensor, faces: Sequence[Face | None] | None = None
    ) -> np.ndarray:
        if faces is None:
            raise FacerecError("the detector quality needs the detected faces: pre-aligned crops have none")
        size = pipeline.model.input_size
        return np.array([0.0 if face is None else face_quality(face, size) for face in faces])


def face_quality(face: Face, reference_size: int) -> float:
    """Detector score x size x frontality, in [0, 1].

    size: the face's shorter box side over the model's input size, capped at 1 (a smaller face
    is upsampled and has lost detail). frontality: how evenly the nose tip sits between the eyes
    (1 when centered, 0 when it is outside them: a profile)."""
    width, height = face.box[2] - face.box[0], face.box[3] - face.box[1]
    size = float(np.clip(min(width, height) / reference_size, 0.0, 1.0))
    left_eye, right_eye, nose = face.landmarks[0], face.landmarks[1], face.landmarks[2]
    to_left, to_right = nose[0] - left_eye[0], right_eye[0] - nose[0]
    frontal = float(min(to_left, to_right) / max(to_left, to_right)) if min(to_left, to_right) > 0 else 0.0
    return float(np.clip(face.score, 0.0, 1.0)) * size * frontal


# ---- error-versus-discard curves -----------------------------------------------------------
def fmr_threshold(impostor_scores: np.ndarray, fmr: float) -> float:
    """The lowest threshold t (accept: score >= t) with FMR(t) <= fmr on these impostor scores:
    just above the (k+1)-th highest impostor score, k = floor(fmr * impostors)."""
    scores = np.sort(np.asarray(impostor_scores, dtype=np.float64))[::-1]
    if not len(scores):
        raise DataError("an FMR threshold needs impostor pairs")
    allowed = int(np.floor(fmr * len(scores) + 1e-9))
    if allowed >= len(scores):
        return float(scores[-1])
    return float(np.nextafter(scores[allowed], np.inf))


@dataclass
class DiscardCurve:
    """FNMR of the genuine pairs kept after discarding the lowest-quality fraction."""

    fractions: np.ndarray  # discarded fraction of the genuine pairs: 0, 1/G, 2/G, ...
    fnmr: np.ndarray

    def area(self, up_to: float | None = None) -> float:
        """Area under the curve from 0 to `up_to` (default: its end), trapezoids."""
        keep = self.fractions <= (self.fractions[-1] if up_to is None else up_to) + 1e-12
        return float(np.trapezoid(self.fnmr[keep], self.fractions[keep]))


def discard_curve(
    genuine_scores: np.ndarray, genuine_quality: np.ndarray, threshold: float, max_discard: float = 0.5
) -> DiscardCurve:
    """EDC of the genuine pairs: the k lowest-quality pairs discarded for k = 0 .. floor(max_discard
    * G) (ties in quality keep the pairs' order), FNMR = rejected kept pairs / kept pairs."""
    return _curve(np.argsort(np.asarray(genuine_quality), kind="stable"), genuine_scores, threshold, max_discard)


def _curve(order: np.ndarray, genuine_scores: np.ndarray, threshold: float, max_discard: float) -> DiscardCurve:
    total = len(order)
    if not total:
        raise DataError("an error-versus-discard curve needs genuine pairs")
    rejected = (np.asarray(genuine_scores, dtype=np.float64)[order] < threshold).astype(np.int64)
    rejected_from = np.concatenate([np.cumsum(rejected[::-1])[::-1], [0]])  # rejects among order[k:]
    discarded = np.arange(int(np.floor(max_discard * total + 1e-9)) + 1)
    return DiscardCurve(discarded / total, rejected_from[discarded] / (total - discarded))


@dataclass
class RandomDiscard:
    """EDCs of random discard orders: the reference a quality score must beat."""

    curves: np.ndarray  # (orders, points): FNMR of each order
    fractions: np.ndarray

    @property
    def mean(self) -> DiscardCurve:
        return DiscardCurve(self.fractions, self.curves.mean(0))

    def areas(self, up_to: float | None = None) -> np.ndarray:
        return np.array([DiscardCurve(self.fractions, fnmr).area(up_to) for fnmr in self.curves])

    def band(self, low: float = 5, high: float = 95) -> tuple[np.ndarray, np.ndarray]:
        """Per discarded fraction, the `low` and `high` percentiles of the FNMR over the orders."""
        return np.percentile(self.curves, low, axis=0), np.percentile(self.curves, high, axis=0)


def random_discard_curve(
    genuine_scores: np.ndarray, threshold: float, max_discard: float = 0.5, repeats: int = 100, seed: int = 0
) -> RandomDiscard:
    """The EDCs of `repeats` random discard orders (seeded)."""
    rng = np.random.default_rng(seed)
    orders = [rng.permutation(len(genuine_scores)) for _ in range(repeats)]
    curves = [_curve(order, genuine_scores, threshold, max_discard) for order in orders]
    return RandomDiscard(np.stack([c.fnmr for c in curves]), curves[0].fractions)


def oracle_discard_curve(genuine_scores: np.ndarray, threshold: float, max_discard: float = 0.5) -> DiscardCurve:
    """The best any quality score could do: the false non-matches discarded first, lowest score
    first."""
    return _curve(np.argsort(np.asarray(genuine_scores), kind="stable"), genuine_scores, threshold, max_discard)


def pair_quality(quality: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """A pair is as good as its worse face."""
    return np.minimum(quality[left], quality[right])


def scorer_options(names: Sequence[str], items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """{scorer: options} from SCORER.KEY=VALUE items (values read as YAML: 4, 0.5, true), each
    name checked against the registry and each option against its scorer."""
    import yaml

    options: dict[str, dict[str, Any]] = {name: {} for name in names}
    for item in items:
        key, sep, value = item.partition("=")
        name, dot, option = key.partition(".")
        if not sep or not dot:
            raise FacerecError(f"a scorer option is SCORER.KEY=VALUE (e.g. stability.count=4), got '{item}'")
        if name not in options:
            raise FacerecError(f"option '{item}' is for scorer '{name}', which is not among {list(names)}")
        options[name][option] = yaml.safe_load(value)
    for name, given in options.items():
        build_scorer(name, given)  # an unknown scorer or option fails here, with the valid ones
    return options
