"""The stolen-store study (serve/protection.py) on constructed galleries: what a thief reads from a
plaintext store is the embeddings themselves (linking and rank-1 as the vectors give them,
checked with sklearn and a loop); from keyed stores, nothing better than chance."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from facerec.serve.protection import stolen_store_study


def people(n_ids: int, per_id: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_ids, dim))
    ids = np.repeat(np.arange(n_ids), per_id)
    x = centres[ids] + 0.6 * rng.standard_normal((len(ids), dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), np.array([f"p{i}" for i in ids])


def test_a_thief_links_plaintext_vectors_as_the_model_does_and_sealed_ones_at_chance(tmp_path):
    emb, ids = people(40, 3, 16, seed=0)
    first = np.arange(0, len(ids), 3)
    rest = np.setdiff1d(np.arange(len(ids)), first)
    report = stolen_store_study(emb[first], ids[first], emb[rest], ids[rest], tmp_path)
    scores = emb[first] @ emb[rest].T
    same = ids[first][:, None] == ids[rest][None, :]
    plain = report["plaintext"]
    assert plain["linking"]["float32 values"]["auc"] == pytest.approx(roc_auc_score(same.ravel(), scores.ravel()))
    assert plain["rank1_with_own_model"] == np.mean(ids[first][scores.argmax(0)] == ids[rest])
    assert plain["stored_bytes_per_vector"] == [64]
    sealed = report["encrypted"]
    assert sealed["stored_bytes_per_vector"] == [1 + 12 + 64 + 16]  # format, nonce, vector, tag: one size
    # sealed vectors are fresh random bytes on every run, so their AUC is a draw around 0.5; five
    # standard errors of a chance AUC (Hanley & McNeil) keep this from failing one run in millions
    genuine, impostor = int(same.sum()), int((~same).sum())
    chance_se = np.sqrt((genuine + impostor + 1) / (12 * genuine * impostor))
    for view in sealed["linking"].values():
        low, high = view["ci95"]
        assert low < high and abs(view["auc"] - 0.5) < 5 * chance_se
    assert sealed["rank1_with_own_model"] <= 5 * report["chance_rank1"]
    assert plain["rank1_with_own_model"] > 0.9


def test_the_stolen_gallery_command_on_a_tree(tmp_path, tree, capsys):
    import json

    import torch

    from facerec.cli import main
    from facerec.models import build_backbone
    from facerec.models.io import export_model

    cfg = {"name": "lowres_irse8", "embedding_size": 8, "input_size": 16, "options": {"widths": [4, 8, 8, 8]}}
    torch.manual_seed(0)
    model = export_model(tmp_path / "m.pt", build_backbone(cfg["name"], 8, 16, cfg["options"]), cfg)
    out = tmp_path / "out"
    args = ["--images", str(tree), "--model", str(model), "--detector", "none", "--no-cache", "--out", str(out)]
    assert main(["analyze", "stolen-gallery", *args]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("encrypted: linking AUC float32 values") and "plaintext: linking AUC" in printed
    report = json.loads((out / "report.json").read_text())
    assert (report["gallery_faces"], report["probes"]) == (4, 8)
    assert report["encrypted"]["stored_bytes_per_vector"] == [1 + 12 + 32 + 16]
    assert not list(out.glob("*.db*"))  # the thief's copies are not left behind
