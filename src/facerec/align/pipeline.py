"""Detect, pick one face, align it to a template; and the same over a whole folder tree."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from facerec.core.geometry import TEMPLATES, umeyama, warp_affine
from facerec.align.types import Face
from facerec.data.datasets import IMAGE_EXTENSIONS, decode_image
from facerec.errors import DataError, FacerecError
from facerec.registry import Registry

DETECTORS: Registry[Any] = Registry("face detector")


@DETECTORS.register("mtcnn")
def mtcnn(device: str = "cpu", min_face_size: int = 20) -> Any:
    from facerec.align.mtcnn import MTCNN

    return MTCNN(min_face_size=min_face_size, device=device)


@DETECTORS.register("dlib")
def dlib_hog(upsample: int = 1) -> Any:
    from facerec.align.dlib_models import DlibHOG

    return DlibHOG(upsample=upsample)


class NoFaceError(FacerecError):
    """No face was found in an image (and the policy says not to guess)."""


@dataclass
class AlignPolicy:
    several: str = "central"  # several faces: central | largest | best (score)
    missing: str = "skip"  # no face: skip (error) | center (assume a centered face)
    center_fraction: float = 0.56  # with missing=center: crop side / shorter image side

    def __post_init__(self) -> None:
        if self.several not in ("central", "largest", "best"):
            raise FacerecError(f"several-faces policy must be central, largest or best, got '{self.several}'")
        if self.missing not in ("skip", "center"):
            raise FacerecError(f"no-face policy must be skip or center, got '{self.missing}'")


def choose_face(faces: list[Face], shape: tuple[int, ...], rule: str) -> Face:
    if rule == "largest":
        return max(faces, key=lambda f: f.area)
    if rule == "best":
        return max(faces, key=lambda f: f.score)
    center = np.array([shape[1] / 2, shape[0] / 2])
    # central: nearest to the image center, ties (and near ties) to the larger face
    return min(faces, key=lambda f: np.linalg.norm(f.center - center) - 0.1 * np.sqrt(f.area))


def centered_landmarks(
    shape: tuple[int, ...], template: np.ndarray, size: tuple[int, int], fraction: float
) -> np.ndarray:
    """Where the template's landmarks fall if the crop is the central square of the image."""
    side = fraction * min(shape[0], shape[1])
    origin = np.array([(shape[1] - side) / 2, (shape[0] - side) / 2])
    return origin + np.asarray(template) * side / np.array(size, dtype=np.float64)


@dataclass
class Aligned:
    crop: np.ndarray
    face: Face | None  # None when the crop is the no-face fallback
    faces_found: int


class Aligner:
    """detector + face choice + similarity warp onto a template."""

    def __init__(
        self,
        detector: Any,
        template: np.ndarray | str = "arcface_112",
        size: tuple[int, int] | None = None,
        policy: AlignPolicy | None = None,
    ) -> None:
        if isinstance(template, str):
            if template not in TEMPLATES:
                raise FacerecError(f"unknown template '{template}' ({', '.join(TEMPLATES)})")
            template, default = TEMPLATES[template]
            size = size or default
        if size is None:
            raise FacerecError("a custom template needs an output size")
        self.detector, self.template, self.size = detector, np.asarray(template), size
        self.policy = policy or AlignPolicy()

    def align(self, image: np.ndarray) -> Aligned:
        faces = self.detector.detect(image)
        if faces:
            face = choose_face(faces, image.shape, self.policy.several)
            return Aligned(warp_affine(image, umeyama(face.landmarks, self.template), self.size), face, len(faces))
        if self.policy.missing == "center":
            marks = centered_landmarks(image.shape, self.template, self.size, self.policy.center_fraction)
            return Aligned(warp_affine(image, umeyama(marks, self.template), self.size), None, 0)
        raise NoFaceError("no face detected")

    def align_file(self, path: str | Path) -> Aligned:
        try:
            return self.align(decode_image(path))
        except NoFaceError as exc:
            raise NoFaceError(f"no face detected in {path}") from exc


# ---- a whole tree, in worker processes -------------------------------------------------
_worker: Aligner | None = None


def _init_worker(detector: str, template: str, size: tuple[int, int] | None, policy: dict[str, Any]) -> None:
    global _worker
    import torch

    torch.set_num_threads(1)
    _worker = Aligner(DETECTORS.build(detector), template, size, AlignPolicy(**policy))


def _align_one(job: tuple[str, str]) -> tuple[str, str, str]:
    """(source, destination) -> (source, status, detail); never raises."""
    src, dst = job
    assert _worker is not None
    try:
        result = _worker.align_file(src)
    except (NoFaceError, DataError) as exc:
        return src, "failed", str(exc)
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(dst).with_name(Path(dst).name + ".tmp")
    Image.fromarray(result.crop).save(tmp, format="PNG" if dst.endswith(".png") else "JPEG", quality=95)
    tmp.replace(dst)
    status = "aligned" if result.face is not None else "fallback"
    return src, status, f"{result.faces_found} faces" if result.faces_found > 1 else ""


def image_files(root: Path) -> Iterator[Path]:
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                yield Path(dirpath) / name


def align_tree(
    src: str | Path,
    dst: str | Path,
    detector: str = "mtcnn",
    template: str = "arcface_112",
    size: tuple[int, int] | None = None,
    policy: AlignPolicy | None = None,
    workers: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Align every image under src into the same relative path under dst.

    Images whose output exists are skipped, so an interrupted run resumes. Failures (no
    face, unreadable file) go to dst/failures.tsv; counts to dst/align_summary.json.
    """
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise DataError(f"source folder not found: {src}")
    policy = policy or AlignPolicy()
    jobs, skipped = [], 0
    for path in image_files(src):
        out = dst / path.relative_to(src)
        if out.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            out = out.with_suffix(".png")
        if out.exists():
            skipped += 1
        else:
            jobs.append((str(path), str(out)))
    if not jobs and not skipped:
        raise DataError(f"no images under {src}")
    DETECTORS.get(detector)  # fail early on an unknown name
    counts = {"aligned": 0, "fallback": 0, "failed": 0, "already_done": skipped}
    failures, several = [], 0
    init = (detector, template, size, asdict(policy))
    dst.mkdir(parents=True, exist_ok=True)
    bar = tqdm(total=len(jobs), unit="img", desc=f"aligning ({detector})", disable=not progress)
    with ProcessPoolExecutor(max(1, workers), initializer=_init_worker, initargs=init) as pool:
        for source, status, detail in pool.map(_align_one, jobs, chunksize=8):
            counts[status] += 1
            several += detail.endswith("faces")
            if status == "failed":
                failures.append(f"{source}\t{detail}")
            bar.update()
    bar.close()
    (dst / "failures.tsv").write_text("".join(line + "\n" for line in failures))
    summary = {**counts, "several_faces": several, "detector": detector, "template": template, "policy": asdict(policy)}
    (dst / "align_summary.json").write_text(json.dumps(summary, indent=2))
    return summary
