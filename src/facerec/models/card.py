"""What a model file says about itself: the card.

A recognition model is more than weights: the crop it expects (size, template of the five
landmarks, pixel normalization), its embedding size, its identity (a digest of its content:
two runs never share one, so a gallery can tell them apart) and the 'same person' thresholds
measured for it, each keyed by the pipeline it was measured on (detector, flip, data).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from facerec.core.geometry import ARCFACE_112, FRAMINGS, framing_points
from facerec.errors import FacerecError

CARD_VERSION = 2
# Every facerec network takes RGB in [-1, 1]: (pixel - 127.5) / 127.5.
DEFAULT_NORMALIZATION = {"channels": "RGB", "mean": 127.5, "std": 127.5}


@dataclass(frozen=True)
class ThresholdRecord:
    """A cosine 'same person' threshold and the pipeline it was measured on."""

    value: float
    detector: str  # how the faces were found and aligned: mtcnn, dlib, dlib-native, none (pre-aligned crops)
    flip: bool  # embeddings summed with the mirror image's
    data: str  # which faces, e.g. "LFW View 2, 10 folds" or "200 held-out identities of ..."
    target_far: float | None = None  # None: the accuracy-maximizing threshold

    def describe(self) -> str:
        flip = "flip" if self.flip else "no flip"
        aim = f"FAR {self.target_far:g}" if self.target_far is not None else "best accuracy"
        return f"{self.value:.4f} ({self.detector}, {flip}, {aim} on {self.data})"


@dataclass
class ModelCard:
    architecture: str  # backbone registry name
    embedding_size: int
    input_size: int
    template_name: str
    template: list[list[float]]  # five landmarks in the input_size x input_size crop
    digest: str  # content identity: architecture, options and weights
    options: dict[str, Any] = field(default_factory=dict)
    normalization: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_NORMALIZATION))
    thresholds: list[ThresholdRecord] = field(default_factory=list)
    name: str = ""  # what people call it ('default', 'dlib', a run's folder); not its identity
    notes: str = ""

    @property
    def template_points(self) -> np.ndarray:
        return np.asarray(self.template, dtype=np.float64)

    @property
    def short_id(self) -> str:
        return f"{self.name or self.architecture}@{self.digest[:12]}"

    def threshold_for(self, detector: str, flip: bool) -> ThresholdRecord | None:
        """The threshold measured on this pipeline; else one measured with the same flip setting
        (a crop aligned by any detector looks alike to the network); else any."""
        for match in (
            lambda r: r.detector == detector and r.flip == flip,
            lambda r: r.flip == flip,
            lambda r: True,
        ):
            found = [r for r in self.thresholds if match(r)]
            if found:
                return found[-1]  # the newest record wins
        return None

    def with_threshold(self, record: ThresholdRecord) -> ModelCard:
        """A copy whose record for the same pipeline and target is replaced by `record`."""
        same = (record.detector, record.flip, record.data, record.target_far)
        kept = [r for r in self.thresholds if (r.detector, r.flip, r.data, r.target_far) != same]
        return ModelCard(**{**self.to_dict(), "thresholds": [*kept, record]})

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["thresholds"] = [ThresholdRecord(**r) for r in data["thresholds"]]
        return data

    def to_json(self) -> dict[str, Any]:
        return {"version": CARD_VERSION, **asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ModelCard:
        data = {k: v for k, v in data.items() if k != "version"}
        try:
            data["thresholds"] = [ThresholdRecord(**r) for r in data.get("thresholds", [])]
            return cls(**data)
        except TypeError as exc:
            raise FacerecError(f"unreadable model card: {exc}") from exc


def arcface_template(input_size: int) -> list[list[float]]:
    """The ArcFace five-point template scaled to a square crop of `input_size`."""
    return (ARCFACE_112 * input_size / 112.0).tolist()


def backbone_config_of(card: ModelCard) -> dict[str, Any]:
    """The backbone config a facerec card was made from (the inverse of `card_for_backbone`)."""
    framing = card.template_name.split("_")[0]
    return {
        "name": card.architecture,
        "embedding_size": card.embedding_size,
        "input_size": card.input_size,
        "options": dict(card.options),
        "template": framing if framing in FRAMINGS else "arcface",
    }


def framing_template(framing: str, input_size: int) -> tuple[str, list[list[float]]]:
    """The card's (template_name, template) of a backbone trained on `framing` ('arcface',
    'dlib') at `input_size`, e.g. ('arcface_112', ...) or ('dlib_150@128', ...)."""
    side = FRAMINGS[framing][1]
    name = f"{framing}_{side}" if input_size == side else f"{framing}_{side}@{input_size}"
    return name, framing_points(framing, input_size).tolist()


def content_digest(architecture: dict[str, Any], state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the architecture (name, sizes, options) and every tensor, in key order."""
    h = hashlib.sha256(json.dumps(architecture, sort_keys=True, default=str).encode())
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(tensor.dtype).encode())
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.view(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h.hexdigest()


def file_digest(path: Any, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (for models that come as a vendor file, e.g. dlib's)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def card_for_backbone(
    backbone_cfg: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    thresholds: list[ThresholdRecord] | None = None,
    name: str = "",
    notes: str = "",
) -> ModelCard:
    """The card of a facerec backbone from its config dict (name, embedding_size, input_size,
    template, options) and weights."""
    size = int(backbone_cfg["input_size"])
    framing = backbone_cfg.get("template", "arcface")
    template_name, template = framing_template(framing, size)
    architecture = {
        "name": backbone_cfg["name"],
        "embedding_size": int(backbone_cfg["embedding_size"]),
        "input_size": size,
        "options": dict(backbone_cfg.get("options") or {}),
    }
    if framing != "arcface":  # the digests of models on the ArcFace framing stay what they were
        architecture["template"] = framing
    return ModelCard(
        architecture=architecture["name"],
        embedding_size=architecture["embedding_size"],
        input_size=size,
        template_name=template_name,
        template=template,
        digest=content_digest(architecture, state_dict),
        options=architecture["options"],
        thresholds=list(thresholds or []),
        name=name,
        notes=notes,
    )
