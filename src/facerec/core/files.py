"""Atomic writes: each file is written beside its target, then renamed over it, so a reader (or
a resumed run) never sees half a file, whatever interrupts the writer."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write to; it replaces `path` when the block ends
    without an exception, and is removed otherwise. The temporary name keeps the suffix, since
    writers such as PIL and numpy choose the format from it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def _jsonable(value: Any) -> Any:
    """numpy arrays and scalars as lists and numbers; anything else as its string."""
    return value.tolist() if hasattr(value, "tolist") else str(value)


def write_json(path: str | Path, data: Any, indent: int = 2) -> Path:
    return write_text(path, json.dumps(data, indent=indent, default=_jsonable))


def save_npz(path: str | Path, compressed: bool = False, **arrays: Any) -> Path:
    """`np.savez` (or `np.savez_compressed`) of `arrays` to `path` (which should end in .npz:
    numpy adds it otherwise)."""
    with atomic_path(path) as tmp:
        (np.savez_compressed if compressed else np.savez)(tmp, **arrays)
    return Path(path)


def torch_save(obj: Any, path: str | Path) -> Path:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


def save_image(image: Any, path: str | Path, **options: Any) -> Path:
    """A uint8 array or PIL image, in the format of the path's extension unless `options` name
    one (`format=`, `quality=` ...: PIL's save options)."""
    from PIL import Image

    picture = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    path = Path(path)
    options.setdefault("format", Image.registered_extensions().get(path.suffix.lower()))
    with atomic_path(path) as tmp:
        picture.save(tmp, **options)
    return path
