"""LFW's View 2 people folds (`meta/people.txt`): ten identity-disjoint sets of people, for
training on some folds and testing on the others ("unrestricted, no outside data")."""

from __future__ import annotations

import os
from pathlib import Path

from facerec.errors import DataError


def people_folds(people_file: str | Path) -> list[dict[str, int]]:
    """For each fold, {name: number of images}. The file: the number of folds, then per fold
    a count line followed by that many `name<TAB>images` lines."""
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
        files = [f for f in folder.iterdir() if f.is_file()] if folder.is_dir() else []
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
