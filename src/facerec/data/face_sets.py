"""Readers of public face sets as their copies come: FG-NET's file names and 68-point `.pts`
landmark files, UTKFace's attributes in its file names (written as `analyze bias` group CSVs), and
CelebA's `identity_CelebA.txt` (turned into an identity-folder tree of links)."""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facerec.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# ---- FG-NET ------------------------------------------------------------------------------------

# PPPAaa[x].JPG: person PPP at age aa; a trailing letter tells several images at one age apart.
_FGNET_NAME = re.compile(r"^(\d{3})a(\d{2})([a-z]?)\.(jpe?g|png)$", re.IGNORECASE)


@dataclass(frozen=True)
class FGNetImage:
    path: Path
    person: int
    age: int


def parse_fgnet_name(name: str) -> tuple[int, int] | None:
    """(person, age) of an FG-NET file name such as 078A11.JPG or 009a16B.jpg; None otherwise."""
    match = _FGNET_NAME.match(name)
    return (int(match.group(1)), int(match.group(2))) if match else None


def read_fgnet(root: str | Path) -> tuple[list[FGNetImage], list[str]]:
    """The FG-NET images directly in `root` (or in `root/images`), sorted by name, and the names of
    the image files that do not follow the naming scheme."""
    root = Path(root)
    if (root / "images").is_dir():
        root = root / "images"
    if not root.is_dir():
        raise DataError(f"FG-NET folder not found: {root}")
    images, odd = [], []
    for path in sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        parsed = parse_fgnet_name(path.name)
        if parsed is None:
            odd.append(path.name)
        else:
            images.append(FGNetImage(path, *parsed))
    if not images:
        raise DataError(f"{root}: no FG-NET images (names like 078A11.JPG: person 078 at age 11)")
    return images, odd


def read_pts(path: str | Path) -> np.ndarray:
    """Landmarks of a `.pts` file ('version: 1', 'n_points: N', '{', N lines 'x y', '}') as an
    (N, 2) float array."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"landmark file not found: {path}")
    lines = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    header = dict(line.split(":", 1) for line in lines[:2] if ":" in line)
    try:
        count = int(header["n_points"])
        start, end = lines.index("{"), lines.index("}")
        points = np.array([[float(v) for v in line.split()] for line in lines[start + 1 : end]])
    except (KeyError, ValueError) as exc:
        raise DataError(f"{path}: not a .pts landmark file ({exc})") from None
    if points.shape != (count, 2):
        raise DataError(f"{path}: n_points says {count}, found {len(points)} lines of 'x y'")
    return points


# ---- UTKFace -----------------------------------------------------------------------------------

UTK_GENDERS = ("male", "female")
UTK_RACES = ("white", "black", "asian", "indian", "others")
# age groups (upper bounds inclusive) for per-group rates on a set spanning 0-116 years
AGE_GROUPS = ((12, "child"), (19, "teen"), (39, "adult_20_39"), (59, "adult_40_59"), (200, "senior_60_plus"))
# age_gender_race_date...: the three attribute fields decide; the rest of the name may be irregular
_UTK_NAME = re.compile(r"^(\d{1,3})_([01])_([0-4])_[^_]+$")


@dataclass(frozen=True)
class UTKFaceLabel:
    file: str
    age: int
    gender: str
    race: str

    @property
    def age_group(self) -> str:
        return age_group(self.age)


def age_group(age: int) -> str:
    return next(name for bound, name in AGE_GROUPS if age <= bound)


def parse_utkface_name(name: str) -> UTKFaceLabel | None:
    """The attributes of `age_gender_race_date.jpg.chip.jpg` (gender 0 male, 1 female; race 0 White,
    1 Black, 2 Asian, 3 Indian, 4 Others); None for a name without the three fields."""
    match = _UTK_NAME.match(name)
    if not match:
        return None
    age, gender, race = (int(v) for v in match.groups())
    return UTKFaceLabel(name, age, UTK_GENDERS[gender], UTK_RACES[race])


def read_utkface(root: str | Path) -> tuple[list[UTKFaceLabel], list[str]]:
    """The labels of every image under `root` (recursively, sorted), and the malformed names."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"UTKFace folder not found: {root}")
    labels, malformed = [], []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES):
        label = parse_utkface_name(path.name)
        if label is None:
            malformed.append(path.name)
        else:
            labels.append(label)
    if not labels:
        raise DataError(f"{root}: no UTKFace images (names like 25_0_2_20170116174525125.jpg.chip.jpg)")
    return labels, malformed


UTK_ATTRIBUTES = ("gender", "race", "age_group")


def write_utkface_labels(labels: list[UTKFaceLabel], out: str | Path) -> dict[str, Path]:
    """`out/attributes.csv` (file,age,gender,race,age_group) and one `file,group` CSV per attribute
    (`out/gender.csv` ...), the format `facerec analyze bias --groups` reads."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {"attributes": out / "attributes.csv"}
    with written["attributes"].open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["file", "age", "gender", "race", "age_group"])
        writer.writerows([x.file, x.age, x.gender, x.race, x.age_group] for x in labels)
    for attribute in UTK_ATTRIBUTES:
        written[attribute] = out / f"{attribute}.csv"
        with written[attribute].open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["file", attribute])
            writer.writerows([x.file, getattr(x, attribute)] for x in labels)
    return written


# ---- CelebA identities -------------------------------------------------------------------------


def read_celeba_identities(path: str | Path) -> dict[str, str]:
    """File name -> identity id from `identity_CelebA.txt` ('file identity' lines; a header line
    such as 'image identity' is skipped)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"CelebA identity file not found: {path}")
    table = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        parts = line.split()
        if not parts or (number == 1 and not parts[-1].isdigit()):
            continue
        if len(parts) != 2 or not parts[1].isdigit():
            raise DataError(f"{path}:{number}: expected 'file identity', got {line!r}")
        table[parts[0]] = parts[1]
    if not table:
        raise DataError(f"{path}: no 'file identity' lines")
    return table


@dataclass
class TreeSummary:
    identities: int
    images: int
    unlabelled: list[str]  # image files the identity file does not list
    already_there: int  # links kept from an earlier run


def link_celeba_tree(images: str | Path, identity_file: str | Path, dst: str | Path) -> TreeSummary:
    """DST/<identity>/<file> for every image in `images` that the identity file labels: hard links
    (symbolic ones where the file system refuses), so no image is copied. Resumes: links already
    in place are kept."""
    images, dst = Path(images), Path(dst)
    if not images.is_dir():
        raise DataError(f"CelebA image folder not found: {images}")
    table = read_celeba_identities(identity_file)
    present = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not present:
        raise DataError(f"{images}: no images")
    unlabelled, identities, already = [], set(), 0
    for path in present:
        identity = table.get(path.name)
        if identity is None:
            unlabelled.append(path.name)
            continue
        identities.add(identity)
        already += _link(path, dst / identity / path.name)
    linked = len(present) - len(unlabelled)
    return TreeSummary(len(identities), linked, unlabelled, already)


def _link(src: Path, target: Path) -> bool:
    """Link `target` to `src`; True when it was there already."""
    if target.exists():
        return True
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, target)
    except OSError:  # another device or no hard links: a symbolic link instead
        target.symlink_to(src.resolve())
    return False
