"""A calibrated threshold (`facerec calibrate`) written into a gallery of a store: the gallery's
operator threshold, which applies to its searches unless a request gives its own."""

from __future__ import annotations

from typing import Any

from facerec.serve.store import GalleryRecord, GalleryStore, StoreError


def parse_gallery_target(text: str) -> tuple[str, str]:
    """'STORE:NAME' -> (store location, gallery name); the last ':' splits (URLs and drive
    letters hold colons too)."""
    store, sep, name = text.rpartition(":")
    if not sep or not store or not name or "/" in name:
        raise StoreError(f"--gallery takes STORE:NAME (a store file or URL, a colon, a gallery's name), got {text!r}")
    return store, name


def check_gallery(store: GalleryStore, gallery: str, model: str, digest: str, pipeline: dict[str, Any]) -> list[str]:
    """Refuse a gallery that a threshold calibrated on `pipeline` does not fit: another model's,
    or enrolled with another flip setting (its scores are on another scale). Returns notes on
    lesser differences (the detector)."""
    enrolled = store.check_model(gallery, model, digest).pipeline
    if "flip" in enrolled and bool(enrolled["flip"]) != bool(pipeline["flip"]):
        raise StoreError(
            f"gallery '{gallery}' was enrolled with flip={enrolled['flip']}, the threshold is calibrated "
            f"with flip={pipeline['flip']}: calibrate with the gallery's setting"
        )
    if enrolled.get("detector") not in (None, pipeline["detector"]):
        return [
            f"gallery '{gallery}' was enrolled through detector {enrolled['detector']}, the threshold is "
            f"calibrated through {pipeline['detector']}"
        ]
    return []


def set_calibrated_threshold(
    store: GalleryStore, gallery: str, model: str, digest: str, pipeline: dict[str, Any], threshold: float
) -> tuple[GalleryRecord, list[str]]:
    """Set the gallery's threshold to one calibrated on `pipeline` (checked by `check_gallery`);
    the updated record and the notes."""
    notes = check_gallery(store, gallery, model, digest, pipeline)
    return store.set_threshold(gallery, threshold), notes
