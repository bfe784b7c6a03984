"""Galleries of earlier versions: one .npz per gallery (embeddings, names, sources, model name,
and, in later ones, the model's digest and the detector), imported into a store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facerec.serve.store.base import AlreadyExists, GalleryStore, ModelMismatch, NewFace, StoreError


@dataclass
class NpzGallery:
    model: str
    embeddings: np.ndarray
    names: list[str]
    sources: list[str]
    digest: str  # empty in the oldest galleries
    detector: str


@dataclass(frozen=True)
class Imported:
    gallery: str
    subjects: int
    faces: int


def read_npz_gallery(path: str | Path) -> NpzGallery:
    path = Path(path)
    if not path.is_file():
        raise StoreError(f"old gallery not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as data:
            optional = {k: str(data[k]) if k in data.files else "" for k in ("digest", "detector")}
            gallery = NpzGallery(
                str(data["model"]),
                np.asarray(data["embeddings"], dtype=np.float32),
                [str(n) for n in data["names"]],
                [str(s) for s in data["sources"]],
                **optional,
            )
    except (KeyError, ValueError, OSError) as exc:
        raise StoreError(f"{path} is not a facerec .npz gallery: {exc}") from exc
    if not gallery.names or len(gallery.names) != len(gallery.embeddings):
        raise StoreError(
            f"{path}: {len(gallery.names)} names for {len(gallery.embeddings)} embeddings: nothing to import"
        )
    return gallery


def import_npz(
    store: GalleryStore, path: str | Path, name: str, model: str | None = None, digest: str | None = None
) -> Imported:
    """Import an old .npz gallery as the new gallery `name`, all or nothing. `model`/`digest`
    name the model that made it; needed for galleries older than model digests, checked otherwise."""
    old = read_npz_gallery(path)
    if not old.digest and not digest:
        raise StoreError(f"{path} predates model digests: name the model that made it (`--model`, e.g. '{old.model}')")
    if old.digest and digest and old.digest != digest:
        raise ModelMismatch(
            f"{path} holds embeddings of model '{old.model}' (digest {old.digest[:12]}), "
            f"not of '{model or 'the model given'}' (digest {digest[:12]})"
        )
    if any(g.name == name for g in store.galleries()):
        raise AlreadyExists(f"gallery '{name}' already exists in {store.location}: import under another name")
    pipeline = {"model": old.model, "detector": old.detector or "unknown", "imported_from": str(path)}
    store.create_gallery(name, old.model, old.digest or str(digest), pipeline, old.embeddings.shape[1])
    faces = [
        NewFace(person, vector, {"source": source})
        for person, vector, source in zip(old.names, old.embeddings, old.sources, strict=True)
    ]
    try:
        store.add_faces(name, faces)
    except BaseException:
        store.delete_gallery(name)  # all or nothing: no half-imported gallery is left
        raise
    return Imported(name, len(set(old.names)), len(faces))


def model_identity(spec: str) -> tuple[str, str]:
    """(name, digest) of a named model or model file, for galleries that did not record it."""
    from facerec.models.io import load_recognition_model

    model = load_recognition_model(spec)
    return model.name, model.digest
