"""The analyses' options that name models, read from their command-line form."""

from __future__ import annotations

from pathlib import Path

from facerec.errors import DataError


def parse_reuse(items: list[str]) -> dict[str, list[Path]]:
    """MODEL=FILE.npz items -> {model: its embeddings files}, in the order given."""
    reuse: dict[str, list[Path]] = {}
    for item in items:
        model, sep, file = item.partition("=")
        if not sep:
            raise DataError(f"--reuse takes MODEL=FILE.npz (e.g. dlib=runs/eval/embeddings.npz), got '{item}'")
        reuse.setdefault(model, []).append(Path(file))
    return reuse


def parse_models(items: list[str], default_detector: str = "mtcnn") -> list[tuple[str, str]]:
    """MODEL[:DETECTOR] items -> (model, detector) pairs."""
    return [(model, detector or default_detector) for model, _, detector in (item.partition(":") for item in items)]
