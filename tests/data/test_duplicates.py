"""pHash against an independent DCT, Hamming by popcount against a Python loop, the chunked
pair search against a double loop, robustness to re-encoding / resizing / shifting, and the
clean tree."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import near_copy, smooth_image
from facerec.data import duplicates
from facerec.data.duplicates import (
    hamming,
    hash_files,
    hash_matches,
    phash_file,
    phash_of_gray,
    tree_images,
    write_clean_tree,
)
from facerec.errors import DataError


def reference_phash(gray: np.ndarray) -> tuple[int, np.ndarray]:
    """The hash from the DCT-II definition in float64 (no scipy), and each kept coefficient's
    distance to the median (bits too close to it may differ by rounding)."""
    n = gray.shape[0]
    k = np.arange(n)
    basis = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n))  # basis[u, x]
    scale = np.where(k == 0, np.sqrt(1 / n), np.sqrt(2 / n))
    coefficients = np.zeros((n, n))
    for u in range(1, 9):
        for v in range(1, 9):
            coefficients[u, v] = scale[u] * scale[v] * np.sum(gray * np.outer(basis[u], basis[v]))
    block = coefficients[1:9, 1:9]
    median = np.median(block)
    value = sum(1 << (8 * r + c) for r in range(8) for c in range(8) if block[r, c] > median)
    return value, np.abs(block - median)


def test_phash_equals_the_dct_definition():
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(20):
        gray = rng.uniform(0, 255, (32, 32))
        expected, margin = reference_phash(gray)
        got = int(phash_of_gray(gray))
        clear = (margin > 1e-9).reshape(-1)  # bits whose coefficient is not tied with the median
        bits = np.array([(got >> i) & 1 != (expected >> i) & 1 for i in range(64)])
        assert not bits[clear].any()
        checked += clear.sum()
        assert bin(got).count("1") == 32  # 64 distinct values: exactly half above the median
    assert checked > 1200


def test_phash_rejects_a_wrong_shape():
    with pytest.raises(DataError, match="32x32"):
        phash_of_gray(np.zeros((16, 16)))


def test_hamming_by_popcount_equals_a_python_loop():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2**64, 300, dtype=np.uint64)
    b = rng.integers(0, 2**64, 300, dtype=np.uint64)
    expected = [bin(int(x) ^ int(y)).count("1") for x, y in zip(a, b, strict=True)]
    assert hamming(a, b).tolist() == expected
    assert hamming(a[:, None], b[None, :])[3, 7] == bin(int(a[3]) ^ int(b[7])).count("1")


def test_chunked_pair_search_equals_a_double_loop(monkeypatch):
    monkeypatch.setattr(duplicates, "PAIRS_PER_CHUNK", 50)  # many chunks, a partial last one
    rng = np.random.default_rng(2)
    train = rng.integers(0, 2**64, 40, dtype=np.uint64)
    evaluation = rng.integers(0, 2**64, 23, dtype=np.uint64)
    for i, flips in ((0, 0), (5, 3), (9, 6), (12, 7)):  # near copies of training hashes, d bits apart
        bits = sum(1 << int(b) for b in rng.choice(64, flips, replace=False))
        evaluation[i] = train[3 * i] ^ np.uint64(bits)
    matches, nearest = hash_matches(train, evaluation, 6)
    expected = {
        (t, e, bin(int(train[t]) ^ int(evaluation[e])).count("1"))
        for t in range(len(train))
        for e in range(len(evaluation))
        if bin(int(train[t]) ^ int(evaluation[e])).count("1") <= 6
    }
    got = set(zip(matches.train.tolist(), matches.eval.tolist(), matches.score.astype(int).tolist(), strict=True))
    assert got == expected
    assert {(0, 0, 0), (15, 5, 3), (27, 9, 6)} <= got and (36, 12, 7) not in got  # 7 bits: past 6
    for e in range(len(evaluation)):
        assert nearest[e] == min(bin(int(t) ^ int(evaluation[e])).count("1") for t in train)


def test_near_copies_are_found_and_unrelated_images_are_not(tmp_path):
    """On real aligned LFW crops the same edits move the hash as much (docs/benchmarks.md):
    re-encoding and resizing <= 2 bits, a 1 px shift up to 10 (median 4)."""
    rng = np.random.default_rng(3)
    originals = [smooth_image(rng) for _ in range(12)]
    folders = {kind: tmp_path / kind for kind in ("original", "copy", "shifted")}
    for folder in folders.values():
        folder.mkdir()
    for i, image in enumerate(originals):
        Image.fromarray(image).save(folders["original"] / f"{i:02d}.png")
        Image.fromarray(near_copy(image)).save(folders["copy"] / f"{i:02d}.jpg")
        Image.fromarray(near_copy(image, shift=1)).save(folders["shifted"] / f"{i:02d}.jpg")
    hashes = {kind: hash_files(tree_images(folder), progress=False) for kind, folder in folders.items()}
    matches, _ = hash_matches(hashes["original"], hashes["copy"], 4)  # the default threshold
    assert sorted(zip(matches.train.tolist(), matches.eval.tolist(), strict=True)) == [(i, i) for i in range(12)]
    matches, _ = hash_matches(hashes["original"], hashes["shifted"], 10)
    assert sorted(zip(matches.train.tolist(), matches.eval.tolist(), strict=True)) == [(i, i) for i in range(12)]
    assert phash_file(folders["original"] / "00.png") == hashes["original"][0]  # exact duplicate: distance 0
    unrelated, _ = hash_matches(hashes["original"][:6], hashes["original"][6:], 10)
    assert len(unrelated.train) == 0


def test_an_undecodable_file_is_named(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"broken\.jpg"):
        phash_file(tmp_path / "broken.jpg")


def test_clean_tree_leaves_out_exactly_the_flagged_files(tmp_path):
    root = tmp_path / "train"
    for person in ("ann", "bob"):
        (root / person).mkdir(parents=True)
        for k in range(3):
            Image.fromarray(np.full((8, 8, 3), k, np.uint8)).save(root / person / f"{k}.png")
    linked = tmp_path / "linked"  # a tree of linked identity folders, as lfw-people writes
    linked.mkdir()
    (linked / "ann").symlink_to(root / "ann")
    (linked / "bob").symlink_to(root / "bob")
    paths = tree_images(linked)
    assert len(paths) == 6
    flagged = {linked / "ann" / "1.png", linked / "bob" / "0.png"}
    written = write_clean_tree(linked, paths, flagged, tmp_path / "clean")
    kept = {p.relative_to(tmp_path / "clean") for p in tree_images(tmp_path / "clean")}
    assert written == 4
    assert kept == {p.relative_to(linked) for p in paths} - {p.relative_to(linked) for p in flagged}
    assert all((tmp_path / "clean" / k).resolve() == (root / k).resolve() for k in kept)
    with pytest.raises(DataError, match="not empty"):
        write_clean_tree(linked, paths, flagged, tmp_path / "clean")


def test_missing_or_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        tree_images(tmp_path / "nowhere")
    with pytest.raises(DataError, match="no images"):
        tree_images(tmp_path)
    with pytest.raises(DataError, match="both sides"):
        hash_matches(np.zeros(0, np.uint64), np.zeros(3, np.uint64), 6)


def test_paths_are_sorted_and_flat_trees_work(tmp_path):
    for name in ("b.jpg", "a.png", "notes.txt"):
        Image.new("RGB", (8, 8)).save(tmp_path / name) if name != "notes.txt" else (tmp_path / name).write_text("x")
    assert [Path(p).name for p in tree_images(tmp_path)] == ["a.png", "b.jpg"]
