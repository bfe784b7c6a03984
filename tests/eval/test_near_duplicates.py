"""The embedding side of the near-duplicate search: the chunked top-1 cosine against brute
force, and the whole run (report, CSV, PNGs, clean tree) on a small tree with planted copies."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from conftest import near_copy, smooth_image
from facerec.data import duplicates
from facerec.data.duplicates import tree_images, write_clean_tree
from facerec.errors import DataError
from facerec.eval.near_duplicates import Side, compare, cosine_top1, find_near_duplicates
from facerec.pipeline import RecognitionPipeline


def test_cosine_top1_equals_brute_force(monkeypatch):
    monkeypatch.setattr(duplicates, "PAIRS_PER_CHUNK", 64)  # several chunks
    rng = np.random.default_rng(0)
    train = rng.normal(size=(37, 16))
    evaluation = rng.normal(size=(29, 16))
    train /= np.linalg.norm(train, axis=1, keepdims=True)
    evaluation /= np.linalg.norm(evaluation, axis=1, keepdims=True)
    best, score = cosine_top1(train, evaluation)
    for e in range(len(evaluation)):
        sims = [float(np.dot(evaluation[e], t)) for t in train]  # float64 loop
        assert best[e] == int(np.argmax(sims))
        assert score[e] == pytest.approx(max(sims), abs=1e-5)


def pooling_pipeline() -> RecognitionPipeline:
    """A 'model' whose embedding is the mean-free 8x8 thumbnail: the same photo scores ~1,
    unrelated smooth images far less (a stand-in for a face model, independent of training)."""
    net = nn.Sequential(nn.AdaptiveAvgPool2d(8), nn.Flatten(), Centre())
    return RecognitionPipeline.for_network(net, 32, flip=False, batch_size=4)


class Centre(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - x.mean(dim=1, keepdim=True)


@pytest.fixture
def planted(tmp_path):
    """A training tree (3 people x 4 images) and an evaluation set holding an exact copy of
    one training image, a re-encoded/resized/shifted copy of another, and 4 unrelated images."""
    rng = np.random.default_rng(5)
    train, evaluation = tmp_path / "train", tmp_path / "eval"
    images = {}
    for person in ("ann", "bob", "cy"):
        (train / person).mkdir(parents=True)
        for k in range(4):
            images[f"{person}/{k}.png"] = smooth_image(rng, 64)
            Image.fromarray(images[f"{person}/{k}.png"]).save(train / person / f"{k}.png")
    evaluation.mkdir()
    Image.fromarray(images["bob/2.png"]).save(evaluation / "exact.png")
    Image.fromarray(near_copy(images["cy/0.png"], shift=1)).save(evaluation / "edited.jpg")
    for k in range(4):
        Image.fromarray(smooth_image(rng, 64)).save(evaluation / f"other{k}.png")
    return train, evaluation


def test_planted_copies_are_flagged_and_left_out_of_the_clean_tree(planted, tmp_path):
    train, evaluation = planted
    out = tmp_path / "out"
    report, flagged, paths = find_near_duplicates(
        train, [evaluation], out, pooling_pipeline(), max_distance=10, min_cosine=0.95, progress=False
    )
    assert flagged == {train / "bob" / "2.png", train / "cy" / "0.png"}
    counts = report["sets"]["eval"]
    pairs = {(Path(p["train"]).relative_to(train).as_posix(), Path(p["eval"]).name): p for p in counts["pairs"]}
    assert set(pairs) == {("bob/2.png", "exact.png"), ("cy/0.png", "edited.jpg")}
    assert pairs[("bob/2.png", "exact.png")]["hamming"] == 0
    assert pairs[("bob/2.png", "exact.png")]["cosine"] == pytest.approx(1.0, abs=1e-4)
    assert pairs[("bob/2.png", "exact.png")]["methods"] == ["phash", "cosine"]
    assert counts["pairs_combined"] == 2 and counts["train_files_flagged"] == 2
    assert counts["pairs_phash"] >= 2 and counts["pairs_cosine"] >= 1
    assert json.loads((out / "near_duplicates.json").read_text())["train_files_flagged"] == 2
    with open(out / "flagged_train_files.csv") as f:
        assert {row["train_file"] for row in csv.DictReader(f)} == {str(p) for p in flagged}
    assert (out / "examples.png").stat().st_size > 0 and (out / "nearest.png").stat().st_size > 0
    write_clean_tree(train, paths, flagged, tmp_path / "clean")
    kept = {p.relative_to(tmp_path / "clean").as_posix() for p in tree_images(tmp_path / "clean")}
    assert kept == {p.relative_to(train).as_posix() for p in paths} - {"bob/2.png", "cy/0.png"}


def test_the_cache_gives_the_same_report(planted, tmp_path):
    train, evaluation = planted
    runs = [
        find_near_duplicates(train, [evaluation], tmp_path / f"out{i}", pooling_pipeline(), 10, 0.95, False, tmp_path)
        for i in range(2)
    ]
    assert len(list(tmp_path.glob("*.npz"))) == 2  # one per set, reused by the second run
    assert runs[0][0]["sets"] == runs[1][0]["sets"]


def test_bad_thresholds_are_clear_errors(planted, tmp_path):
    train, evaluation = planted
    with pytest.raises(DataError, match="hash-distance"):
        find_near_duplicates(train, [evaluation], tmp_path / "o", pooling_pipeline(), 65, 0.9, False)
    with pytest.raises(DataError, match="cosine"):
        find_near_duplicates(train, [evaluation], tmp_path / "o", pooling_pipeline(), 6, 1.5, False)


def test_a_hash_match_needs_the_embeddings_to_agree():
    """Two different people's aligned crops can hash alike: with hash_min_cosine the embedding
    must confirm the match (orthogonal embeddings: rejected; identical: kept)."""
    paths = [Path("a.png"), Path("b.png")]
    hashes = np.array([5, 5], dtype=np.uint64)  # both eval images hash like training image 0
    train = Side("train", Path("."), paths[:1], hashes[:1], np.array([[1.0, 0.0]], np.float32))
    evaluation = Side("eval", Path("."), paths, hashes, np.array([[0.0, 1.0], [1.0, 0.0]], np.float32))
    loose = compare(train, evaluation, 4, 0.99, hash_min_cosine=-1.0)
    strict = compare(train, evaluation, 4, 0.99, hash_min_cosine=0.8)
    assert loose.by_hash.eval.tolist() == [0, 1] and loose.hash_rejected == 0
    assert strict.by_hash.eval.tolist() == [1] and strict.hash_rejected == 1
    assert [p["eval"] for p in strict.pairs] == ["b.png"] and strict.pairs[0]["methods"] == ["phash", "cosine"]
