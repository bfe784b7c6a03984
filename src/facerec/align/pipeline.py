"""Detect, pick one face, align it to a template; and the same over a whole folder tree."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from facerec.align.pose_files import LANDMARKS_FILE, landmarks_line
from facerec.align.types import Aligned, Face, choose_face
from facerec.core.files import save_image, write_json, write_text
from facerec.core.geometry import TEMPLATES, umeyama, warp_affine
from facerec.core.images import decode_image, image_files, require_folder
from facerec.errors import DataError, FacerecError
from facerec.registry import Registry

DETECTORS: Registry[Any] = Registry("face detector")


@DETECTORS.register("mtcnn")
def mtcnn(device: str = "cpu", min_face_size: int = 20) -> Any:
    from facerec.align.mtcnn import MTCNN

    return MTCNN(min_face_size=min_face_size, device=device)


@DETECTORS.register("dlib")
def dlib_hog(upsample: int = 1, device: str = "cpu") -> Any:  # dlib's HOG runs on the CPU
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


def centered_landmarks(
    shape: tuple[int, ...], template: np.ndarray, size: tuple[int, int], fraction: float
) -> np.ndarray:
    """Where the template's landmarks fall if the crop is the central square of the image."""
    side = fraction * min(shape[0], shape[1])
    origin = np.array([(shape[1] - side) / 2, (shape[0] - side) / 2])
    return origin + np.asarray(template) * side / np.array(size, dtype=np.float64)


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
            return Aligned(self.crop(image, face), face, faces)
        if self.policy.missing == "center":
            marks = centered_landmarks(image.shape, self.template, self.size, self.policy.center_fraction)
            return Aligned(warp_affine(image, umeyama(marks, self.template), self.size), None, [])
        raise NoFaceError("no face detected")

    def crop(self, image: np.ndarray, face: Face) -> np.ndarray:
        """The crop of one detected face, its landmarks moved onto the template."""
        return warp_affine(image, umeyama(face.landmarks, self.template), self.size)

    def align_file(self, path: str | Path) -> Aligned:
        try:
            return self.align(decode_image(path))
        except NoFaceError as exc:
            raise NoFaceError(f"no face detected in {path}") from exc


# Detector names that are not detectors: how to treat input that needs no detection.
PRE_ALIGNED = "none"  # the images are aligned crops already: only resized to the model's input
DLIB_NATIVE = "dlib-native"  # dlib's own HOG + 5-point + face chip pipeline (for the dlib model)


def detector_names() -> list[str]:
    return [*DETECTORS.names(), DLIB_NATIVE, PRE_ALIGNED]


def build_aligner(
    detector: str, template: np.ndarray, size: tuple[int, int], policy: AlignPolicy, device: str = "cpu"
) -> Any | None:
    """What turns an image into a model's crop: None for pre-aligned input, dlib's own chips,
    or a registered detector with the similarity warp onto `template`."""
    if detector == PRE_ALIGNED:
        return None
    if detector == DLIB_NATIVE:
        from facerec.align.dlib_models import DlibNativeAligner

        return DlibNativeAligner()
    if detector not in DETECTORS:
        raise FacerecError(f"unknown detector '{detector}' (choose from {', '.join(detector_names())})")
    return Aligner(DETECTORS.build(detector, device=device), template, size, policy)


# ---- a whole tree, in worker processes -------------------------------------------------
_worker: Aligner | None = None


def _init_worker(detector: str, template: str, size: tuple[int, int] | None, policy: dict[str, Any]) -> None:
    global _worker
    import torch

    torch.set_num_threads(1)
    _worker = Aligner(DETECTORS.build(detector), template, size, AlignPolicy(**policy))


def crop_landmarks(aligner: Aligner, face: Face) -> np.ndarray:
    """The face's five landmarks in the pixel coordinates of its aligned crop."""
    matrix = umeyama(face.landmarks, aligner.template)
    return face.landmarks @ matrix[:, :2].T + matrix[:, 2]


def _align_one(job: tuple[str, str]) -> tuple[str, str, str, np.ndarray | None]:
    """(source, destination) -> (source, status, detail, landmarks in the crop); never raises."""
    src, dst = job
    assert _worker is not None
    try:
        result = _worker.align_file(src)
    except (NoFaceError, DataError) as exc:
        return src, "failed", str(exc), None
    save_image(result.crop, dst, format="PNG" if dst.endswith(".png") else "JPEG", quality=95)
    if result.face is None:
        return src, "fallback", "", None
    marks = crop_landmarks(_worker, result.face)
    return src, "aligned", f"{result.faces_found} faces" if result.faces_found > 1 else "", marks


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
    face, unreadable file) go to dst/failures.tsv; counts to dst/align_summary.json; the five
    landmarks of each detected face, in the crop's pixels, to dst/landmarks.tsv (appended as
    images finish, so pose estimation later needs no detection; see align/pose_files.py).
    """
    src, dst = require_folder(src, "source folder"), Path(dst)
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
    with (
        ProcessPoolExecutor(max(1, workers), initializer=_init_worker, initargs=init) as pool,
        (dst / LANDMARKS_FILE).open("a") as marks_file,
    ):
        results = pool.map(_align_one, jobs, chunksize=8)
        for (_, out), (source, status, detail, marks) in zip(jobs, results, strict=True):
            counts[status] += 1
            several += detail.endswith("faces")
            if status == "failed":
                failures.append(f"{source}\t{detail}")
            if marks is not None:
                marks_file.write(landmarks_line(Path(out).relative_to(dst).as_posix(), marks))
            bar.update()
    bar.close()
    write_text(dst / "failures.tsv", "".join(line + "\n" for line in failures))
    summary = {**counts, "several_faces": several, "detector": detector, "template": template, "policy": asdict(policy)}
    write_json(dst / "align_summary.json", summary)
    return summary
