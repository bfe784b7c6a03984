"""Per-image landmarks and poses of an image tree, as TSV files beside the images.

- ``landmarks.tsv`` (written by ``facerec align``): ``relative/path x1 y1 ... x5 y5`` for every
  image whose face was detected, the five landmarks (left eye, right eye, nose tip, left mouth
  corner, right mouth corner) in the pixel coordinates of the **aligned crop**.
- ``pose.tsv`` (written by ``facerec data pose``): ``relative/path yaw pitch roll x1 y1 ... x5 y5``
  (degrees, conventions of facerec.align.pose; landmarks in the crop's pixels); an image without
  a detected face has ``NA`` in every number column.

A tree aligned with landmarks needs no detection; for an older tree the landmarks are detected
on the aligned crops themselves (MTCNN on the crop padded by its border pixels: a face that
fills the whole frame is found less reliably).
"""

from __future__ import annotations

import itertools
import math
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from facerec.align.pose import Pose, estimate_pose
from facerec.align.types import choose_face
from facerec.core.files import atomic_path, write_json
from facerec.core.images import decode_image, image_files, require_folder
from facerec.core.plots import pyplot, save_figure
from facerec.errors import DataError

POSE_FILE = "pose.tsv"
LANDMARKS_FILE = "landmarks.tsv"
POSE_PLOT = "pose_yaw.png"  # beside pose.tsv; never taken for a face image of the tree
POSE_HEADER = "# path\tyaw\tpitch\troll\t" + "\t".join(f"{c}{i}" for i in range(1, 6) for c in "xy")
MISSING = "NA"


@dataclass(frozen=True)
class PoseRow:
    """One image of a pose file: its pose and landmarks, or None when no face was found."""

    pose: Pose | None
    landmarks: np.ndarray | None  # (5, 2)


def format_landmarks(landmarks: np.ndarray) -> str:
    return "\t".join(f"{v:.2f}" for v in np.asarray(landmarks, dtype=np.float64).ravel())


def landmarks_line(relative: str, landmarks: np.ndarray) -> str:
    return f"{relative}\t{format_landmarks(landmarks)}\n"


def pose_line(relative: str, row: PoseRow) -> str:
    if row.pose is None or row.landmarks is None:
        return "\t".join([relative] + [MISSING] * 13) + "\n"
    angles = f"{row.pose.yaw:.2f}\t{row.pose.pitch:.2f}\t{row.pose.roll:.2f}"
    return f"{relative}\t{angles}\t{format_landmarks(row.landmarks)}\n"


def _rows(path: Path, columns: int) -> Iterable[tuple[int, list[str]]]:
    """Tab-separated rows with `columns` fields after the path; comments and blank lines left
    out; a short last line (a run killed while writing it) is dropped."""
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != columns + 1:
            if number == len(lines):
                continue
            raise DataError(f"{path}:{number}: expected a path and {columns} numbers, got {len(fields) - 1}")
        yield number, fields


def read_landmarks(path: str | Path) -> dict[str, np.ndarray]:
    """{relative path: (5, 2) landmarks} of a landmarks.tsv."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"landmarks file not found: {path}")
    out = {}
    for number, fields in _rows(path, 10):
        try:
            out[fields[0]] = np.array([float(v) for v in fields[1:]]).reshape(5, 2)
        except ValueError:
            raise DataError(f"{path}:{number}: landmarks must be numbers") from None
    return out


def read_poses(path: str | Path) -> dict[str, PoseRow]:
    """{relative path: PoseRow} of a pose.tsv."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"pose file not found: {path}")
    out = {}
    for number, fields in _rows(path, 13):
        if fields[1] == MISSING:
            out[fields[0]] = PoseRow(None, None)
            continue
        try:
            values = [float(v) for v in fields[1:]]
        except ValueError:
            raise DataError(f"{path}:{number}: pose columns must be numbers or {MISSING}") from None
        out[fields[0]] = PoseRow(Pose(*values[:3]), np.array(values[3:]).reshape(5, 2))
    return out


class PoseTable:
    """The poses of a pose.tsv, looked up by image path: relative to the file's folder, or,
    for the same images elsewhere (e.g. the unaligned originals of an aligned tree), by the
    last two path parts (identity folder and file name), extension ignored, or by the file name
    alone (extension ignored) where no other image of the table has that name (flat trees)."""

    def __init__(self, rows: dict[str, PoseRow], root: str | Path) -> None:
        self.rows, self.root = rows, Path(root).resolve()
        self._by_tail = {_tail(Path(rel)): row for rel, row in rows.items()}
        stems = Counter(Path(rel).stem for rel in rows)
        self._by_stem = {Path(rel).stem: row for rel, row in rows.items() if stems[Path(rel).stem] == 1}

    @classmethod
    def read(cls, path: str | Path) -> PoseTable:
        return cls(read_poses(path), Path(path).parent)

    def get(self, image: str | Path) -> PoseRow | None:
        image = Path(image)
        try:
            row = self.rows.get(image.resolve().relative_to(self.root).as_posix())
        except ValueError:
            row = None
        if row is None:
            row = self._by_tail.get(_tail(image))
        return row if row is not None else self._by_stem.get(image.stem)

    def yaws(self, images: Sequence[Any]) -> np.ndarray:
        """Yaw per image (NaN where the image is unknown or had no face; also for arrays)."""
        out = np.full(len(images), np.nan)
        for i, image in enumerate(images):
            row = self.get(image) if isinstance(image, str | Path) else None
            if row is not None and row.pose is not None:
                out[i] = row.pose.yaw
        return out


def _tail(path: Path) -> str:
    return f"{path.parent.name}/{path.stem}"


def lookup_pose(tables: Sequence[PoseTable], image: str | Path) -> PoseRow | None:
    """The row of `image` in the first table that has one."""
    for table in tables:
        row = table.get(image)
        if row is not None:
            return row
    return None


def resized_row(row: PoseRow, source: tuple[int, int], size: int) -> PoseRow:
    """The row of the same face after its (width, height) `source` image is resized to a square
    of `size` px: the landmarks mapped pixel centre to pixel centre, as a bilinear resize samples
    them; the angles are the face's and stay."""
    if row.landmarks is None:
        return row
    scale = np.array([size / source[0], size / source[1]])
    return PoseRow(row.pose, (row.landmarks + 0.5) * scale - 0.5)


def find_pose_file(images: Sequence[Any]) -> Path | None:
    """A pose.tsv beside the images: in the folder of the first image or the one above it (an
    identity-folder tree keeps it at its root)."""
    first = next((p for p in images if isinstance(p, str | Path)), None)
    if first is None:
        return None
    image = Path(os.path.normpath(first))  # 'runs/../data/x/y.jpg' -> 'data/x/y.jpg', for the report
    for folder in (image.parent, image.parent.parent):
        if (folder / POSE_FILE).is_file():
            return folder / POSE_FILE
    return None


# |yaw| and |yaw difference| ranges of the reports, in degrees (the last one is open)
YAW_EDGES: tuple[float, ...] = (0, 10, 20, 30, 45)


def buckets(edges: Sequence[float]) -> list[tuple[float, float]]:
    """[lo, hi) ranges between consecutive edges, the last one open: (45, inf)."""
    bounds = [*edges, math.inf]
    return list(itertools.pairwise(bounds))


def bucket_label(lo: float, hi: float) -> str:
    return f">{lo:g}" if hi == math.inf else f"{lo:g}-{hi:g}"


# ---- landmarks and poses of a tree of aligned crops ------------------------------------------
def pad_by_edge(image: np.ndarray, fraction: float) -> tuple[np.ndarray, int]:
    """The image with a border of `fraction` of its shorter side, repeating the edge pixels."""
    pad = round(fraction * min(image.shape[:2]))
    return np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge"), pad


def detect_crop_landmarks(detector: Any, crop: np.ndarray, pad_fraction: float = 0.2) -> np.ndarray | None:
    """Five landmarks of the central face of an aligned crop, in the crop's pixels."""
    padded, pad = pad_by_edge(crop, pad_fraction)
    faces = detector.detect(padded)
    if not faces:
        return None
    return choose_face(faces, padded.shape, "central").landmarks - pad


def pose_row(landmarks: np.ndarray | None) -> PoseRow:
    return PoseRow(None, None) if landmarks is None else PoseRow(estimate_pose(landmarks), landmarks)


def tree_poses(
    tree: str | Path,
    detector: Any | None = None,
    progress: bool = True,
    pad_fraction: float = 0.2,
) -> dict[str, Any]:
    """Write TREE/pose.tsv for every image of a tree of aligned crops: landmarks from
    TREE/landmarks.tsv where it lists the image, else detected on the crop (`detector`, MTCNN by
    default). Resumes: images already in pose.tsv are kept. Writes TREE/pose_summary.json and
    TREE/pose_yaw.png; returns the summary."""
    tree = require_folder(tree, "image tree")
    out = tree / POSE_FILE
    done = read_poses(out) if out.is_file() else {}
    known = read_landmarks(tree / LANDMARKS_FILE) if (tree / LANDMARKS_FILE).is_file() else {}
    todo = [p for p in image_files(tree) if p.relative_to(tree).as_posix() not in done and p != tree / POSE_PLOT]
    if not todo and not done:
        raise DataError(f"no images under {tree}")
    counts = {"already_done": len(done), "from_landmarks_file": 0, "detected": 0, "no_face": 0}
    if todo and detector is None and any(p.relative_to(tree).as_posix() not in known for p in todo):
        from facerec.align.mtcnn import MTCNN

        detector = MTCNN(min_face_size=40)
    write_pose_file(out, done)  # drops a half-written last line of an interrupted run
    with out.open("a") as fh:
        for path in tqdm(todo, unit="img", desc="poses", disable=not progress, smoothing=0.05):
            relative = path.relative_to(tree).as_posix()
            if relative in known:
                marks, counts["from_landmarks_file"] = known[relative], counts["from_landmarks_file"] + 1
            else:
                marks = detect_crop_landmarks(detector, decode_image(path), pad_fraction)
                counts["detected" if marks is not None else "no_face"] += 1
            done[relative] = pose_row(marks)
            fh.write(pose_line(relative, done[relative]))
            fh.flush()
    write_pose_file(out, done)  # sorted, atomically
    return _summarize(tree, done, counts)


def write_pose_file(path: Path, rows: dict[str, PoseRow]) -> None:
    """A pose.tsv of `rows` by relative path, sorted, written atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(POSE_HEADER + "\n" + "".join(pose_line(rel, rows[rel]) for rel in sorted(rows)))


def angle_statistics(yaws: np.ndarray) -> dict[str, Any]:
    """Counts of |angle| in the YAW_EDGES ranges, and quantiles of the angle."""
    yaws = yaws[np.isfinite(yaws)]
    if not len(yaws):
        return {"faces": 0}
    magnitude = np.abs(yaws)
    return {
        "faces": len(yaws),
        "mean": float(yaws.mean()),
        "quantiles": {f"{q:g}": float(np.quantile(yaws, q)) for q in (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)},
        "abs_counts": {
            bucket_label(lo, hi): int(((magnitude >= lo) & (magnitude < hi)).sum()) for lo, hi in buckets(YAW_EDGES)
        },
    }


def _summarize(tree: Path, rows: dict[str, PoseRow], counts: dict[str, int]) -> dict[str, Any]:
    yaws = np.array([r.pose.yaw for r in rows.values() if r.pose is not None])
    pitches = np.array([r.pose.pitch for r in rows.values() if r.pose is not None])
    summary = {
        "images": len(rows),
        "with_pose": len(yaws),
        "without_face": len(rows) - len(yaws),
        "this_run": counts,
        "yaw": angle_statistics(yaws),
        "pitch": angle_statistics(pitches),
        "pose_file": str(tree / POSE_FILE),
    }
    write_json(tree / "pose_summary.json", summary)
    if len(yaws):
        plot_yaw_histogram(yaws, tree / POSE_PLOT, f"{tree.name}: yaw of {len(yaws)} faces")
    return summary


def plot_yaw_histogram(yaws: np.ndarray, path: str | Path, title: str) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(yaws, bins=np.arange(-90, 91, 2.5), color="tab:blue", alpha=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("yaw (degrees; > 0: nose towards the image's right)")
    ax.set_ylabel("faces (log)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    return save_figure(fig, path, dpi=110)
