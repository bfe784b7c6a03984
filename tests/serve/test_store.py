"""The gallery store, one suite over every backend (`store` / `store_maker` in conftest): galleries,
subjects, faces, search against brute force, erasure across restarts, the model check,
encryption at rest, interrupted writes, and the HNSW index's recall."""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from facerec.core.files import save_npz
from facerec.serve.store import (
    AlreadyExists,
    IndexPolicy,
    ModelMismatch,
    NewFace,
    StoreError,
    StoreKeyError,
    UnknownFace,
    UnknownGallery,
    UnknownSubject,
    new_key_text,
    open_store,
)
from facerec.serve.store.crypto import KEY_ENV, parse_key
from facerec.serve.store.index import GalleryIndex
from facerec.serve.store.legacy import import_npz

DIGEST_A, DIGEST_B = "a" * 64, "b" * 64
KEY = bytes(range(32))


def unit_vectors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def new_gallery(store, name: str = "g", dim: int = 16, digest: str = DIGEST_A):
    return store.create_gallery(name, f"model-{digest[0]}", digest, {"detector": "mtcnn", "flip": True}, dim)


def enroll(store, vectors: np.ndarray, subjects: list[str], gallery: str = "g") -> list[int]:
    faces = [NewFace(s, v, {"row": i}) for i, (s, v) in enumerate(zip(subjects, vectors, strict=True))]
    return [f.id for f in store.add_faces(gallery, faces)]


def brute_force(vectors: np.ndarray, ids: list[int], subjects: list[str], query: np.ndarray, k: int):
    """(subject, face id, score) of the k best subjects by their best face, in plain numpy."""
    scores = vectors @ query
    best: dict[str, tuple[int, float]] = {}
    for face, subject, score in zip(ids, subjects, scores.tolist(), strict=True):
        if subject not in best or score > best[subject][1]:
            best[subject] = (face, score)
    ranked = sorted(best.items(), key=lambda kv: -kv[1][1])[:k]
    return [(subject, face, score) for subject, (face, score) in ranked]


# ---- galleries, subjects, faces --------------------------------------------------------------
def test_galleries_are_created_listed_and_deleted(store):
    new_gallery(store, "b")
    created = new_gallery(store, "a", dim=8, digest=DIGEST_B)
    assert [g.name for g in store.galleries()] == ["a", "b"]
    assert store.gallery("a") == created
    assert created.pipeline == {"detector": "mtcnn", "flip": True} and created.dimension == 8
    with pytest.raises(AlreadyExists, match="gallery 'a' already exists"):
        new_gallery(store, "a")
    store.delete_gallery("a")
    with pytest.raises(UnknownGallery, match=r"no gallery 'a' in .* \(galleries: b\)"):
        store.gallery("a")
    assert store.counts("b").faces == 0


def test_subjects_and_faces_with_their_metadata(store):
    new_gallery(store)
    ann = store.create_subject("g", "ann", {"display": "Ann Example"})
    assert ann.metadata == {"display": "Ann Example"}
    with pytest.raises(AlreadyExists, match="subject 'ann' already exists in gallery 'g'"):
        store.create_subject("g", "ann")
    vectors = unit_vectors(3, 16)
    with pytest.raises(UnknownSubject, match="no subject 'bob' in gallery 'g'"):
        store.add_faces("g", [NewFace("bob", vectors[0])], create_subjects=False)
    ids = enroll(store, vectors, ["ann", "bob", "bob"])
    assert [s.name for s in store.subjects("g")] == ["ann", "bob"]
    assert [(f.id, f.subject, f.metadata) for f in store.faces("g", "bob")] == [
        (ids[1], "bob", {"row": 1}),
        (ids[2], "bob", {"row": 2}),
    ]
    assert store.counts("g").subjects == 2 and store.counts("g").faces == 3
    store.delete_face("g", ids[1])
    with pytest.raises(UnknownFace, match=f"no face {ids[1]} in gallery 'g'"):
        store.delete_face("g", ids[1])
    assert np.allclose(store.vectors("g", [ids[2], ids[0]]), vectors[[2, 0]], atol=1e-6)
    with pytest.raises(UnknownSubject, match="no subject 'cy'"):
        store.faces("g", "cy")


def test_bad_input_is_refused_with_a_message_and_nothing_written(store):
    new_gallery(store, dim=4)
    bad = [
        ([NewFace("ann", np.ones(5))], "the face of .ann.: expected 4 values"),
        ([NewFace("ann", [1, np.nan, 0, 0])], "NaN or infinite"),
        ([NewFace("ann", np.zeros(4))], "a vector of zeros"),
        ([NewFace("ann", np.ones(4), {"when": object()})], "metadata of the face of 'ann' is not JSON"),
        ([NewFace(" ann", np.ones(4))], "leading or trailing spaces"),
    ]
    for faces, message in bad:
        with pytest.raises(StoreError, match=message):
            store.add_faces("g", faces)
    with pytest.raises(StoreError, match="k must be at least 1"):
        store.search("g", np.ones(4), k=0)
    with pytest.raises(StoreError, match="not a cosine similarity"):
        store.set_threshold("g", 1.5)
    with pytest.raises(UnknownGallery):
        store.add_faces("nope", [NewFace("ann", np.ones(4))])
    assert store.counts("g").faces == 0 and store.subjects("g") == []


def test_the_operator_sets_and_clears_a_gallery_threshold(store):
    new_gallery(store)
    assert store.set_threshold("g", 0.42).threshold == 0.42
    assert store.set_threshold("g", None).threshold is None


# ---- search ----------------------------------------------------------------------------------
def APPROXIMATE_AT(limit: int) -> list[IndexPolicy]:
    """Each approximate index past `limit` faces, set to search everything (the inverted file
    probes every list), so its answers must equal brute force: the plumbing (ids, subjects,
    deletions) is under test here, recall below."""
    return [
        IndexPolicy(exact_limit=limit, approximate="ivf", ivf_probe_fraction=1.0),
        IndexPolicy(exact_limit=limit, approximate="hnsw"),
    ]


@pytest.mark.parametrize("policy", [IndexPolicy(), *APPROXIMATE_AT(50)], ids=["exact", "ivf", "hnsw"])
def test_search_matches_brute_force_best_face_per_subject(store_maker, policy):
    vectors = unit_vectors(400, 16, seed=1)
    subjects = [f"p{i % 37}" for i in range(len(vectors))]  # 10 or 11 faces each
    queries = unit_vectors(25, 16, seed=2)
    with store_maker.open(policy=policy) as store:
        new_gallery(store)
        ids = enroll(store, vectors, subjects)
        found = store.search("g", queries, k=5)
    assert len(found) == len(queries)
    for query, matches in zip(queries, found, strict=True):
        expected = brute_force(vectors, ids, subjects, query, 5)
        assert [(m.subject, m.face_id) for m in matches] == [(s, f) for s, f, _ in expected]
        assert [m.score for m in matches] == pytest.approx([s for *_, s in expected], abs=1e-5)


def test_top_k_has_each_subject_once_and_stops_at_the_gallery(store):
    new_gallery(store)
    vectors = unit_vectors(6, 16)
    enroll(store, vectors, ["ann", "ann", "ann", "bob", "bob", "cy"])
    matches = store.search("g", vectors[0], k=10)[0]
    assert sorted(m.subject for m in matches) == ["ann", "bob", "cy"]
    assert matches[0].subject == "ann" and matches[0].score == pytest.approx(1.0, abs=1e-6)
    assert store.search("g", vectors[:1], k=1)[0] == matches[:1]


def test_a_search_returns_no_vectors(store):
    new_gallery(store)
    enroll(store, unit_vectors(2, 16), ["ann", "bob"])
    match = store.search("g", unit_vectors(1, 16), k=1)[0][0]
    assert not any(isinstance(value, np.ndarray) for value in vars(match).values())


def test_another_store_instance_sees_writes_at_its_next_search(store_maker):
    """Two processes on one store: each search follows what the other committed."""
    vectors = unit_vectors(4, 16)
    with store_maker.open() as writer, store_maker.open() as reader:
        new_gallery(writer)
        enroll(writer, vectors[:2], ["ann", "bob"])
        assert {m.subject for m in reader.search("g", vectors[0], k=5)[0]} == {"ann", "bob"}
        writer.delete_subject("g", "ann")
        enroll(writer, vectors[2:3], ["cy"])
        assert {m.subject for m in reader.search("g", vectors[0], k=5)[0]} == {"bob", "cy"}


def test_replicas_on_one_store_see_each_others_enrolments_and_erasures(store_maker):
    """Two store objects on one database (two service replicas), both with their index in memory:
    what one enrolls the other finds, what one erases the other never returns, and each one's
    own writes after the other's keep its index right."""
    vectors = unit_vectors(40, 16, seed=11)
    subjects = [f"p{i % 8}" for i in range(40)]
    with store_maker.open() as first, store_maker.open() as second:
        new_gallery(first)
        ids = enroll(first, vectors[:20], subjects[:20])
        assert second.search("g", vectors[0], k=1)[0][0].face_id == ids[0]
        ids += enroll(second, vectors[20:], subjects[20:])
        assert [m[0].face_id for m in first.search("g", vectors, k=1)] == ids
        second.delete_subject("g", "p1")
        second.delete_face("g", ids[2])
        first.delete_face("g", ids[3])  # a write of its own right after the other's
        erased = {ids[i] for i in range(40) if subjects[i] == "p1"} | {ids[2], ids[3]}
        for replica in (first, second):
            found = {m.face_id for matches in replica.search("g", vectors, k=8) for m in matches}
            assert not found & erased and "p1" not in {m.subject for m in replica.search("g", vectors[1], k=8)[0]}
            assert replica.counts("g").faces == 40 - len(erased)
        second.delete_gallery("g")
        with pytest.raises(UnknownGallery):
            first.search("g", vectors[0], k=1)
        new_gallery(second)
        enroll(second, vectors[:1], ["new"])
        assert [m.subject for m in first.search("g", vectors[0], k=5)[0]] == ["new"]


def test_replicas_enrolling_at_once_lose_no_face(store_maker):
    vectors = unit_vectors(60, 16, seed=12)
    with store_maker.open() as first, store_maker.open() as second:
        new_gallery(first)
        first.search("g", vectors[0], k=1)
        second.search("g", vectors[0], k=1)
        batches = [(first, vectors[:30], "a"), (second, vectors[30:], "b")]
        with ThreadPoolExecutor(2) as pool:
            written = list(pool.map(lambda b: [enroll(b[0], b[1][i : i + 1], [b[2]])[0] for i in range(30)], batches))
        ids = written[0] + written[1]
        assert len(set(ids)) == 60
        for replica in (first, second):
            assert [m[0].face_id for m in replica.search("g", vectors, k=1)] == ids


# ---- erasure ---------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", [IndexPolicy(), *APPROXIMATE_AT(20)], ids=["exact", "ivf", "hnsw"])
def test_erased_faces_and_subjects_are_never_returned_again(store_maker, policy):
    vectors = unit_vectors(60, 16, seed=3)
    subjects = [f"p{i % 6}" for i in range(60)]
    with store_maker.open(policy=policy) as store:
        new_gallery(store)
        ids = enroll(store, vectors, subjects)
        store.search("g", vectors[0], k=1)  # the index is in memory before the deletions
        assert store.delete_subject("g", "p0") == 10
        store.delete_face("g", ids[1])
        assert_erased(store, vectors, ids)
    with store_maker.open(policy=policy) as reopened:  # a restart
        assert_erased(reopened, vectors, ids)
        assert "p0" not in {s.name for s in reopened.subjects("g")}
        with pytest.raises(UnknownFace):
            reopened.vectors("g", [ids[0]])


def assert_erased(store, vectors: np.ndarray, ids: list[int]) -> None:
    for matches in store.search("g", vectors, k=6):
        assert "p0" not in {m.subject for m in matches}
        assert ids[1] not in {m.face_id for m in matches}
    assert store.counts("g").faces == 49


def test_erased_vectors_leave_the_bytes_at_rest(store_maker, request):
    if store_maker.backend == "postgres":
        # documented in postgres.py: the server keeps a deleted row in its write-ahead log (and in
        # the table until VACUUM); there, only a keyed store keeps erased vectors unreadable
        request.applymarker(pytest.mark.xfail(strict=True, reason="PostgreSQL keeps deleted rows in its WAL"))
    with store_maker.open() as store:  # plaintext: the vector's bytes would be visible
        new_gallery(store)
        stored = store.vectors("g", enroll(store, unit_vectors(3, 16, seed=4), ["ann", "bob", "cy"]))
        assert stored[1].tobytes() in store_maker.bytes_at_rest()
        store.delete_subject("g", "bob")
    at_rest = store_maker.bytes_at_rest()
    assert stored[1].tobytes() not in at_rest and stored[0].tobytes() in at_rest


# ---- the model check, encryption, durability -------------------------------------------------
def test_a_gallery_refuses_another_model_naming_both(store):
    new_gallery(store, digest=DIGEST_A)
    assert store.check_model("g", "model-a", DIGEST_A).digest == DIGEST_A
    refused = r"gallery 'g' in .* holds embeddings of model 'model-a' \(digest a{12}\), not of 'other' \(digest b{12}\)"
    with pytest.raises(ModelMismatch, match=refused):
        store.check_model("g", "other", DIGEST_B)


def test_vectors_are_encrypted_at_rest_and_a_wrong_key_is_refused(store_maker):
    vector = unit_vectors(1, 16, seed=5)[0]
    with store_maker.open(key=KEY) as store:
        new_gallery(store)
        stored = store.vectors("g", enroll(store, vector[None], ["ann"]))[0]
        assert stored.tobytes() not in store_maker.bytes_at_rest()
    with pytest.raises(StoreKeyError, match=r"does not open gallery store .* \(wrong key\)"):
        store_maker.open(key=bytes(32))
    with pytest.raises(StoreKeyError, match="is encrypted: set FACEREC_STORE_KEY"):
        store_maker.open()
    with store_maker.open(key=KEY) as reopened:
        assert reopened.search("g", vector, k=1)[0][0].score == pytest.approx(1.0, abs=1e-6)
        assert np.allclose(reopened.vectors("g", [reopened.faces("g")[0].id])[0], vector, atol=1e-6)


def test_an_interrupted_write_leaves_no_half_written_subject(store_maker, monkeypatch):
    vectors = unit_vectors(4, 16, seed=6)
    with store_maker.open() as store:
        new_gallery(store)
        enroll(store, vectors[:1], ["ann"])
        store.search("g", vectors[0], k=1)
        store_maker.fail_after(store, monkeypatch, vectors=2)
        with pytest.raises(RuntimeError, match="power cut"):
            enroll(store, vectors[1:], ["bob", "bob", "cy"])
        assert [s.name for s in store.subjects("g")] == ["ann"]
        assert {m.subject for m in store.search("g", vectors, k=5)[1]} == {"ann"}
        assert store.check_integrity() == []
    with store_maker.open() as reopened:
        assert reopened.counts("g").faces == 1 and reopened.check_integrity() == []


def test_integrity_check_passes_after_every_kind_of_write(store):
    new_gallery(store)
    ids = enroll(store, unit_vectors(5, 16), ["a", "a", "b", "c", "c"])
    store.delete_face("g", ids[0])
    store.delete_subject("g", "c")
    store.set_threshold("g", 0.3)
    new_gallery(store, "h")
    store.delete_gallery("h")
    assert store.check_integrity() == []


# ---- opening a store --------------------------------------------------------------------------
def test_open_store_takes_its_key_from_a_file_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(StoreKeyError, match="no key for the new gallery store"):
        open_store(tmp_path / "s.db")
    key_file = tmp_path / "key"
    key_file.write_text(new_key_text() + "\n")
    os.chmod(key_file, 0o600)
    open_store(tmp_path / "s.db", key_file=key_file).close()
    monkeypatch.setenv(KEY_ENV, key_file.read_text())
    open_store(tmp_path / "s.db").close()
    monkeypatch.setenv(KEY_ENV, "not a key")
    with pytest.raises(StoreKeyError, match=r"\$FACEREC_STORE_KEY does not hold a 256-bit key"):
        open_store(tmp_path / "s.db")
    assert len(parse_key("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=", "base64")) == 32


def test_open_store_explains_what_it_cannot_open(tmp_path, monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)
    with pytest.raises(StoreError, match="gallery store not found"):
        open_store(tmp_path / "none.db", create=False)
    with pytest.raises(StoreError, match=r"old \.npz gallery, not a store: import it with `facerec gallery import"):
        open_store(tmp_path / "g.npz", plaintext=True)
    (tmp_path / "text.db").write_text("hello, world" * 100)
    with pytest.raises(StoreError, match="is not a facerec gallery store"):
        open_store(tmp_path / "text.db", plaintext=True)
    with pytest.raises(StoreError, match="cannot open gallery store"):
        open_store(tmp_path / "text.db" / "store.db", plaintext=True)
    open_store(tmp_path / "plain.db", plaintext=True).close()
    monkeypatch.setenv(KEY_ENV, new_key_text())
    with pytest.raises(StoreKeyError, match="keeps its vectors unencrypted"):
        open_store(tmp_path / "plain.db")


# ---- old .npz galleries ----------------------------------------------------------------------
def old_gallery(path, digest: str = DIGEST_A):
    vectors = unit_vectors(4, 16, seed=7)
    names = np.array(["ann", "ann", "bob", "cy"])
    sources = np.array([f"img{i}.jpg" for i in range(4)])
    save_npz(path, model="model-a", digest=digest, detector="mtcnn", embeddings=vectors, names=names, sources=sources)
    return vectors


def test_an_old_npz_gallery_is_imported_whole(store, tmp_path):
    vectors = old_gallery(tmp_path / "old.npz")
    imported = import_npz(store, tmp_path / "old.npz", "old")
    assert (imported.subjects, imported.faces) == (3, 4)
    assert store.gallery("old").digest == DIGEST_A and store.gallery("old").pipeline["detector"] == "mtcnn"
    assert store.search("old", vectors[2], k=1)[0][0].subject == "bob"
    assert store.faces("old", "cy")[0].metadata == {"source": "img3.jpg"}
    with pytest.raises(AlreadyExists, match="gallery 'old' already exists"):
        import_npz(store, tmp_path / "old.npz", "old")


def test_an_import_that_fails_leaves_no_gallery(store, tmp_path, monkeypatch):
    old_gallery(tmp_path / "old.npz")
    old_gallery(tmp_path / "older.npz", digest="")
    with pytest.raises(StoreError, match="predates model digests: name the model that made it"):
        import_npz(store, tmp_path / "older.npz", "older")
    with pytest.raises(ModelMismatch, match=r"holds embeddings of model 'model-a' \(digest a{12}\)"):
        import_npz(store, tmp_path / "old.npz", "old", model="other", digest=DIGEST_B)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "add_faces", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        import_npz(store, tmp_path / "old.npz", "old")
    assert store.galleries() == []


# ---- the approximate index -------------------------------------------------------------------
@pytest.mark.parametrize(("kind", "random_floor"), [("ivf", 0.75), ("hnsw", 0.9)])
def test_approximate_recall_at_1_against_exact_search(kind, random_floor):
    """20k random 64-d faces; probes are enrolled faces with noise (a new photo of someone
    enrolled), as in identification, plus pure random probes, the hardest case for both."""
    n, dim = 20_000, 64
    vectors = unit_vectors(n, dim, seed=8)
    ids = np.arange(1, n + 1)
    subjects = [f"p{i}" for i in range(n)]
    approximate = GalleryIndex.build(dim, IndexPolicy(exact_limit=1000, approximate=kind), ids, subjects, vectors)
    exact = GalleryIndex.build(dim, IndexPolicy(exact_limit=n), ids, subjects, vectors)
    assert approximate.approximate and not exact.approximate
    rng = np.random.default_rng(9)
    noisy = vectors[rng.choice(n, 300, replace=False)] + 0.05 * rng.standard_normal((300, dim)).astype(np.float32)
    # random probes match nobody: the inverted file, which scans a quarter of the lists, misses
    # their (meaningless) best face more often than the graph (measured: 0.79 against 0.98)
    for probes, floor in ((noisy, 0.99), (unit_vectors(300, dim, seed=10), random_floor)):
        probes = probes / np.linalg.norm(probes, axis=1, keepdims=True)
        found, truth = approximate.search(probes, 1), exact.search(probes, 1)
        hits = [g[0].face_id == e[0].face_id for g, e in zip(found, truth, strict=True)]
        assert np.mean(hits) >= floor


def test_inverted_file_follows_additions_and_removals_and_retrains_as_it_grows():
    """Every list probed: the inverted file must answer exactly like brute force after faces are
    added past the point where its lists are retrained and after removals."""
    dim = 16
    policy = IndexPolicy(exact_limit=100, approximate="ivf", ivf_probe_fraction=1.0, ivf_retrain_growth=2.0)
    vectors = unit_vectors(900, dim, seed=11)
    subjects = [f"p{i}" for i in range(900)]
    index = GalleryIndex.build(dim, policy, np.arange(1, 201), subjects[:200], vectors[:200])
    first_lists = index.vectors
    index.add(np.arange(201, 901), subjects[200:], vectors[200:])  # 900 > 2 x 200: retrained
    assert index.vectors is not first_lists and index.approximate
    index.remove(range(1, 901, 3))
    live = np.array([i for i in range(1, 901) if (i - 1) % 3])
    queries = unit_vectors(20, dim, seed=12)
    for query, matches in zip(queries, index.search(queries, 3), strict=True):
        scores = vectors[live - 1] @ query
        best = live[np.argsort(-scores)[:3]]
        assert [m.face_id for m in matches] == best.tolist()
    ids, rows = index.vectors.vectors()
    assert sorted(ids.tolist()) == live.tolist()
    np.testing.assert_allclose(rows[np.argsort(ids)], vectors[live - 1], atol=1e-6)


def test_the_most_faces_of_one_subject_follows_adds_and_removals():
    """Searches read how many faces the largest subject has (it sizes the candidate list that
    holds k subjects); it must equal a count over the live faces after every change."""
    rng = np.random.default_rng(13)
    index = GalleryIndex(8, IndexPolicy())
    live: dict[int, str] = {}
    for step in range(60):
        if live and step % 3 == 2:
            gone = rng.choice(sorted(live), size=min(len(live), int(rng.integers(1, 6))), replace=False)
            index.remove(gone.tolist())
            for face in gone.tolist():
                del live[face]
        else:
            ids = np.arange(1000 * step, 1000 * step + int(rng.integers(1, 8)))
            subjects = [f"p{int(rng.integers(0, 6))}" for _ in ids]
            index.add(ids, subjects, unit_vectors(len(ids), 8, seed=step))
            live.update(zip(ids.tolist(), subjects, strict=True))
        counts = Counter(live.values())
        assert index.most_faces_of_one_subject == max(counts.values(), default=0)


# ---- the PostgreSQL store --------------------------------------------------------------------
def test_open_store_opens_a_postgresql_url(postgres_server, monkeypatch):
    from facerec.serve.store.postgres import PostgresStore

    monkeypatch.delenv(KEY_ENV, raising=False)
    url = postgres_server.new_database()
    with pytest.raises(StoreError, match=r"gallery store not found: .* has no facerec tables"):
        open_store(url, create=False)
    with pytest.raises(StoreKeyError, match="no key for the new gallery store postgresql://"):
        open_store(url)
    monkeypatch.setenv(KEY_ENV, new_key_text())
    with open_store(url) as store:
        assert isinstance(store, PostgresStore)
        new_gallery(store)
    with open_store(url, create=False) as reopened:
        assert [g.name for g in reopened.galleries()] == ["g"]
    with pytest.raises(StoreKeyError, match="is encrypted"):
        monkeypatch.delenv(KEY_ENV)
        open_store(url)


def test_an_unreachable_database_is_named_without_its_password(tmp_path):
    url = f"postgresql://facerec:s3cret@/none?host={tmp_path}&connect_timeout=2"
    with pytest.raises(StoreError, match=r"cannot open gallery store postgresql://facerec:\*\*\*@/none") as error:
        open_store(url, plaintext=True)
    assert "s3cret" not in str(error.value)


def test_a_database_with_other_tables_of_those_names_is_refused(postgres_server):
    url = postgres_server.new_database()
    postgres_server.execute("CREATE TABLE faces (id INTEGER)", database=url_database(url))
    with pytest.raises(StoreError, match="already has tables faces that are not a facerec store"):
        open_store(url, plaintext=True)


def test_a_replica_connects_again_after_the_server_dropped_it(postgres_server):
    import psycopg

    url = postgres_server.new_database()
    vectors = unit_vectors(2, 16, seed=13)
    with open_store(url, plaintext=True) as store:
        new_gallery(store)
        enroll(store, vectors, ["ann", "bob"])
        store.search("g", vectors[0], k=1)
        postgres_server.execute(f"SELECT pg_terminate_backend({store._db.info.backend_pid})")
        with pytest.raises(psycopg.OperationalError):
            store.search("g", vectors[0], k=1)
        assert store.search("g", vectors[1], k=1)[0][0].subject == "bob"


def url_database(url: str) -> str:
    from psycopg.conninfo import conninfo_to_dict

    return conninfo_to_dict(url)["dbname"]
