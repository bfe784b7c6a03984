"""Face datasets: identity folders, list files, synthetic faces; views and identity splits.

A dataset maps an index to a uint8 RGB image and an integer identity label. Training reads
them through a view that augments each with its own seed (facerec.train.builder.TrainingImages).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from facerec.core.images import decode_image, identity_tree
from facerec.data.synthetic import SyntheticFaces
from facerec.data.transforms import from_arcface_crop, to_tensor
from facerec.errors import DataError

# an augmentation that needs to know which image it changes (e.g. the 3-D pose augmentation reads
# the image's landmarks): it gets the image as stored, before resizing, its index and the generator
ImageAugmenter = Callable[[np.ndarray, int, np.random.Generator], np.ndarray]


class FaceDataset(torch.utils.data.Dataset):
    """Base: subclasses set `labels` and `class_names`, and implement `load`."""

    labels: np.ndarray
    class_names: list[str]
    # the model's landmark positions when they are not the ArcFace template's (None): stored crops,
    # on the ArcFace template, are warped to them
    template: np.ndarray | None = None

    def __init__(self, input_size: int) -> None:
        self.input_size = input_size

    def load(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def describe(self, index: int) -> str:
        return f"#{index}"

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.labels)

    def image(self, index: int) -> np.ndarray:
        return self.model_crop(self.load(index))

    def model_crop(self, crop: np.ndarray) -> np.ndarray:
        """A stored crop (ArcFace template, any size) as the network's input crop."""
        return from_arcface_crop(crop, self.template, self.input_size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        """(image in [-1, 1], label). Training reads its own items (facerec.train.builder.TrainingImages)."""
        return to_tensor(self.image(index)), int(self.labels[index])


class PathDataset(FaceDataset):
    """Images read from files: subclasses set `paths` (with `labels` and `class_names`)."""

    paths: list[Path]

    def load(self, index: int) -> np.ndarray:
        return decode_image(self.paths[index])

    def describe(self, index: int) -> str:
        return str(self.paths[index])


class ImageFolderDataset(PathDataset):
    """root/<identity>/<image>: one folder per identity, label = sorted folder order."""

    def __init__(self, root: str | Path, input_size: int = 112) -> None:
        super().__init__(input_size)
        self.root = Path(root)
        people = identity_tree(self.root)
        self.paths = [path for person in people for path in person.images]
        self.labels = np.repeat(np.arange(len(people)), [len(person.images) for person in people])
        self.class_names = [person.name for person in people]


class ListDataset(PathDataset):
    """A text file of `relative/path label` lines (paths relative to `root`)."""

    def __init__(self, list_file: str | Path, root: str | Path | None = None, input_size: int = 112) -> None:
        super().__init__(input_size)
        list_file = Path(list_file)
        if not list_file.is_file():
            raise DataError(f"list file not found: {list_file}")
        base = Path(root) if root else list_file.parent
        paths, raw = [], []
        for number, line in enumerate(list_file.read_text().splitlines(), 1):
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise DataError(f"{list_file}:{number}: expected 'path label', got {line!r}")
            paths.append(base / parts[0])
            raw.append(int(parts[1]))
        if not paths:
            raise DataError(f"list file {list_file} has no entries")
        uniques, labels = np.unique(np.array(raw), return_inverse=True)
        self.paths, self.labels = paths, labels
        self.class_names = [str(u) for u in uniques]


class FileListDataset(PathDataset):
    """Plain image files without identities (for embedding, or distillation without labels)."""

    def __init__(self, paths: Sequence[str | Path], input_size: int = 112) -> None:
        super().__init__(input_size)
        self.paths = [Path(p) for p in paths]
        missing = [p for p in self.paths if not p.is_file()]
        if missing:
            raise DataError(f"image not found: {missing[0]}")
        self.labels = np.zeros(len(self.paths), dtype=np.int64)
        self.class_names = ["unlabelled"]


class SyntheticDataset(FaceDataset):
    """Synthetic faces (see `facerec.data.synthetic`), rendered once and kept in memory."""

    def __init__(self, faces: SyntheticFaces, progress: bool = False) -> None:
        super().__init__(faces.size)
        from tqdm import tqdm

        self.faces = faces
        self.labels = np.array([faces.label(i) for i in range(len(faces))])
        self.class_names = [f"id_{faces.first_identity + k:05d}" for k in range(faces.identities)]
        indices = tqdm(range(len(faces)), desc="rendering faces", unit="img", disable=not progress, mininterval=1.0)
        self.cache = np.stack([faces.render(i) for i in indices])

    def load(self, index: int) -> np.ndarray:
        return self.cache[index]


class DatasetView(FaceDataset):
    """A subset of another dataset's images, with labels renumbered 0..n-1."""

    def __init__(self, base: FaceDataset, indices: Sequence[int]) -> None:
        super().__init__(base.input_size)
        self.base, self.indices = base, np.asarray(indices, dtype=np.int64)
        uniques, labels = np.unique(base.labels[self.indices], return_inverse=True)
        self.labels = labels
        self.class_names = [base.class_names[u] for u in uniques]

    def load(self, index: int) -> np.ndarray:
        return self.base.load(int(self.indices[index]))

    def describe(self, index: int) -> str:
        return self.base.describe(int(self.indices[index]))


class JoinedDataset(FaceDataset):
    """Several datasets one after another; each part's labels follow the previous part's."""

    def __init__(self, parts: Sequence[FaceDataset]) -> None:
        if not parts:
            raise DataError("nothing to join: no datasets given")
        super().__init__(parts[0].input_size)
        self.parts = list(parts)
        self.starts = np.cumsum([0] + [len(p) for p in self.parts])
        offsets = np.cumsum([0] + [p.num_classes for p in self.parts[:-1]])
        self.labels = np.concatenate([p.labels + o for p, o in zip(self.parts, offsets, strict=True)])
        self.class_names = [name for p in self.parts for name in p.class_names]

    def _locate(self, index: int) -> tuple[FaceDataset, int]:
        part = int(np.searchsorted(self.starts, index, side="right")) - 1
        return self.parts[part], index - int(self.starts[part])

    def load(self, index: int) -> np.ndarray:
        part, local = self._locate(index)
        return part.load(local)

    def describe(self, index: int) -> str:
        part, local = self._locate(index)
        return part.describe(local)


def split_by_identity(dataset: FaceDataset, val_identities: int, seed: int) -> tuple[FaceDataset, FaceDataset | None]:
    """Hold out `val_identities` whole identities (chosen with `seed`) for validation."""
    if val_identities <= 0:
        return dataset, None
    if val_identities >= dataset.num_classes - 1:
        raise DataError(f"cannot hold out {val_identities} identities: the dataset has only {dataset.num_classes}")
    held = np.random.default_rng(seed).choice(dataset.num_classes, val_identities, replace=False)
    is_val = np.isin(dataset.labels, held)
    return DatasetView(dataset, np.flatnonzero(~is_val)), DatasetView(dataset, np.flatnonzero(is_val))


def drop_small_identities(dataset: FaceDataset, min_images: int) -> FaceDataset:
    if min_images <= 1:
        return dataset
    counts = np.bincount(dataset.labels, minlength=dataset.num_classes)
    keep = np.flatnonzero(counts[dataset.labels] >= min_images)
    if len(keep) == 0:
        raise DataError(f"no identity has at least {min_images} images")
    return DatasetView(dataset, keep)


class PreloadedImages(FaceDataset):
    """Another dataset's images decoded once, at the input size, into one uint8 array (shared
    with forked loader workers without copying). `load` still reads the stored image."""

    def __init__(self, base: FaceDataset, workers: int = 0, progress: bool = False) -> None:
        super().__init__(base.input_size)
        self.base, self.labels, self.class_names = base, base.labels, base.class_names
        self.template = base.template
        self.images = decode_all(base, workers, progress)

    def load(self, index: int) -> np.ndarray:
        return self.base.load(index)

    def image(self, index: int) -> np.ndarray:
        return self.images[index]

    def describe(self, index: int) -> str:
        return self.base.describe(index)


class _Decoded(torch.utils.data.Dataset):
    def __init__(self, base: FaceDataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(np.array(self.base.image(index)))  # a copy: decoded arrays may be read-only


def decode_all(dataset: FaceDataset, workers: int = 0, progress: bool = False) -> np.ndarray:
    """Every image of a dataset at its input size: (N, size, size, 3) uint8."""
    from tqdm import tqdm

    size = dataset.input_size
    if len(dataset) == 0:
        raise DataError("nothing to preload: the dataset is empty")
    out = np.empty((len(dataset), size, size, 3), dtype=np.uint8)
    # its own generator: a loader without one draws its base seed from the global RNG, which would
    # move the network's initialization that follows in a run
    loader = torch.utils.data.DataLoader(
        _Decoded(dataset), batch_size=256, num_workers=workers, generator=torch.Generator().manual_seed(0)
    )
    bar = tqdm(total=len(dataset), desc="preloading images", unit="img", disable=not progress, mininterval=1.0)
    start = 0
    for batch in loader:
        out[start : start + len(batch)] = batch.numpy()
        start += len(batch)
        bar.update(len(batch))
    bar.close()
    return out
