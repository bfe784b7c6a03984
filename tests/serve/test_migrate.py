"""Galleries that keep crops (both backends: `store_maker` in conftest), the schema upgrade that
brought them, and moving a gallery to a new model: kept crops embedded again, other faces mapped
by a ridge map, checked on spaces whose relation is known exactly."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import torch
from torch import nn

from facerec.align.kept import KEPT_SIZE, kept_from_crop, kept_from_landmarks, model_crop
from facerec.core.geometry import umeyama, warp_affine
from facerec.data.transforms import to_tensor
from facerec.errors import DataError
from facerec.models.card import ModelCard, arcface_template
from facerec.models.io import RecognitionModel
from facerec.pipeline import RecognitionPipeline
from facerec.serve.migrate import MAPPED, RE_EMBEDDED, Calibration, migrate_gallery
from facerec.serve.store import AlreadyExists, NewFace, StoreError, StoreKeyError
from facerec.serve.store.base import encode_crop
from facerec.serve.store.sqlite import SCHEMA_VERSION, UPGRADES

OLD, NEW = "a" * 64, "c" * 64
KEY = bytes(range(32))


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def semi_orthogonal(d_old: int, d_new: int, seed: int = 0) -> np.ndarray:
    """A (d_old, d_new) matrix with orthonormal rows: x -> x A keeps every norm and angle."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d_new, d_old)))
    return q.T


def linear_pipeline(digest: str, dimension: int, size: int = 16, seed: int = 0) -> RecognitionPipeline:
    """A real pipeline over pre-aligned crops with a small random linear network."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * size * size, dimension))
    card = ModelCard("linear", dimension, size, f"arcface_112@{size}", arcface_template(size), digest, name=f"m{seed}")
    return RecognitionPipeline(RecognitionModel(net, card), "none", flip=False, device="cpu")


def crops(count: int, size: int = 40, seed: int = 0) -> list[np.ndarray]:
    """Smooth random images (blurred noise), as pre-aligned crops on the ArcFace template."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (count, 5, 5, 3)).astype(np.float64)
    grid = np.linspace(0, 4, size)
    i0 = np.minimum(grid.astype(int), 3)
    w = (grid - i0)[None, :, None, None]
    rows = small[:, i0] * (1 - w) + small[:, i0 + 1] * w
    w = w.transpose(0, 2, 1, 3)
    images = rows[:, :, i0] * (1 - w) + rows[:, :, i0 + 1] * w
    return [im.astype(np.uint8) for im in images]


def search_table(store, gallery: str, probes: np.ndarray, k: int = 4):
    return [[(m.subject, m.score) for m in matches] for matches in store.search(gallery, probes, k)]


def assert_same_results(got, expected, atol: float = 1e-4) -> None:
    for g, e in zip(got, expected, strict=True):
        assert [s for s, _ in g] == [s for s, _ in e]
        assert np.allclose([v for _, v in g], [v for _, v in e], atol=atol)


# ---- kept crops ------------------------------------------------------------------------------
def test_a_kept_crop_gives_back_a_112_template_crop_to_the_rounding_of_two_warps():
    image = crops(1, size=112, seed=1)[0]
    kept = kept_from_crop(image, np.asarray(arcface_template(112)))
    assert kept.shape == (KEPT_SIZE, KEPT_SIZE, 3)
    assert kept[:16].max() == 0 and kept[-16:].max() == 0  # the margin the crop does not cover
    again = model_crop(kept, np.asarray(arcface_template(112)), 112).astype(int)
    assert np.abs(again - image).max() <= 2  # each bilinear warp rounds by at most one grey level


def test_a_kept_crop_embeds_like_the_face_aligned_straight_onto_the_models_template():
    """A face found in a larger image: its kept crop (one warp) cut for the model (a second
    warp) against one warp onto the model's template, as the detector's alignment does."""
    pipeline = linear_pipeline(NEW, 24)
    images = crops(6, size=96, seed=2)
    landmarks = np.asarray(arcface_template(48)) + np.array([20.0, 14.0])  # a 48 px face, off centre
    target = pipeline.model.template
    direct = np.stack([warp_affine(image, umeyama(landmarks, target), (16, 16)) for image in images])
    kept = [kept_from_landmarks(image, landmarks) for image in images]
    assert np.abs(np.stack([model_crop(k, target, 16) for k in kept]).astype(int) - direct).max() <= 3
    direct_emb = pipeline.embed_tensors(torch.stack([to_tensor(c) for c in direct])).numpy()
    again = pipeline.embed_kept(kept, progress=False)
    assert np.allclose((direct_emb * again).sum(1), 1.0, atol=1e-3)


def test_crops_are_kept_sealed_only_where_the_gallery_keeps_them(store_maker):
    images = crops(3, size=20, seed=3)
    with store_maker.open(key=KEY) as store:
        store.create_gallery("kept", "m", OLD, {}, 4, keep_crops=True)
        store.create_gallery("plain", "m", OLD, {}, 4)
        faces = [NewFace(f"p{i}", np.eye(4)[i], {}, crop=im) for i, im in enumerate(images)]
        kept_ids = [f.id for f in store.add_faces("kept", faces)]
        plain_ids = [f.id for f in store.add_faces("plain", faces)]
        assert store.gallery("kept").keep_crops and not store.gallery("plain").keep_crops
        for got, image in zip(store.crops("kept", kept_ids), images, strict=True):
            assert np.array_equal(got, image)
        assert store.crops("plain", plain_ids) == [None] * 3
        at_rest = store_maker.bytes_at_rest()
        assert all(encode_crop(im, "") not in at_rest for im in images)  # sealed, not in clear
        with pytest.raises(StoreError, match=r"a crop is an \(H, W, 3\) uint8 RGB image"):
            store.add_faces("kept", [NewFace("p9", np.ones(4), {}, crop=np.zeros((4, 4)))])


def test_a_sealed_crop_does_not_open_as_another_faces_crop(store_maker):
    with store_maker.open(key=KEY) as store:
        store.create_gallery("g", "m", OLD, {}, 4, keep_crops=True)
        ids = [
            f.id for f in store.add_faces("g", [NewFace(f"p{i}", np.eye(4)[i], {}, crops(1, 8, i)[0]) for i in (0, 1)])
        ]
        store._db.execute(swap_crops_sql(store_maker.backend), (ids[1], ids[0]))
        with pytest.raises(StoreKeyError, match=f"crop {ids[0]} does not open"):
            store.crops("g", [ids[0]])


def swap_crops_sql(backend: str) -> str:
    mark = "?" if backend == "sqlite" else "%s"
    return f"UPDATE faces SET crop = (SELECT crop FROM faces WHERE id = {mark}) WHERE id = {mark}"


def test_erased_crops_leave_the_bytes_at_rest(store_maker, request):
    if store_maker.backend == "postgres":  # as for vectors: see postgres.py and test_store.py
        request.applymarker(pytest.mark.xfail(strict=True, reason="PostgreSQL keeps deleted rows in its WAL"))
    images = crops(3, size=24, seed=4)
    with store_maker.open() as store:  # plaintext: a crop's PNG bytes would be visible
        store.create_gallery("g", "m", OLD, {}, 4, keep_crops=True)
        ids = [
            f.id for f in store.add_faces("g", [NewFace(f"p{i}", np.eye(4)[i], {}, im) for i, im in enumerate(images)])
        ]
        png = [encode_crop(im, "") for im in images]
        assert all(p in store_maker.bytes_at_rest() for p in png)
        store.delete_subject("g", "p1")
        store.delete_face("g", ids[2])
    at_rest = store_maker.bytes_at_rest()
    assert png[1] not in at_rest and png[2] not in at_rest and png[0] in at_rest


# ---- the schema upgrade ----------------------------------------------------------------------
def downgrade_to_schema_1(store_maker) -> None:
    """What a store written by the previous version looks like: no crop or migration columns."""
    drops = [
        "ALTER TABLE galleries DROP COLUMN keep_crops",
        "ALTER TABLE galleries DROP COLUMN migration",
        "ALTER TABLE faces DROP COLUMN crop",
    ]
    if store_maker.backend == "sqlite":
        with sqlite3.connect(store_maker.root / "store.db") as db:
            for statement in [*drops, "UPDATE meta SET value = '1' WHERE key = 'schema'"]:
                db.execute(statement)
        return
    from psycopg.conninfo import conninfo_to_dict

    database = conninfo_to_dict(store_maker.url)["dbname"]
    for statement in [*drops, "UPDATE facerec_meta SET value = '1' WHERE key = 'schema'"]:
        store_maker.server.execute(statement, database)


def schema_of(store_maker) -> str:
    if store_maker.backend == "sqlite":
        with sqlite3.connect(store_maker.root / "store.db") as db:
            return db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0]
    from psycopg.conninfo import conninfo_to_dict

    database = conninfo_to_dict(store_maker.url)["dbname"]
    return store_maker.server.execute("SELECT value FROM facerec_meta WHERE key = 'schema'", database)[0][0]


def test_a_schema_1_store_is_upgraded_when_opened_and_keeps_its_faces(store_maker):
    vectors = unit(np.random.default_rng(5).standard_normal((5, 8)))
    with store_maker.open(key=KEY) as store:
        store.create_gallery("g", "m", OLD, {"detector": "mtcnn"}, 8)
        ids = [f.id for f in store.add_faces("g", [NewFace(f"p{i % 2}", v, {"i": i}) for i, v in enumerate(vectors)])]
    downgrade_to_schema_1(store_maker)
    with pytest.raises(StoreKeyError, match="wrong key"):
        store_maker.open(key=bytes(32))  # refused before anything is changed
    assert schema_of(store_maker) == "1"
    with store_maker.open(key=KEY) as store:
        record = store.gallery("g")
        assert (record.keep_crops, record.migration, record.pipeline) == (False, None, {"detector": "mtcnn"})
        assert np.allclose(store.vectors("g", ids), vectors, atol=1e-6)
        assert store.crops("g", ids) == [None] * 5
        assert store.search("g", vectors[3], k=1)[0][0].face_id == ids[3]
        store.create_gallery("new", "m", OLD, {}, 8, keep_crops=True)  # the new columns work
        assert store.gallery("new").keep_crops and store.check_integrity() == []
    assert schema_of(store_maker) == str(SCHEMA_VERSION) == "2" and sorted(UPGRADES) == [2]


# ---- migration -------------------------------------------------------------------------------
def test_a_map_between_exactly_related_spaces_loses_nothing(store_maker):
    """new = old A with A semi-orthogonal (16 -> 24): the migrated gallery answers every probe
    as a gallery enrolled again with the new model does."""
    rng = np.random.default_rng(6)
    a = semi_orthogonal(16, 24)
    people = [f"p{i % 12}" for i in range(36)]
    old_gallery = unit(rng.standard_normal((36, 16)))
    calibration_old = unit(rng.standard_normal((200, 16)))  # other faces, embedded by both models
    probes = unit(old_gallery[::3] + 0.3 * rng.standard_normal((12, 16))) @ a
    new = linear_pipeline(NEW, 24)
    with store_maker.open(key=KEY) as store:
        store.create_gallery("old", "m0", OLD, {"detector": "mtcnn"}, 16)
        store.create_subject("old", "nobody-yet", {"display": "N. Y."})
        store.add_faces(
            "old", [NewFace(p, v, {"row": i}) for i, (p, v) in enumerate(zip(people, old_gallery, strict=True))]
        )
        store.create_gallery("re-enrolled", "m1", NEW, {}, 24)
        store.add_faces("re-enrolled", [NewFace(p, v) for p, v in zip(people, old_gallery @ a, strict=True)])
        done = migrate_gallery(
            store, "old", new, "migrated", Calibration(calibration_old, calibration_old @ a, "cal"), False
        )
        assert (done.mapped, done.re_embedded) == (36, 0)
        assert_same_results(search_table(store, "migrated", probes), search_table(store, "re-enrolled", probes))
        record = store.gallery("migrated")
        assert (record.digest, record.dimension, record.keep_crops) == (NEW, 24, False)
        assert record.migration["from_model"] == "m0" and record.migration["from_digest"] == OLD
        assert record.migration["mapped"] == 36 and record.migration["map"]["calibration"] == 200
        assert record.migration["map"]["loss"] < 1e-6 and record.migration["map"]["calibration_source"] == "cal"
        assert store.subjects("migrated")[0].metadata == {"display": "N. Y."}
        first = store.faces("migrated")[0]
        assert first.metadata["row"] == 0 and first.metadata["how"] == MAPPED
        assert store.counts("old").faces == 36  # the old gallery is left as it was


def test_kept_crops_are_embedded_again_and_the_rest_mapped(store_maker):
    old, new = linear_pipeline(OLD, 16, seed=1), linear_pipeline(NEW, 24, seed=2)
    images = crops(8, size=40, seed=7)
    enrolled = [old.represent_keeping_crop(image) for image in images]
    calibration = crops(60, size=40, seed=8)
    cal = Calibration(
        np.stack([old.represent(c) for c in calibration]), np.stack([new.represent(c) for c in calibration]), "cal"
    )
    with store_maker.open() as store:
        store.create_gallery("old", old.model.name, OLD, old.describe(), 16, keep_crops=True)
        with_crops = [NewFace(f"p{i}", e, {}, crop=k) for i, (e, k) in enumerate(enrolled[:5])]
        store.add_faces("old", with_crops + [NewFace(f"p{i}", e) for i, (e, _) in enumerate(enrolled[5:], 5)])
        done = migrate_gallery(store, "old", new, "migrated", cal, progress=False)
        assert (done.re_embedded, done.mapped) == (5, 3) and done.fitted is not None
        faces = store.faces("migrated")
        got = store.vectors("migrated", [f.id for f in faces])
        assert np.allclose(got[:5], new.embed_kept([k for _, k in enrolled[:5]], progress=False), atol=1e-5)
        assert np.allclose(got[5:], done.fitted.apply(np.stack([e for e, _ in enrolled[5:]])), atol=1e-5)
        assert [f.metadata["how"] for f in faces] == [RE_EMBEDDED] * 5 + [MAPPED] * 3
        assert all(
            np.array_equal(a, k)
            for a, (_, k) in zip(store.crops("migrated", [f.id for f in faces[:5]]), enrolled[:5], strict=True)
        )
        assert store.gallery("migrated").migration["re_embedded"] == 5


def test_a_gallery_with_every_crop_needs_no_calibration(store_maker):
    old, new = linear_pipeline(OLD, 16, seed=1), linear_pipeline(NEW, 24, seed=2)
    images = crops(4, size=40, seed=9)
    with store_maker.open() as store:
        store.create_gallery("old", "m1", OLD, {}, 16, keep_crops=True)
        faces = [
            NewFace(f"p{i}", *old.represent_keeping_crop(im)[:1], crop=old.represent_keeping_crop(im)[1])
            for i, im in enumerate(images)
        ]
        store.add_faces("old", faces)
        done = migrate_gallery(store, "old", new, "new", progress=False)
        assert (done.re_embedded, done.mapped, done.fitted) == (4, 0, None)
        assert "map" not in store.gallery("new").migration


def test_migration_refuses_what_it_cannot_do_and_leaves_nothing_behind(store_maker, monkeypatch):
    new = linear_pipeline(NEW, 24)
    rng = np.random.default_rng(10)
    cal_old = unit(rng.standard_normal((30, 16)))
    with store_maker.open() as store:
        store.create_gallery("old", "m0", OLD, {}, 16)
        store.add_faces("old", [NewFace(f"p{i}", v) for i, v in enumerate(unit(rng.standard_normal((4, 16))))])
        with pytest.raises(StoreError, match="4 faces of gallery 'old' have no kept crop: give a calibration set"):
            migrate_gallery(store, "old", new, "t", progress=False)
        with pytest.raises(DataError, match=r"do not match the old gallery's \(16\) and the new model's \(24\)"):
            migrate_gallery(store, "old", new, "t", Calibration(cal_old, cal_old, "c"), progress=False)
        with pytest.raises(DataError, match="3 faces are too few"):
            migrate_gallery(store, "old", new, "t", Calibration(cal_old[:3], rng.random((3, 24)), "c"), progress=False)
        with pytest.raises(StoreError, match="already holds embeddings of model 'm0'"):
            migrate_gallery(store, "old", linear_pipeline(OLD, 16), "t", progress=False)
        store.create_gallery("taken", "m", NEW, {}, 24)
        with pytest.raises(AlreadyExists, match="gallery 'taken' already exists"):
            migrate_gallery(store, "old", new, "taken", Calibration(cal_old, rng.random((30, 24)), "c"), progress=False)
        monkeypatch.setattr(store, "_seal", lambda *args: (_ for _ in ()).throw(RuntimeError("power cut")))
        with pytest.raises(RuntimeError, match="power cut"):
            migrate_gallery(store, "old", new, "t", Calibration(cal_old, rng.random((30, 24)), "c"), progress=False)
        assert [g.name for g in store.galleries()] == ["old", "taken"]
