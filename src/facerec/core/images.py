"""Image files: which files are images, decoding them, and walking `root/<identity>/<image>` trees."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from facerec.errors import DataError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm"})


def is_image_file(path: Path) -> bool:
    """By extension only (case-insensitive): decoding every file to find out would be slow."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def decode_image(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 RGB, with an error that names the file."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from exc


def require_folder(root: str | Path, what: str = "folder") -> Path:
    """`root` as a Path; a DataError naming it (as `what`, e.g. 'dataset folder') when it is not a folder."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{what} not found: {root}")
    return root


def image_files(root: str | Path) -> list[Path]:
    """Every image file under `root`, at any depth, sorted by path. Folders that are symbolic
    links are not entered (a tree of links to another tree would be read twice)."""
    root = Path(root)
    found = (Path(folder) / name for folder, _, names in os.walk(root) for name in names)
    return sorted(path for path in found if is_image_file(path))


def images_under(root: str | Path, what: str = "folder") -> list[Path]:
    """`image_files(root)`, with a DataError naming `root` when it is missing (as `what`) or
    holds no image at any depth."""
    root = require_folder(root, what)
    paths = image_files(root)
    if not paths:
        raise DataError(f"no images under {root} (extensions {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return paths


def images_in(folder: Path) -> list[Path]:
    """The image files directly in `folder`, sorted."""
    return sorted(p for p in folder.iterdir() if is_image_file(p) and p.is_file())


@dataclass(frozen=True)
class Identity:
    """One person of an identity-folder tree: the folder's name and its image files (never empty)."""

    name: str
    images: list[Path]


def identity_tree(root: str | Path, what: str = "dataset folder") -> list[Identity]:
    """The identities of `root/<identity>/<image>` in sorted folder order, skipping folders
    without images. Folders that are symbolic links count (trees of linked people). A DataError
    names `root` when it is missing (as `what`) or holds no image at all."""
    root = require_folder(root, what)
    people = [Identity(folder.name, images_in(folder)) for folder in sorted(root.iterdir()) if folder.is_dir()]
    people = [person for person in people if person.images]
    if not people:
        raise DataError(
            f"no images in {root}: expected root/<identity>/<image> with extensions "
            f"{', '.join(sorted(IMAGE_EXTENSIONS))}"
        )
    return people


def expand_inputs(inputs: list[str] | list[Path]) -> list[Path]:
    """Image files named on a command line: a single folder stands for every image under it."""
    paths = [Path(p) for p in inputs]
    if len(paths) == 1 and paths[0].is_dir():
        return image_files(paths[0])
    return paths
