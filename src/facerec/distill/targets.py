"""Teacher embeddings for distillation: computed once per training tree and stored as .npz
(`names`, `plain`, `flipped`), then attached to a dataset by image path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from facerec.errors import DataError


def write_targets(tree: str | Path, out: str | Path, teacher: str = "dlib", detector: str = "mtcnn") -> Path:
    """Embed every image of an identity-folder tree with the teacher; returns the .npz path."""
    from facerec.cli import build_aligner
    from facerec.data.datasets import ImageFolderDataset
    from facerec.eval.runner import embed_images
    from facerec.models.io import load_embedder

    paths = [Path(p) for p in ImageFolderDataset(tree).paths]
    embedder = load_embedder(teacher)
    result = embed_images(paths, embedder, build_aligner(detector, embedder), desc=f"teacher ({teacher})")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    names = np.array([str(p.resolve()) for p in paths])
    np.savez(out, names=names, plain=result.plain, flipped=result.flipped, detected=result.detected)
    return out


def load_targets(path: str | Path, flip: bool = True) -> dict[str, np.ndarray]:
    """Resolved image path -> teacher embedding."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"teacher targets not found: {path} (make them with `facerec distill-targets`)")
    data = np.load(path)
    vectors = data["flipped" if flip else "plain"]
    return {str(Path(name).resolve()): vectors[i] for i, name in enumerate(data["names"].tolist())}


def attach_targets(dataset: object, table: dict[str, np.ndarray]) -> int:
    """Give each image of the dataset its teacher embedding (looked up by its resolved path);
    returns the teacher's embedding size."""
    keys = [str(Path(dataset.describe(i)).resolve()) for i in range(len(dataset))]  # type: ignore[attr-defined]
    missing = [k for k in keys if k not in table]
    if missing:
        raise DataError(
            f"{len(missing)} of {len(keys)} training images have no teacher embedding (first: {missing[0]}); "
            "make the targets for this tree with `facerec distill-targets`"
        )
    dataset.targets = torch.from_numpy(np.stack([table[k] for k in keys]).astype(np.float32))  # type: ignore[attr-defined]
    return int(dataset.targets.shape[1])  # type: ignore[attr-defined]
