"""Teacher embeddings for distillation: computed once per training tree and stored as .npz
(`names`, `plain`, `flipped`), then attached to a dataset by image path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facerec.errors import DataError
from facerec.pipeline import Embeddings, RecognitionPipeline, rows_by_path


def write_targets(
    tree: str | Path,
    out: str | Path,
    teacher: str = "dlib",
    detector: str = "mtcnn",
    source_root: str | Path | None = None,
    reuse: list[Path] | None = None,
    device: str = "auto",
    mirror: bool = True,
) -> Path:
    """Embed every image of an identity-folder tree with the teacher; returns the .npz path.

    `source_root`: the teacher embeds, instead of each training image, the file with the same
    relative path under this folder (e.g. the original photographs, which it aligns its own
    way, while the student trains on crops aligned for it). `reuse`: .npz files of this
    teacher's embeddings (names = source paths) whose rows are taken instead of embedding.
    Without `mirror` the teacher embeds each image once, not also its mirror image (half the
    cost; the `flipped` targets then repeat the plain ones)."""
    from facerec.data.datasets import ImageFolderDataset

    tree = Path(tree)
    paths = [Path(p) for p in ImageFolderDataset(tree).paths]
    sources = [Path(source_root) / p.relative_to(tree) for p in paths] if source_root else paths
    missing = [s for s in sources if not s.is_file()]
    if missing:
        raise DataError(f"{len(missing)} source images are missing (first: {missing[0]})")
    known = _rows_from(reuse or [], sources)
    todo = [i for i, row in enumerate(known) if row is None]
    rows = {i: row for i, row in enumerate(known) if row is not None}
    if todo:
        # every image gets a target: with no face found, the teacher sees a centered crop
        pipeline = RecognitionPipeline.load(
            teacher, detector=detector, several="central", missing="center", device=device
        )
        result = pipeline.embed([sources[i] for i in todo], desc=f"teacher ({teacher})", mirror=mirror)
        for k, i in enumerate(todo):
            rows[i] = (result.plain[k], result.flipped[k], bool(result.detected[k]))
    plain = np.stack([rows[i][0] for i in range(len(paths))]).astype(np.float32)
    flipped = np.stack([rows[i][1] for i in range(len(paths))]).astype(np.float32)
    detected = np.array([rows[i][2] for i in range(len(paths))])
    names = [p.resolve() for p in paths]
    return Embeddings(plain, flipped, detected).save(Path(out), names, sources=np.array([str(s) for s in sources]))


def _rows_from(files: list[Path], sources: list[Path]) -> list[tuple[np.ndarray, np.ndarray, bool] | None]:
    """(plain, flipped, face detected) of each source image found by resolved path in the .npz
    files: an eval file's `names`, or a targets file's `sources` (its `names` are the training
    crops)."""
    table = target_rows(files, by_source=True)
    return [table.get(str(s.resolve())) for s in sources]


def target_rows(files: list[Path], by_source: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray, bool]]:
    """Resolved image path -> (plain, flipped, face detected) of every row of the .npz files,
    keyed by `names` (the images trained on), or with `by_source` by `sources` where a file has
    them (what the teacher embedded). Files without `detected` count every face as detected."""
    table: dict[str, tuple[np.ndarray, np.ndarray, bool]] = {}
    for file in files:
        data = _open_targets(Path(file))
        plain = data["plain"]  # read each array once (an npz re-reads per access)
        flipped = data["flipped"] if "flipped" in data.files else plain  # one array: no mirror pass
        detected = data["detected"] if "detected" in data.files else np.ones(len(plain), dtype=bool)
        by_sources = by_source and "sources" in data.files
        embedded = data["sources"] if by_sources else data["names"]
        for name, i in _rows_by_name(embedded.tolist(), Path(file), data, by_sources).items():
            table[name] = (plain[i].copy(), flipped[i].copy(), bool(detected[i]))
    return table


# Marks a targets file whose `names` are relative to its own folder (`facerec compact`: the copy
# travels with its images); other files' relative names are relative to the working directory.
RELATIVE_NAMES = "names_relative_to_file"


def _open_targets(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"teacher targets not found: {path} (make them with `facerec distill-targets`)")
    data = np.load(path)
    if "plain" not in data.files or "names" not in data.files:
        raise DataError(f"{path} is not a teacher-targets file: it needs 'plain' and 'names' arrays")
    return data


def _rows_by_name(names: list[str], path: Path, data: Any, by_sources: bool = False) -> dict[str, int]:
    """`facerec.pipeline.rows_by_path`; a compact copy's `names` are relative to its file's folder."""
    if RELATIVE_NAMES in data.files and not by_sources:
        return rows_by_path([str(path.parent / name) for name in names])
    return rows_by_path(names)


def load_targets(paths: str | Path | list[str] | list[Path], flip: bool = True) -> dict[str, np.ndarray]:
    """Resolved image path -> teacher embedding, from one .npz or several (one per tree)."""
    table: dict[str, np.ndarray] = {}
    for path in map(Path, paths if isinstance(paths, list) else [paths]):
        data = _open_targets(path)
        # a file without `flipped` (a compact copy's, teacher run without a mirror pass) holds one array
        vectors = data["flipped" if flip and "flipped" in data.files else "plain"]
        table.update({name: vectors[i] for name, i in _rows_by_name(data["names"].tolist(), path, data).items()})
    return table


def targets_of(dataset: object, table: dict[str, np.ndarray]) -> np.ndarray:
    """The teacher embedding of each image of the dataset, in order (float64), looked up by the
    image's resolved path."""
    keys = [str(Path(dataset.describe(i)).resolve()) for i in range(len(dataset))]  # type: ignore[attr-defined]
    missing = [k for k in keys if k not in table]
    if missing:
        raise DataError(
            f"{len(missing)} of {len(keys)} training images have no teacher embedding (first: {missing[0]}); "
            "make the targets for this tree with `facerec distill-targets`"
        )
    return np.stack([table[k] for k in keys]).astype(np.float64)


def centered(targets: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Teacher embeddings moved by the training images' mean embedding and renormalized."""
    moved = targets - mean
    return moved / np.linalg.norm(moved, axis=1, keepdims=True).clip(1e-12)


def teacher_threshold(targets: np.ndarray, labels: np.ndarray, pairs: int = 20000, seed: int = 0) -> float:
    """The teacher's best 'same person' cosine threshold on random genuine and impostor pairs
    of its (unit) training targets: where the evaluation-oriented term centers its weights."""
    from facerec.eval.pairs import sample_pairs
    from facerec.eval.verification import best_threshold

    try:
        drawn = sample_pairs(labels, pairs, seed)
    except DataError as err:
        raise DataError(
            f"the teacher's threshold is measured on pairs of labelled training images ({err}); set distill.threshold"
        ) from None
    return best_threshold(drawn.scores(targets), drawn.same)[0]
