"""The one path from images to embeddings.

A `RecognitionPipeline` is a model seen through a detector and an alignment policy, with a
crop transform (the resolution loss of `--degrade`), flip test-time augmentation, a device and
a batch size. Every command embeds through it: `embed`, `eval`, `analyze`, `distill-targets`,
`verify` / `enroll` / `identify`, the trainer's validation and its on-the-fly teacher.

Input may be image paths, decoded RGB arrays, or batches of crops that are already aligned
(tensors in [-1, 1]). For each image the pipeline reports every face the detector found and the
embedding of the one it chose, so the service (all faces) and the protocols (one face per
image) share it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from facerec.align.kept import kept_from_crop, kept_from_landmarks, model_crop
from facerec.align.pipeline import DLIB_NATIVE, PRE_ALIGNED, AlignPolicy, NoFaceError, build_aligner
from facerec.align.types import Aligned, Face
from facerec.core.device import pick_device
from facerec.core.files import atomic_path, save_npz, write_json
from facerec.core.images import decode_image
from facerec.data.transforms import degrader, from_arcface_crop, to_tensor
from facerec.errors import DataError, FacerecError
from facerec.models.card import ThresholdRecord, arcface_template
from facerec.models.io import RecognitionModel, load_recognition_model

Image = str | Path | np.ndarray
CropTransform = Callable[[np.ndarray], np.ndarray]


@dataclass
class Embeddings:
    """Embeddings of a list of images, with and without flip augmentation (one pass)."""

    plain: np.ndarray  # L2-normalized embedding of each image
    flipped: np.ndarray  # L2-normalized (embedding + embedding of the mirror image)
    detected: np.ndarray  # bool: a face was detected (False: fallback crop or pre-aligned input)
    # norms before the L2 normalization (a quality signal for MagFace/AdaFace-style heads)
    norms: np.ndarray | None = None
    flipped_norms: np.ndarray | None = None

    def get(self, flip: bool) -> np.ndarray:
        return self.flipped if flip else self.plain

    def norm(self, flip: bool) -> np.ndarray | None:
        """Each row's norm before normalization (None when the embeddings were loaded without it)."""
        return self.flipped_norms if flip else self.norms

    def save(self, path: Path, names: Sequence[str | Path], **extra: np.ndarray) -> Path:
        """The embeddings .npz that `facerec eval`, the analysis cache and distillation targets
        share: plain, flipped, detected and the image names (plus any `extra` arrays)."""
        names_array = np.array([str(n) for n in names])
        return save_npz(
            path, plain=self.plain, flipped=self.flipped, detected=self.detected, names=names_array, **extra
        )


def write_embeddings(out: Path, paths: Sequence[Path], embeddings: np.ndarray) -> tuple[Path, Path]:
    """`out` (.npy, one row per image) and the image paths, in order, in the .json beside it."""
    np_path = out if out.suffix == ".npy" else out.with_suffix(".npy")
    with atomic_path(np_path) as tmp:
        np.save(tmp, embeddings)
    index = np_path.with_suffix(".json")
    write_json(index, [str(p) for p in paths], indent=1)
    return np_path, index


def rows_by_path(names: Sequence[str]) -> dict[str, int]:
    """The row of each image of an embeddings .npz, keyed by its resolved path."""
    return {str(Path(name).resolve()): i for i, name in enumerate(names)}


def stored_rows(
    names: Sequence[str], images: Sequence[Any], source: str | Path, labels: Sequence[str | None] | None = None
) -> np.ndarray:
    """The row of each of `images` among the `names` an embeddings .npz (`source`) stores: by the
    image's label where one is given and stored (the name `facerec eval` keeps for an image of a
    flat set), else by resolved path. An image found neither way is a DataError."""
    names = [str(n) for n in names]
    by_name = {n: i for i, n in enumerate(names)}
    by_path = rows_by_path(names)
    wanted = list(labels) if labels else [None] * len(images)
    index: list[int | None] = []
    for label, image in zip(wanted, images, strict=True):
        row = by_name.get(label) if label is not None else None
        if row is None and isinstance(image, str | Path):
            row = by_path.get(str(Path(image).resolve()))
        index.append(row)
    missing = [str(label or image) for label, image, row in zip(wanted, images, index, strict=True) if row is None]
    if missing:
        raise DataError(f"{len(missing)} of the protocol's images are not in {source} (first: {missing[0]})")
    return np.array(index)


@dataclass
class ImageResult:
    """What the pipeline saw in one image."""

    source: str
    faces: list[Face]  # every face the detector found (empty for pre-aligned input)
    face: Face | None  # the face that was embedded (None: fallback crop, or pre-aligned input)
    embedding: np.ndarray | None  # L2-normalized; None when there was no face to embed
    error: str | None = None  # why there is no embedding
    face_embeddings: list[np.ndarray] | None = None  # with every_face=True: one per entry of `faces`


class RecognitionPipeline:
    """model + detector + alignment policy + crop transform + flip + device + batch size."""

    def __init__(
        self,
        model: RecognitionModel,
        detector: str = "mtcnn",
        several: str = "largest",
        missing: str = "skip",
        degrade: int = 0,
        flip: bool = True,
        device: str | torch.device = "auto",
        batch_size: int = 32,
    ) -> None:
        self.model, self.detector, self.flip, self.batch_size = model, detector, flip, batch_size
        self.device = pick_device(str(device))
        self.net = model.net.to(self.device).eval()
        self.policy = AlignPolicy(several=several, missing=missing)
        size = (model.input_size, model.input_size)
        self.aligner = build_aligner(detector, model.template, size, self.policy, device=str(self.device))
        self.degrade = degrade
        self.transform: CropTransform | None = degrader(degrade, model.template) if degrade else None

    # ---- construction ---------------------------------------------------------------------
    @classmethod
    def load(cls, model: str | Path, runtime: str | None = None, **options: Any) -> RecognitionPipeline:
        """A pipeline over a named model ('default', 'dlib'), a model file / checkpoint or an ONNX
        file, run by `runtime`: 'torch', 'onnx' (onnxruntime) or None (the model's own)."""
        device = pick_device(str(options.get("device", "auto")))
        return cls(load_recognition_model(model, device, runtime), **{**options, "device": device})

    @classmethod
    def for_network(
        cls,
        net: nn.Module,
        input_size: int,
        device: str | torch.device = "cpu",
        flip: bool = True,
        batch_size: int = 256,
        framing: str = "arcface",
    ) -> RecognitionPipeline:
        """An in-memory backbone (e.g. during training) over aligned crops on `framing`'s template."""
        from facerec.models.card import ModelCard, framing_template

        card = ModelCard("in-memory", 0, input_size, *framing_template(framing, input_size), digest="")
        return cls(RecognitionModel(net, card), PRE_ALIGNED, flip=flip, device=device, batch_size=batch_size)

    # ---- description ----------------------------------------------------------------------
    @property
    def name(self) -> str:
        degraded = f", faces degraded to {self.degrade} px" if self.degrade else ""
        return f"{self.model.name}+{self.detector}{degraded}"

    def describe(self) -> dict[str, Any]:
        """The pipeline as reports and galleries record it."""
        return {
            "model": self.model.name,
            "model_digest": self.model.digest,
            "detector": self.detector,
            "several": self.policy.several,
            "missing": self.policy.missing,
            "degrade": self.degrade,
            "flip": self.flip,
        }

    def threshold(self) -> ThresholdRecord | None:
        """The model card's 'same person' threshold for this detector and flip setting."""
        return self.model.card.threshold_for(self.detector, self.flip)

    # ---- images -> crops ------------------------------------------------------------------
    def align(self, image: Image) -> Aligned:
        """The model's crop of an image (path or RGB array), following the alignment policy."""
        return self._align_array(_decoded(image), image)

    def _align_array(self, array: np.ndarray, image: Image) -> Aligned:
        """`align` of an image already decoded to `array` (`image` names it in errors)."""
        if self.aligner is None:
            aligned = Aligned(from_arcface_crop(array, self.model.template, self.model.input_size), None, [])
        else:
            try:
                aligned = self.aligner.align(array)
            except NoFaceError as exc:
                raise NoFaceError(
                    f"no face detected in {image}" if isinstance(image, str | Path) else str(exc)
                ) from exc
        if self.transform is not None:
            aligned.crop = self.transform(aligned.crop)
        return aligned

    # ---- crops -> embeddings --------------------------------------------------------------
    @torch.no_grad()
    def embed_tensors(self, images: torch.Tensor, flip: bool | None = None) -> torch.Tensor:
        """L2-normalized embeddings of a batch of crops (N, 3, H, W) in [-1, 1], resized to the
        model's input when they differ; with flip, the sum of each crop's and its mirror's."""
        flip = self.flip if flip is None else flip
        images = self._model_input(images)
        was_training = self.net.training
        self.net.eval()
        emb = self._infer(images).float()
        if flip:
            emb = emb + self._infer(images.flip(3)).float()
        self.net.train(was_training)
        return F.normalize(emb, dim=1)

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The network's raw output for crops (N, 3, H, W) in [-1, 1]: no L2 normalization and no
        flip, so its norm is kept (it carries quality for MagFace/AdaFace-trained models)."""
        was_training = self.net.training
        self.net.eval()
        features = self._infer(self._model_input(images)).float()
        self.net.train(was_training)
        return features

    def _infer(self, images: torch.Tensor) -> torch.Tensor:
        """The network's output without autograd, on onnxruntime where the auto runtime measured
        it faster for this batch size (`RecognitionModel.inference_net`)."""
        return self.model.inference_net(len(images))(images)

    def _model_input(self, images: torch.Tensor) -> torch.Tensor:
        """Crops on the pipeline's device, resized to the model's input when they differ."""
        size = self.model.input_size
        images = images.to(self.device)
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return images

    @torch.no_grad()
    def _both(self, crops: torch.Tensor, mirror: bool = True) -> tuple[torch.Tensor, ...]:
        """(plain, flip-summed) L2-normalized embeddings and their norms before normalization,
        with one forward pass per direction; without `mirror`, one pass and the flip-summed
        columns repeat the plain ones."""
        crops = crops.to(self.device)
        emb = self._infer(crops).float()
        summed = emb + self._infer(crops.flip(3)).float() if mirror else emb
        normalized = (F.normalize(emb, dim=1).cpu(), F.normalize(summed, dim=1).cpu())
        return *normalized, emb.norm(dim=1).cpu(), summed.norm(dim=1).cpu()

    def embed(
        self, images: Sequence[Image], progress: bool = True, desc: str = "embedding", mirror: bool = True
    ) -> Embeddings:
        """One embedding per image for the protocols: with and without flip, in one pass (without
        `mirror`, at half the cost, `flipped` repeats `plain`). Images without a face follow the
        policy (missing='center': a centered crop; 'skip': an error)."""
        parts: list[tuple[torch.Tensor, ...]] = []  # (plain, flipped, norm, flipped norm) per batch
        detected = []
        for batch in self._batches(images, progress, desc):
            aligned = [self.align(image) for image in batch]
            parts.append(self._both(torch.stack([to_tensor(a.crop) for a in aligned]), mirror))
            detected.extend(a.face is not None for a in aligned)
        if not parts:
            raise DataError("nothing to embed: the image list is empty")
        plain, flipped, norms, flipped_norms = (torch.cat(column).numpy() for column in zip(*parts, strict=True))
        return Embeddings(plain, flipped, np.array(detected, dtype=bool), norms, flipped_norms)

    def embed_dataset(self, dataset: Any, num_workers: int = 0) -> np.ndarray:
        """Embeddings of every image of a FaceDataset (aligned crops, no augmentation), in order."""
        loader = torch.utils.data.DataLoader(dataset, batch_size=self.batch_size, num_workers=num_workers)
        return torch.cat([self.embed_tensors(images).cpu() for images, *_ in loader]).numpy()

    def represent(self, image: Image) -> np.ndarray:
        """The embedding of the chosen face of one image; NoFaceError when it shows none."""
        crop = self.align(image).crop
        return self.embed_tensors(to_tensor(crop)[None])[0].cpu().numpy()

    # ---- crops a gallery keeps (align/kept.py), for a later model -------------------------------
    def represent_keeping_crop(self, image: Image) -> tuple[np.ndarray, np.ndarray]:
        """`represent`, and the face's crop in the model-independent kept frame."""
        array = _decoded(image)
        aligned = self._align_array(array, image)
        embedding = self.embed_tensors(to_tensor(aligned.crop)[None])[0].cpu().numpy()
        return embedding, self._kept_crop(array, aligned)

    def _kept_crop(self, array: np.ndarray, aligned: Aligned) -> np.ndarray:
        if self.aligner is None:  # pre-aligned input: the image is a crop on the ArcFace template
            return kept_from_crop(array, np.asarray(arcface_template(array.shape[1])))
        if aligned.face is not None and self.detector != DLIB_NATIVE:  # dlib's own landmarks are other points
            return kept_from_landmarks(array, aligned.face.landmarks)
        return kept_from_crop(aligned.crop, np.asarray(self.model.template))

    def embed_kept(self, kept: Sequence[np.ndarray], progress: bool = True) -> np.ndarray:
        """L2-normalized embeddings (with the pipeline's flip setting) of kept crops, each cut
        for this model first."""
        parts = []
        for batch in self._batches(kept, progress, "embedding kept crops"):
            crops = [model_crop(k, np.asarray(self.model.template), self.model.input_size) for k in batch]
            crops = [self.transform(c) for c in crops] if self.transform is not None else crops
            parts.append(self.embed_tensors(torch.stack([to_tensor(c) for c in crops])).cpu())
        return torch.cat(parts).numpy() if parts else np.zeros((0, self.model.card.embedding_size), np.float32)

    def run(self, images: Sequence[Image], every_face: bool = False, progress: bool = False) -> list[ImageResult]:
        """For each image: every face found, the chosen face and its embedding (and, with
        every_face, an embedding per face found). An image with no face or that cannot be read
        gets an error instead of stopping the batch."""
        results = []
        for batch in self._batches(images, progress, "recognizing"):
            results.extend(self._run_batch(batch, every_face))
        return results

    def _run_batch(self, batch: Sequence[Image], every_face: bool) -> list[ImageResult]:
        results, crops, owners = [], [], []
        for image in batch:
            source = str(image) if isinstance(image, str | Path) else "<array>"
            try:
                array = _decoded(image)  # once: every_face crops the same pixels again
                aligned = self._align_array(array, image)
            except (NoFaceError, DataError) as exc:
                results.append(ImageResult(source, [], None, None, error=str(exc)))
                continue
            result = ImageResult(source, aligned.faces, aligned.face, None)
            results.append(result)
            face_crops = self._every_face_crops(array, aligned) if every_face and aligned.faces else [aligned.crop]
            crops.extend(to_tensor(crop) for crop in face_crops)
            owners.append((result, len(face_crops)))
        if crops:
            embeddings = self.embed_tensors(torch.stack(crops)).cpu().numpy()
            start = 0
            for result, count in owners:
                _attach(result, list(embeddings[start : start + count]), every_face)
                start += count
        return results

    def _every_face_crops(self, array: np.ndarray, aligned: Aligned) -> list[np.ndarray]:
        """The crop of each face found, in order (the chosen face's among them)."""
        if not hasattr(self.aligner, "crop"):
            raise FacerecError(f"detector '{self.detector}' cannot crop every face; use mtcnn or dlib")
        crops = [self.aligner.crop(array, face) for face in aligned.faces]  # type: ignore[union-attr]
        return [self.transform(c) if self.transform else c for c in crops]

    def _batches(self, images: Sequence[Image], progress: bool, desc: str) -> Iterator[Sequence[Image]]:
        bar = tqdm(total=len(images), desc=desc, unit="img", disable=not progress, dynamic_ncols=True)
        for start in range(0, len(images), self.batch_size):
            batch = images[start : start + self.batch_size]
            yield batch
            bar.update(len(batch))
        bar.close()


def _attach(result: ImageResult, embeddings: list[np.ndarray], every_face: bool) -> None:
    """One embedding per face found (every_face), the chosen face's among them; else the
    chosen face's (or the fallback crop's) alone."""
    if every_face and result.faces:
        result.face_embeddings = embeddings
        chosen = next(i for i, face in enumerate(result.faces) if face is result.face)
        result.embedding = embeddings[chosen]
    else:
        result.embedding = embeddings[0]


def _decoded(image: Image) -> np.ndarray:
    return decode_image(image) if isinstance(image, str | Path) else _rgb(image)


def _rgb(image: Any) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise DataError(f"an image array must be uint8 RGB of shape (H, W, 3), got {array.dtype} {array.shape}")
    return array
