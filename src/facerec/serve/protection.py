"""Template protection, measured: what a thief holding a copy of a gallery store can do with it.

Two operators enroll the same people (one image each in the first store, other images in the
second). The thief reads both SQLite files directly, without the key, and tries to tell which
records of the two stores are the same person by comparing the stored vector bytes (read as
float32 values, or as raw bytes), and to identify the second store's faces in the first with
the embeddings of his own copy of the model. With sealed vectors both attempts are at chance;
with plaintext vectors they are as good as the model. What a keyed store still shows in clear
(names, metadata, counts, times, the model) is listed. The mapping attack (stolen vectors of
another model, N paired images) is the migration table read from the thief's side
(analysis/migration.py).
"""

from __future__ import annotations

import secrets
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from facerec.analysis.common import normalize
from facerec.analysis.membership import bootstrap_auc
from facerec.serve.store import NewFace, SQLiteStore

IN_CLEAR = {
    "galleries": "name, model name and digest, pipeline (detector, flip), threshold, keep_crops, migration record",
    "subjects": "the operator's name for each person, their metadata, when they were enrolled",
    "faces": "which subject each face belongs to, its metadata (e.g. the source file), when it was added",
    "sizes": "number of galleries, people and faces; every sealed vector has the same length",
}


def write_and_steal(path: Path, vectors: np.ndarray, identities: np.ndarray, key: bytes | None) -> list[bytes]:
    """Enroll `vectors` (subject = identity) into a new store at `path`, then read the vector
    column as a thief does: straight from the file, without the key, in face order."""
    with SQLiteStore(path, key, plaintext=key is None) as store:
        store.create_gallery("g", "model", "0" * 64, {}, vectors.shape[1])
        store.add_faces("g", [NewFace(str(i), v) for i, v in zip(identities, vectors, strict=True)])
    with sqlite3.connect(path) as db:
        return [bytes(row[0]) for row in db.execute("SELECT vector FROM faces ORDER BY id")]


def as_float32(blobs: list[bytes]) -> np.ndarray:
    """The bytes read as little-endian float32 values (non-finite ones as 0)."""
    with np.errstate(invalid="ignore", over="ignore"):  # random bytes hold NaN and infinite patterns
        rows = np.stack([np.frombuffer(b[: len(b) // 4 * 4], "<f4") for b in blobs]).astype(np.float64)
        return np.where(np.isfinite(rows), rows, 0.0)


def as_bytes(blobs: list[bytes]) -> np.ndarray:
    return np.stack([np.frombuffer(b, np.uint8) for b in blobs]).astype(np.float64) - 127.5


VIEWS = {"float32 values": as_float32, "raw bytes": as_bytes}


def cross_linking(
    a: np.ndarray, a_ids: np.ndarray, b: np.ndarray, b_ids: np.ndarray, n_boot: int = 200
) -> dict[str, Any]:
    """AUC (with a bootstrap 95% interval over pairs) of cosine similarity between every row of
    `a` and every row of `b` for telling same-identity pairs from the others."""
    scores = normalize(a) @ normalize(b).T
    same = a_ids[:, None] == b_ids[None, :]
    value, interval = bootstrap_auc(scores[same], scores[~same], n_boot=n_boot)
    return {"auc": value, "ci95": interval, "mated_pairs": int(same.sum()), "non_mated_pairs": int((~same).sum())}


def rank1(stolen: np.ndarray, stolen_ids: np.ndarray, probes: np.ndarray, probe_ids: np.ndarray) -> float:
    """The thief's own embeddings of the probes against the first values of the stolen rows."""
    scores = normalize(probes) @ normalize(stolen[:, : probes.shape[1]]).T
    return float((stolen_ids[scores.argmax(1)] == probe_ids).mean())


def stolen_store_study(
    gallery: np.ndarray, gallery_ids: np.ndarray, probes: np.ndarray, probe_ids: np.ndarray, folder: Path
) -> dict[str, Any]:
    """The thief's results against keyed stores (each operator its own random key) and against
    plaintext stores of the same faces."""
    folder.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"gallery_faces": len(gallery), "probes": len(probes), "in_clear": IN_CLEAR}
    for kind, keys in (("encrypted", (secrets.token_bytes(32), secrets.token_bytes(32))), ("plaintext", (None, None))):
        first = write_and_steal(folder / f"{kind}_operator1.db", gallery, gallery_ids, keys[0])
        second = write_and_steal(folder / f"{kind}_operator2.db", probes, probe_ids, keys[1])
        report[kind] = {
            "stored_bytes_per_vector": sorted({len(b) for b in first}),
            "linking": {
                name: cross_linking(view(first), gallery_ids, view(second), probe_ids) for name, view in VIEWS.items()
            },
            "rank1_with_own_model": rank1(as_float32(first), gallery_ids, probes, probe_ids),
        }
    report["chance_rank1"] = 1.0 / len(np.unique(gallery_ids))
    return report


def stolen_gallery_study(source: Any, model: str, detector: str, out: Path) -> dict[str, Any]:
    """`stolen_store_study` on the images of `source` (an analysis Source): one image of each
    person in the first store, that person's other images in the second; report.json in `out`."""
    import sys

    from facerec.core.files import write_json
    from facerec.eval.identification import gallery_probe_split

    images = source.image_set()
    emb = source.embed(images, model, detector)
    parts = gallery_probe_split(images.identities)
    gallery, probes = parts.gallery, parts.mated
    report = stolen_store_study(emb[gallery], images.identities[gallery], emb[probes], images.identities[probes], out)
    report.update(model=model, detector=detector, images=len(images))
    report["command"] = "facerec " + " ".join(sys.argv[1:]) if sys.argv and "facerec" in sys.argv[0] else None
    for stolen in out.glob("*_operator*.db*"):
        stolen.unlink()  # the stores were only the thief's material
    write_json(out / "report.json", report)
    return report
