"""Datasets, augmentation and samplers."""

from __future__ import annotations

import numpy as np

from facerec.config import DataConfig
from facerec.core.images import decode_image, images_under
from facerec.data.datasets import (
    DatasetView,
    FaceDataset,
    FileListDataset,
    ImageFolderDataset,
    JoinedDataset,
    ListDataset,
    SyntheticDataset,
    drop_small_identities,
    split_by_identity,
)
from facerec.data.synthetic import SyntheticFaces
from facerec.errors import ConfigError, DataError
from facerec.registry import Registry

SOURCES: Registry[FaceDataset] = Registry("data source")


@SOURCES.register("synthetic")
def synthetic_source(cfg: DataConfig, input_size: int, progress: bool = False) -> FaceDataset:
    s = cfg.synthetic
    faces = SyntheticFaces(s.identities, s.images_per_identity, input_size, s.seed, s.difficulty)
    return SyntheticDataset(faces, progress)


@SOURCES.register("folder")
def folder_source(cfg: DataConfig, input_size: int, progress: bool = False) -> FaceDataset:
    if not cfg.root:
        raise ConfigError("data.source 'folder' needs data.root (a folder of identity folders)")
    return ImageFolderDataset(cfg.root, input_size)


@SOURCES.register("unlabelled")
def unlabelled_source(cfg: DataConfig, input_size: int, progress: bool = False) -> FaceDataset:
    if not cfg.root:
        raise ConfigError("data.source 'unlabelled' needs data.root (a folder of face images)")
    if cfg.val_identities:
        raise ConfigError("data.source 'unlabelled' has no identities to hold out: set data.val_identities: 0")
    return FileListDataset(images_under(cfg.root, "dataset folder"), input_size)


@SOURCES.register("list")
def list_source(cfg: DataConfig, input_size: int, progress: bool = False) -> FaceDataset:
    if not cfg.list_file:
        raise ConfigError("data.source 'list' needs data.list_file (lines 'path label')")
    return ListDataset(cfg.list_file, cfg.root, input_size)


@SOURCES.register("recordio")
def recordio_source(cfg: DataConfig, input_size: int, progress: bool = False) -> FaceDataset:
    from facerec.data.recordio import RecordIODataset

    if not cfg.root:
        raise ConfigError("data.source 'recordio' needs data.root (train.rec/train.idx, their folder or prefix)")
    return RecordIODataset(cfg.root, input_size)


def build_datasets(
    cfg: DataConfig, input_size: int, seed: int, progress: bool = False, template: np.ndarray | None = None
) -> tuple[FaceDataset, FaceDataset | None]:
    """The training set and the held-out-identity validation set of a config, as crops of
    `input_size` (the backbone's) with the landmarks at `template` (None: the ArcFace template)."""
    dataset = SOURCES.get(cfg.source)(cfg, input_size, progress)
    dataset = drop_small_identities(dataset, cfg.min_images_per_identity)
    train, val = split_by_identity(dataset, cfg.val_identities, seed)
    if cfg.extra_roots:  # after the split: extra trees never reach the held-out identities
        train = JoinedDataset([train, *(ImageFolderDataset(root, input_size) for root in cfg.extra_roots)])
    if train.num_classes < 2 and cfg.source != "unlabelled":
        raise DataError(f"training needs at least 2 identities, found {train.num_classes}")
    for part in (train, val):
        if part is not None:
            part.template = template
    return train, val


__all__ = [
    "SOURCES",
    "DatasetView",
    "FaceDataset",
    "ImageFolderDataset",
    "JoinedDataset",
    "ListDataset",
    "SyntheticDataset",
    "SyntheticFaces",
    "build_datasets",
    "decode_image",
]
