"""A compact copy of a training tree: every crop resized to the model's input and stored as
WebP, with the teacher's embeddings of the copied images beside it under relative names, and
their poses (pose.tsv, landmarks rescaled to the copy) where the 3-D pose augmentation needs them.

What a training run at 64 px reads is a 64 px image; storing it so (WebP at quality 90 takes
about 1 KB a face, a fifth of a 112 px JPEG) and the teacher's embeddings in half precision
lets a training set of tens of thousands of faces travel to another machine (a GPU) as one
small folder. `load_targets` resolves the relative names of `targets.npz` against its own
folder, so the copy trains wherever it is unpacked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from facerec.align.pose_files import POSE_FILE, PoseRow, PoseTable, lookup_pose, resized_row, write_pose_file
from facerec.core.files import save_npz
from facerec.core.images import decode_image, identity_tree, images_under
from facerec.data.transforms import resize
from facerec.distill.targets import RELATIVE_NAMES, target_rows
from facerec.errors import DataError

TARGETS_FILE = "targets.npz"


@dataclass
class CompactCopy:
    root: Path
    images: int
    identities: int
    bytes: int
    targets: Path | None
    poses: Path | None = None
    without_pose: int = 0  # copies whose source no pose file knows (never turned in training)


def compact_tree(
    src: str | Path,
    dst: str | Path,
    size: int = 64,
    quality: int = 90,
    targets: list[Path] | None = None,
    one_identity_per_image: bool = False,
    progress: bool = True,
    poses: list[Path] | None = None,
) -> CompactCopy:
    """Copy `src` (identity folders; with `one_identity_per_image`, any folder of faces, each
    its own identity) to `dst/<identity>/<stem>.webp` at `size` px. With `targets` (.npz files
    of the teacher's embeddings of src's images), `dst/targets.npz` holds those of the copies;
    with `poses` (pose.tsv files of src's images, `facerec data pose`), `dst/pose.tsv` holds the
    copies' poses, their landmarks in the copies' pixels."""
    from tqdm import tqdm

    if size < 1 or not 1 <= quality <= 100:
        raise DataError(f"compact needs a size of at least 1 px and a quality in 1-100, got {size} and {quality}")
    pairs = _planned_copies(Path(src), Path(dst), one_identity_per_image)  # the source's errors first
    if Path(dst).exists() and any(Path(dst).iterdir()):
        raise DataError(f"{dst} exists and is not empty: remove it (a copy is written whole) or name another")
    table = target_rows(targets) if targets else None
    missing = [s for s, _ in pairs if table is not None and str(s.resolve()) not in table]
    if missing:
        raise DataError(f"{len(missing)} images of {src} have no teacher embedding (first: {missing[0]})")
    pose_tables = [PoseTable.read(f) for f in poses or []]
    pose_rows: dict[str, PoseRow] = {}
    total = 0
    for source, copy in tqdm(pairs, desc=f"compacting to {size} px", unit="img", disable=not progress):
        copy.parent.mkdir(parents=True, exist_ok=True)
        image = decode_image(source)
        Image.fromarray(resize(image, size)).save(copy, "WEBP", quality=quality, method=4)
        total += copy.stat().st_size
        row = lookup_pose(pose_tables, source)
        if row is not None:
            pose_rows[copy.relative_to(dst).as_posix()] = resized_row(row, (image.shape[1], image.shape[0]), size)
    targets_path = _write_targets(Path(dst), pairs, table) if table is not None else None
    poses_path = None
    if pose_tables:
        poses_path = Path(dst) / POSE_FILE
        write_pose_file(poses_path, pose_rows)
    identities = len({copy.parent for _, copy in pairs})
    without_pose = len(pairs) - len(pose_rows) if pose_tables else 0
    return CompactCopy(Path(dst), len(pairs), identities, total, targets_path, poses_path, without_pose)


def _planned_copies(src: Path, dst: Path, one_identity_per_image: bool) -> list[tuple[Path, Path]]:
    """(source, copy) of every image; two sources that would share a copy are an error."""
    if one_identity_per_image:
        pairs = [(p, dst / _base(p) / f"{_base(p)}.webp") for p in images_under(src)]
    else:
        pairs = [(p, dst / person.name / f"{p.stem}.webp") for person in identity_tree(src) for p in person.images]
    seen: dict[Path, Path] = {}
    for source, copy in pairs:
        if copy in seen:
            raise DataError(f"{seen[copy]} and {source} would both be copied to {copy}: rename one")
        seen[copy] = source
    return pairs


def _base(path: Path) -> str:
    """The name before the first dot (UTKFace's 'x.jpg.chip.jpg' -> 'x')."""
    return path.name.split(".")[0]


def _write_targets(dst: Path, pairs: list[tuple[Path, Path]], table: dict) -> Path:
    """The copies' targets in half precision (3 significant digits: far finer than the teacher's
    own spread between two crops of one photo), `flipped` only where it differs from `plain`."""
    rows = [table[str(source.resolve())] for source, _ in pairs]
    plain = np.stack([r[0] for r in rows]).astype(np.float16)
    flipped = np.stack([r[1] for r in rows]).astype(np.float16)
    arrays = {"plain": plain} if np.array_equal(plain, flipped) else {"plain": plain, "flipped": flipped}
    return save_npz(
        dst / TARGETS_FILE,
        compressed=True,  # the names are most of an uncompressed file
        **arrays,
        detected=np.array([r[2] for r in rows]),
        names=np.array([str(copy.relative_to(dst)) for _, copy in pairs]),
        **{RELATIVE_NAMES: np.array(True)},
    )
