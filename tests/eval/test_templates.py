"""Template protocols (IJB layout): readers, pooling and 1:1 / 1:N metrics against brute-force
loops written here, on template sets built from synthetic faces (and from LFW people)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import LFW, needs_lfw, needs_mtcnn
from facerec.data.synthetic import SyntheticFaces
from facerec.data.transforms import to_tensor
from facerec.errors import ConfigError, DataError
from facerec.eval.protocols import build_protocol
from facerec.eval.templates import (
    TemplateFeatures,
    TemplateSet,
    pool_templates,
    read_ijb,
    read_quality,
    read_templates_csv,
    template_metrics,
    write_template_set,
)
from facerec.models import build_backbone
from facerec.pipeline import RecognitionPipeline

FARS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """12 people x 9 synthetic faces -> 36 templates of 3 images, media of 2 + 1 images."""
    root = tmp_path_factory.mktemp("templates")
    SyntheticFaces(12, 9, size=32).write_tree(root / "tree", progress=False)
    summary = write_template_set(root / "tree", root / "set", min_images=9, templates_per_subject=3, media_size=2)
    return root / "set", summary


def clustered(ts: TemplateSet, seed: int = 0, dim: int = 8) -> np.ndarray:
    """Unit embeddings near a random centre per subject (subject = the image's folder), so the
    metrics land between chance and perfect."""
    rng = np.random.default_rng(seed)
    folders = sorted({n.split("/")[0] for n in ts.names})
    centres = {f: rng.normal(size=dim) for f in folders}
    x = np.array([centres[n.split("/")[0]] + 1.2 * rng.normal(size=dim) for n in ts.names])
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---- brute force ----------------------------------------------------------------------------
def brute_pool(ts: TemplateSet, emb: np.ndarray, pooling: str, quality: np.ndarray | None) -> dict[int, np.ndarray]:
    """Template feature by plain loops over the rows, as the module docstring defines them."""
    out = {}
    for t in sorted(set(ts.template.tolist())):
        rows = [r for r in range(len(ts.template)) if ts.template[r] == t]
        if pooling == "mean":
            v = sum(emb[ts.image[r]] for r in rows) / len(rows)
        elif pooling == "media":
            media = sorted({int(ts.media[r]) for r in rows})
            means = []
            for m in media:
                members = [emb[ts.image[r]] for r in rows if ts.media[r] == m]
                means.append(sum(members) / len(members))
            v = sum(means) / len(means)
        else:
            total = sum(quality[ts.image[r]] for r in rows)
            v = sum(quality[ts.image[r]] * emb[ts.image[r]] for r in rows) / total
        out[t] = v / np.sqrt(sum(x * x for x in v))
    return out


def brute_tar_at_far(scores: list[float], same: list[bool], far: float) -> float | None:
    impostors = [s for s, y in zip(scores, same, strict=True) if not y]
    genuine = [s for s, y in zip(scores, same, strict=True) if y]
    if far < 1 / len(impostors):
        return None
    best = 0.0
    for t in [*scores, np.inf]:
        fa = sum(s >= t for s in impostors) / len(impostors)
        if fa <= far:
            best = max(best, sum(s >= t for s in genuine) / len(genuine))
    return best


def brute_auc(scores: list[float], same: list[bool]) -> float:
    genuine = [s for s, y in zip(scores, same, strict=True) if y]
    impostors = [s for s, y in zip(scores, same, strict=True) if not y]
    wins = sum((g > i) + 0.5 * (g == i) for g in genuine for i in impostors)
    return wins / (len(genuine) * len(impostors))


def brute_search(
    feats: dict[int, np.ndarray], gallery: list[tuple[int, int]], probes: list[tuple[int, int]], fpir: float
) -> tuple[dict[int, float], float | None]:
    """(CMC at ranks 1, 5, 10; TPIR at `fpir`) by loops: a subject's score is its best template's."""
    subjects = sorted({s for _, s in gallery})
    ranks, true_scores, non_mated_tops = [], [], []
    for pt, ps in probes:
        score = {s: max(float(feats[pt] @ feats[gt]) for gt, gs in gallery if gs == s) for s in subjects}
        if ps in score:
            ranks.append(sum(v >= score[ps] for v in score.values()))
            true_scores.append(score[ps])
        else:
            non_mated_tops.append(max(score.values()))
    cmc = {k: sum(r <= k for r in ranks) / len(ranks) for k in (1, 5, 10)}
    if fpir < 1 / len(non_mated_tops):
        return cmc, None
    tpir = 0.0
    for t in [*true_scores, -np.inf, np.inf]:
        if sum(s >= t for s in non_mated_tops) / len(non_mated_tops) <= fpir:
            hits = sum(r == 1 and s >= t for r, s in zip(ranks, true_scores, strict=True))
            tpir = max(tpir, hits / len(ranks))
    return cmc, tpir


# ---- readers --------------------------------------------------------------------------------
def test_read_ijb_files(tmp_path):
    """Hand-written IJB-B files (prefix ijbb, galleries S1/S2, images in loose_crop/): every id
    lands where the files put it; an image shared by two templates is one image."""
    (tmp_path / "loose_crop").mkdir()
    for name in ("1.jpg", "2.jpg", "3.jpg", "4.jpg"):
        (tmp_path / "loose_crop" / name).write_bytes(b"x")
    meta = tmp_path / "meta"
    meta.mkdir()
    (meta / "ijbb_face_tid_mid.txt").write_text(
        "1.jpg 11 100\n2.jpg 11 101\n3.jpg 12 102\n4.jpg 13 103\n2.jpg 13 104\n"
    )
    (meta / "ijbb_template_pair_label.txt").write_text("11 12 0\n11 13 1\n")
    header = "TEMPLATE_ID,SUBJECT_ID,FILENAME,SIGHTING_ID\n"
    (meta / "ijbb_1N_gallery_S1.csv").write_text(header + "11,5,img/1.jpg,1\n11,5,img/2.jpg,1\n")
    (meta / "ijbb_1N_gallery_S2.csv").write_text(header + "12,6,img/3.jpg,1\n")
    (meta / "ijbb_1N_probe_mixed.csv").write_text(header + "13,5,img/4.jpg,1\n13,5,frames/7.png,2\n")
    ts = read_ijb(tmp_path, prefix="ijbb")
    assert ts.names == ["1.jpg", "2.jpg", "3.jpg", "4.jpg"]
    assert ts.images[0] == tmp_path / "loose_crop" / "1.jpg"
    assert ts.image.tolist() == [0, 1, 2, 3, 1]
    assert ts.template.tolist() == [11, 11, 12, 13, 13] and ts.media.tolist() == [100, 101, 102, 103, 104]
    assert ts.pairs.t1.tolist() == [11, 11] and ts.pairs.t2.tolist() == [12, 13]
    assert ts.pairs.same.tolist() == [False, True]
    assert sorted(ts.galleries) == ["S1", "S2"]
    assert ts.galleries["S1"].templates.tolist() == [11] and ts.galleries["S1"].subjects.tolist() == [5]
    assert ts.probes.templates.tolist() == [13] and ts.probes.subjects.tolist() == [5]


def test_generic_csv_reads_the_same_set(made):
    root, summary = made
    ijb, csv = read_ijb(root), read_templates_csv(root / "templates.csv", root / "template_pairs.csv")
    assert [p.resolve() for p in ijb.images] == [p.resolve() for p in csv.images]
    for field in ("image", "template", "media"):
        assert getattr(ijb, field).tolist() == getattr(csv, field).tolist()
    assert ijb.pairs.t1.tolist() == csv.pairs.t1.tolist() and ijb.pairs.same.tolist() == csv.pairs.same.tolist()
    assert (summary.subjects, summary.templates, summary.images) == (12, 36, 108)
    assert summary.genuine_pairs == 12 * 3 and summary.impostor_pairs == 36 * 35 // 2 - 36
    assert int(ijb.pairs.same.sum()) == 36 and len(ijb.pairs.same) == 630
    # every template of a person holds only that person's images; media of 2 + 1 images
    for t in ijb.template_ids():
        rows = np.flatnonzero(ijb.template == t)
        assert len({ijb.names[ijb.image[r]].split("/")[0] for r in rows}) == 1
        assert sorted(np.unique(ijb.media[rows], return_counts=True)[1].tolist()) == [1, 2]


def test_made_galleries_are_disjoint_halves_and_probes_the_rest(made):
    ts = read_ijb(made[0])
    g1, g2 = ts.galleries["G1"], ts.galleries["G2"]
    assert len(g1.templates) == len(g2.templates) == 6 and not set(g1.subjects) & set(g2.subjects)
    assert set(g1.subjects) | set(g2.subjects) == set(ts.probes.subjects.tolist())
    assert not set(ts.probes.templates) & (set(g1.templates) | set(g2.templates))
    assert len(ts.probes.templates) == 24


def test_generic_csv_without_pairs_pairs_every_two_templates(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "t.csv").write_text("1,7,a.png\n2,7,b.png\n3,8,c.png\n3,8,a.png\n")
    ts = read_templates_csv(tmp_path / "t.csv")
    assert list(zip(ts.pairs.t1.tolist(), ts.pairs.t2.tolist(), strict=True)) == [(1, 2), (1, 3), (2, 3)]
    assert ts.pairs.same.tolist() == [True, False, False]
    assert ts.image.tolist() == [0, 1, 2, 0] and len(set(ts.media.tolist())) == 4  # one media per row


# ---- pooling --------------------------------------------------------------------------------
@pytest.mark.parametrize("pooling", ["mean", "media", "quality"])
def test_pooling_equals_loops(made, pooling):
    ts = read_ijb(made[0])
    emb = clustered(ts)
    quality = np.random.default_rng(1).uniform(0.1, 3.0, len(ts.images))
    pooled = pool_templates(ts, emb, pooling, quality)
    expected = brute_pool(ts, emb, pooling, quality)
    assert pooled.ids.tolist() == sorted(expected)
    np.testing.assert_allclose(pooled.features, np.array([expected[t] for t in pooled.ids]), atol=1e-12)


def test_media_pooling_counts_each_media_once():
    """Template of media A (two images) and B (one): media pooling halves A's weight."""
    ts = TemplateSet(
        [Path("a"), Path("b"), Path("c")], ["a", "b", "c"], np.arange(3), np.ones(3, int), np.array([1, 1, 2])
    )
    emb = np.eye(3)
    media = pool_templates(ts, emb, "media").features[0]
    mean = pool_templates(ts, emb, "mean").features[0]
    np.testing.assert_allclose(media, np.array([0.25, 0.25, 0.5]) / np.linalg.norm([0.25, 0.25, 0.5]))
    np.testing.assert_allclose(mean, np.ones(3) / np.sqrt(3))


def test_quality_pooling_weighs_as_documented():
    """w_i = q_i / sum q: with q_i = ||x_i|| the template is the mean of the raw features x_i;
    a weight of 0 drops an image, a weight of 2 counts it twice, and the scale of q is irrelevant."""
    rng = np.random.default_rng(3)
    raw = rng.normal(size=(4, 5)) * rng.uniform(0.2, 5.0, size=(4, 1))
    norms = np.linalg.norm(raw, axis=1)
    unit = raw / norms[:, None]
    ts = TemplateSet([Path(str(i)) for i in range(4)], list("abcd"), np.arange(4), np.ones(4, int), np.arange(4))
    got = pool_templates(ts, unit, "quality", norms).features[0]
    mean_raw = raw.mean(0)
    np.testing.assert_allclose(got, mean_raw / np.linalg.norm(mean_raw), atol=1e-12)

    dropped = pool_templates(ts, unit, "quality", np.array([1.0, 1.0, 1.0, 0.0])).features[0]
    three = pool_templates(
        TemplateSet(ts.images[:3], ts.names[:3], np.arange(3), np.ones(3, int), np.arange(3)), unit, "mean"
    )
    np.testing.assert_allclose(dropped, three.features[0], atol=1e-12)

    doubled = pool_templates(ts, unit, "quality", np.array([2.0, 1.0, 1.0, 1.0])).features[0]
    twice = TemplateSet(ts.images, ts.names, np.array([0, 0, 1, 2, 3]), np.ones(5, int), np.arange(5))
    np.testing.assert_allclose(doubled, pool_templates(twice, unit, "mean").features[0], atol=1e-12)

    scaled = pool_templates(ts, unit, "quality", 7.5 * norms).features[0]
    np.testing.assert_allclose(scaled, got, atol=1e-12)


# ---- metrics --------------------------------------------------------------------------------
@pytest.mark.parametrize("pooling", ["mean", "media", "quality"])
def test_one_to_one_equals_brute_force(made, pooling):
    ts = read_ijb(made[0])
    emb = clustered(ts)
    quality = np.random.default_rng(2).uniform(0.5, 2.0, len(ts.images))
    metrics = template_metrics(ts, pool_templates(ts, emb, pooling, quality))["verification"]
    feats = brute_pool(ts, emb, pooling, quality)
    scores, same = [], ts.pairs.same.tolist()
    for a, b in zip(ts.pairs.t1.tolist(), ts.pairs.t2.tolist(), strict=True):
        scores.append(float(sum(x * y for x, y in zip(feats[a], feats[b], strict=True))))
    assert 0.6 < brute_auc(scores, same) < 0.999  # neither chance nor perfect: the test can see errors
    assert metrics["auc"] == pytest.approx(brute_auc(scores, same), abs=1e-12)
    for far in FARS:
        want = brute_tar_at_far(scores, same, far)
        got = metrics["tar_at_far"][f"{far:g}"]
        if want is None:
            assert got == "not measurable: 594 impostor pairs"
        else:
            assert got == pytest.approx(want, abs=1e-12)
    assert isinstance(metrics["tar_at_far"]["0.01"], float) and isinstance(metrics["tar_at_far"]["0.001"], str)


@pytest.mark.parametrize("pooling", ["mean", "media"])
def test_one_to_n_equals_brute_force(made, pooling):
    ts = read_ijb(made[0])
    emb = clustered(ts, seed=5)
    result = template_metrics(ts, pool_templates(ts, emb, pooling))["identification"]
    feats = brute_pool(ts, emb, pooling, None)
    probes = list(zip(ts.probes.templates.tolist(), ts.probes.subjects.tolist(), strict=True))
    for name in ("G1", "G2"):
        g = ts.galleries[name]
        gallery = list(zip(g.templates.tolist(), g.subjects.tolist(), strict=True))
        r = result[name]
        assert (r["mated_probes"], r["non_mated_probes"], r["gallery_subjects"]) == (12, 12, 6)
        for fpir in (0.1, 0.01):
            cmc, tpir = brute_search(feats, gallery, probes, fpir)
            assert r["cmc"] == {str(k): pytest.approx(v, abs=1e-12) for k, v in cmc.items()}
            if tpir is None:
                assert r["tpir_at_fpir"][f"{fpir:g}"] == "not measurable: 12 non-mated searches"
            else:
                assert r["tpir_at_fpir"][f"{fpir:g}"] == pytest.approx(tpir, abs=1e-12)
        assert 0 < r["cmc"]["1"] < 1


# ---- bad input ------------------------------------------------------------------------------
def copy_set(made_root: Path, to: Path) -> Path:
    """A writable copy of the made set's meta files (images through the same link)."""
    (to / "meta").mkdir(parents=True)
    for path in (made_root / "meta").iterdir():
        (to / "meta" / path.name).write_text(path.read_text())
    os.symlink((made_root / "images").resolve(), to / "images")
    return to


def test_unknown_template_in_pair_list(made, tmp_path):
    root = copy_set(made[0], tmp_path / "s")
    pairs = root / "meta" / "ijbc_template_pair_label.txt"
    pairs.write_text(pairs.read_text() + "1 99 0\n")
    with pytest.raises(DataError, match="template pair list names template 99, which has no images"):
        read_ijb(root)


def test_empty_template_in_gallery(made, tmp_path):
    root = copy_set(made[0], tmp_path / "s")
    gallery = root / "meta" / "ijbc_1N_gallery_G1.csv"
    gallery.write_text(gallery.read_text() + "500,77,nowhere.jpg\n501,78,nowhere.jpg\n")
    with pytest.raises(DataError, match=r"G1 gallery names template 500 \(and 1 more\), which has no images"):
        read_ijb(root)


def test_missing_files(made, tmp_path):
    root = copy_set(made[0], tmp_path / "s")
    tid_mid = root / "meta" / "ijbc_face_tid_mid.txt"
    tid_mid.write_text(tid_mid.read_text() + "id_00000/missing.png 1 1\n")
    with pytest.raises(DataError, match=r"image of a template not found: .*id_00000/missing\.png"):
        read_ijb(root)
    with pytest.raises(DataError, match=r"IJB template-media file not found: .*ijbb_face_tid_mid\.txt"):
        read_ijb(root, prefix="ijbb")
    (root / "images").unlink()
    with pytest.raises(DataError, match="holds no image folder"):
        read_ijb(root)


def test_bad_rows(made, tmp_path):
    root = copy_set(made[0], tmp_path / "s")
    pairs = root / "meta" / "ijbc_template_pair_label.txt"
    pairs.write_text("1 2 1\n1 3 yes\n")
    with pytest.raises(DataError, match=r"ijbc_template_pair_label.txt:2: expected t1 t2 label"):
        read_ijb(root)
    pairs.write_text("1 2 1\n1 x 0\n")
    with pytest.raises(DataError, match=r":2: expected an integer id in column 2, got x"):
        read_ijb(root)
    (tmp_path / "two.csv").write_text("template_id,subject_id,path\n1,1,a.png\n1,2,b.png\n")
    with pytest.raises(DataError, match="template 1 has images of subjects 1 and 2"):
        read_templates_csv(tmp_path / "two.csv")
    (tmp_path / "empty.csv").write_text("template_id,subject_id,path\n1,1,\n")
    with pytest.raises(DataError, match=r"empty.csv:2: expected template_id,subject_id,path"):
        read_templates_csv(tmp_path / "empty.csv")


def test_bad_quality_and_options(made, tmp_path):
    ts = read_ijb(made[0])
    with pytest.raises(DataError, match="one number >= 0 per image"):
        pool_templates(ts, clustered(ts), "quality", -np.ones(len(ts.images)))
    opposite = TemplateSet([Path("a"), Path("b")], ["a", "b"], np.arange(2), np.array([4, 4]), np.arange(2))
    with pytest.raises(DataError, match="template 4 pools to the zero vector"):
        pool_templates(opposite, np.array([[1.0, 0.0], [-1.0, 0.0]]), "mean")
    with pytest.raises(DataError, match="needs a quality per image"):
        pool_templates(ts, clustered(ts), "quality", None)
    with pytest.raises(ConfigError, match=r"unknown template pooling 'qualty'.*Did you mean 'quality'"):
        pool_templates(ts, clustered(ts), "qualty")
    (tmp_path / "q.txt").write_text("id_00000/00.png 1 2 0.9\n")
    with pytest.raises(DataError, match=r"no quality for 107 images, e\.g\. id_00000/01\.png"):
        read_quality(tmp_path / "q.txt", ts.names)
    with pytest.raises(DataError, match="needs either root"):
        build_protocol("templates", {})


# ---- the protocol end to end ----------------------------------------------------------------
def tiny_pipeline() -> RecognitionPipeline:
    torch.manual_seed(0)
    net = build_backbone("lowres_irse8", 8, 16, {"widths": [4, 8, 8, 8]}).eval()
    return RecognitionPipeline.for_network(net, 16, flip=False)


def test_protocol_report_equals_its_parts(made, tmp_path, monkeypatch):
    """The registered protocol on a tiny network: its numbers are template_metrics of the
    embeddings it made; its quality pooling is the mean of the network's raw outputs."""
    pipeline = tiny_pipeline()
    embedded = []
    embed = pipeline.embed
    monkeypatch.setattr(pipeline, "embed", lambda *a, **k: embedded.append(embed(*a, **k)) or embedded[-1])
    protocol = build_protocol("templates", {"root": str(made[0]), "pooling": ["media", "quality"]})
    report = protocol.evaluate(pipeline, tmp_path / "out")
    ts = read_ijb(made[0])
    expected = template_metrics(ts, pool_templates(ts, embedded[0].plain, "media"))
    assert json.loads(json.dumps(expected)) == report["no_flip"]["media"]
    assert report["summary"]["auc"] == expected["verification"]["auc"]
    rank1 = np.mean([expected["identification"][g]["cmc"]["1"] for g in ("G1", "G2")])
    assert report["summary"]["rank1"] == pytest.approx(rank1)
    assert report["summary_by_flip"]["no_flip"] == report["summary"]

    crops = torch.stack([to_tensor(pipeline.align(p).crop) for p in ts.images])
    raw = pipeline.features(crops).double().numpy()  # the network's output before normalization
    mean_raw = np.array([raw[ts.image[ts.template == t]].mean(0) for t in ts.template_ids()])
    by_raw = TemplateFeatures(ts.template_ids(), mean_raw / np.linalg.norm(mean_raw, axis=1, keepdims=True))
    quality = template_metrics(ts, by_raw)
    assert report["summary"]["quality_auc"] == pytest.approx(quality["verification"]["auc"], abs=1e-6)
    assert report["no_flip"]["quality"]["identification"] == quality["identification"]
    assert report["summary"]["quality_auc"] != report["summary"]["auc"]  # the norms do weigh
    assert (tmp_path / "out" / "roc.png").stat().st_size > 0
    assert json.loads((tmp_path / "out" / "report.json").read_text())["summary"] == report["summary"]


def lfw_template_set(tmp_path: Path) -> Path:
    """Six LFW people with >= 30 images, 4 images each (links), as two templates of 2 each."""
    people = sorted(p for p in (LFW / "images").iterdir() if len(list(p.iterdir())) >= 30)[:6]
    for person in people:
        (tmp_path / "tree" / person.name).mkdir(parents=True)
        for image in sorted(person.iterdir())[:4]:
            (tmp_path / "tree" / person.name / image.name).symlink_to(image)
    write_template_set(tmp_path / "tree", tmp_path / "set", min_images=4, media_size=1)
    return tmp_path / "set"


def check_lfw_templates(root: Path, pipeline: RecognitionPipeline, monkeypatch) -> float:
    """The protocol's AUC and rank-1 against loops over the embeddings it made; returns the AUC."""
    embedded = []
    embed = pipeline.embed
    monkeypatch.setattr(pipeline, "embed", lambda *a, **k: embedded.append(embed(*a, **k)) or embedded[-1])
    report = build_protocol("templates", {"root": str(root), "pooling": "media"}).evaluate(pipeline)
    ts = read_ijb(root)
    feats = brute_pool(ts, embedded[0].plain, "media", None)
    scores = [float(feats[a] @ feats[b]) for a, b in zip(ts.pairs.t1.tolist(), ts.pairs.t2.tolist(), strict=True)]
    auc = brute_auc(scores, ts.pairs.same.tolist())
    assert report["summary"]["auc"] == pytest.approx(auc, abs=1e-9)
    probes = list(zip(ts.probes.templates.tolist(), ts.probes.subjects.tolist(), strict=True))
    for name, g in ts.galleries.items():
        cmc, _ = brute_search(feats, list(zip(g.templates.tolist(), g.subjects.tolist(), strict=True)), probes, 0.1)
        assert report["summary"][f"{name}_rank1"] == pytest.approx(cmc[1], abs=1e-12)
    return auc


@needs_lfw
def test_lfw_templates_match_brute_force(tmp_path, monkeypatch):
    """LFW photos as they are (no detector: the whole deep-funneled image), the default model."""
    pipeline = RecognitionPipeline.load("fast", detector="none", flip=False, device="cpu")
    check_lfw_templates(lfw_template_set(tmp_path), pipeline, monkeypatch)


@pytest.mark.slow  # MTCNN on 24 photos: ~10 s on a quiet 2-core machine, minutes on a busy one
@needs_lfw
@needs_mtcnn
def test_lfw_templates_on_mtcnn_crops(tmp_path, monkeypatch):
    """The same on MTCNN crops, where the default model separates these people."""
    pipeline = RecognitionPipeline.load("fast", detector="mtcnn", missing="center", flip=False, device="cpu")
    assert check_lfw_templates(lfw_template_set(tmp_path), pipeline, monkeypatch) > 0.9


def test_cli_makes_and_evaluates_a_set(tmp_path, capsys):
    from facerec.cli import main

    SyntheticFaces(6, 4, size=32).write_tree(tmp_path / "tree", progress=False)
    args = ["eval", "templates", str(tmp_path / "set"), "--make-from", str(tmp_path / "tree"), "--detector", "none"]
    code = main([*args, "--model", "fast", "--device", "cpu", "--out", str(tmp_path / "out"), "--pooling", "mean"])
    printed = capsys.readouterr().out
    assert code == 0, printed
    assert "6 subjects, 12 templates of 24 images, 6 genuine + 60 impostor pairs" in printed
    assert "mean     1:1 AUC" in printed and "mean     1:N G1: rank-1" in printed
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["summary"]["G1_rank1"] == report["flip"]["mean"]["identification"]["G1"]["cmc"]["1"]
    assert main(["eval", "templates", "--make-from", str(tmp_path / "tree")]) == 2
    assert "--make-from needs ROOT" in capsys.readouterr().err
