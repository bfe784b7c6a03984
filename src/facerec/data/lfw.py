"""LFW on disk, in one place: the folder layout (`images/<Name>/<Name>_NNNN.jpg`, `meta/`), and
View 2's people folds (`meta/people.txt`): ten identity-disjoint sets of people, for training on
some folds and testing on the others ("unrestricted, no outside data")."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from facerec.core.images import images_in
from facerec.errors import DataError


def lfw_image_path(images: Path, name: str, number: int) -> Path:
    return images / name / f"{name}_{number:04d}.jpg"


@dataclass(frozen=True)
class LFWLayout:
    """An LFW root: `images/<Name>/<Name>_NNNN.jpg` and `meta/` (pairs.txt, people.txt, labels)."""

    root: Path

    @classmethod
    def at(cls, root: str | Path) -> LFWLayout:
        """The layout of `root`, checked: a DataError says what is missing."""
        layout = cls(Path(root))
        for needed in (layout.images, layout.pairs_file):
            if not needed.exists():
                raise DataError(f"LFW not found at {root}: {needed} is missing (expected ROOT/images/ and ROOT/meta/)")
        return layout

    @property
    def images(self) -> Path:
        return self.root / "images"

    @property
    def meta(self) -> Path:
        return self.root / "meta"

    @property
    def pairs_file(self) -> Path:
        return self.meta / "pairs.txt"

    @property
    def people_file(self) -> Path:
        return self.meta / "people.txt"

    def image(self, name: str, number: int) -> Path:
        return lfw_image_path(self.images, name, number)


def people_folds(people_file: str | Path) -> list[dict[str, int]]:
    """For each fold, {name: number of images}. The file: the number of folds, then per fold
    a count line followed by that many `name<TAB>images` lines."""
    if not Path(people_file).is_file():
        raise DataError(f"LFW people folds not found: {people_file}")
    lines = [line.split() for line in Path(people_file).read_text().splitlines() if line.strip()]
    if not lines:
        raise DataError(f"{people_file} is empty")
    folds, pos = [], 1
    for _ in range(int(lines[0][0])):
        count = int(lines[pos][0])
        folds.append({name: int(n) for name, n in lines[pos + 1 : pos + 1 + count]})
        pos += 1 + count
    return folds


def link_people(src: str | Path, dst: str | Path, people: dict[str, int], min_images: int = 1) -> tuple[int, int]:
    """Make dst/<name> symbolic links to src/<name> for the people with at least `min_images`
    images in src; returns (people linked, images under them)."""
    src, dst = Path(src).resolve(), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    linked = images = 0
    for name in sorted(people):
        folder = src / name
        files = images_in(folder) if folder.is_dir() else []
        if len(files) < min_images:
            continue
        target = dst / name
        if not target.exists():
            os.symlink(folder, target, target_is_directory=True)
        linked += 1
        images += len(files)
    if not linked:
        raise DataError(f"no person of these folds has {min_images}+ images under {src}")
    return linked, images


def people_of_folds(people_file: str | Path, folds: list[int]) -> dict[str, int]:
    """{name: images} of the people of some of the ten folds (0-based)."""
    all_folds = people_folds(people_file)
    wrong = [f for f in folds if not 0 <= f < len(all_folds)]
    if wrong:
        raise DataError(f"LFW people folds are 0-{len(all_folds) - 1}, got {wrong}")
    return {name: n for f in folds for name, n in all_folds[f].items()}
