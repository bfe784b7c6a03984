"""Statistics of facerec.analysis on constructed inputs whose answer is known."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import scipy.linalg

from facerec.analysis import bias


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def planted_population(seed: int = 0, groups: int = 2, subjects: int = 30, images: int = 3, dim: int = 16):
    """Embeddings = group direction + subject direction + image noise."""
    rng = np.random.default_rng(seed)
    group_dirs = rng.normal(size=(groups, dim)) * 1.5
    emb, ids, grp = [], [], []
    for g in range(groups):
        for s in range(subjects):
            center = group_dirs[g] + rng.normal(size=dim)
            for _ in range(images):
                emb.append(center + 0.3 * rng.normal(size=dim))
                ids.append(f"g{g}s{s}")
                grp.append(f"group{g}")
    return unit(np.array(emb)), np.array(ids), np.array(grp, dtype=object)


def test_clustering_index_is_the_between_group_share_of_variance():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.array(["a", "b", "c"]), 20)
    separated = np.repeat([-5.0, 0.0, 5.0], 20)[:, None] + 0.01 * rng.normal(size=(60, 1))
    mixed = rng.normal(size=(60, 1))
    index, within = bias.clustering_index(np.hstack([separated, mixed]), groups)
    assert index[0] > 0.999 and index[1] < 0.1
    np.testing.assert_allclose(index + within, 1.0)
    # against the seed's formula written out with loops
    x = mixed[:, 0]
    w = sum((x[j] - x[groups == g].mean()) ** 2 for g in "abc" for j in np.flatnonzero(groups == g))
    assert within[1] == pytest.approx(w / ((x - x.mean()) ** 2).sum())


def test_subject_similarity_is_the_mean_over_image_pairs():
    emb, ids, grp = planted_population(subjects=4, images=3)
    table = bias.subject_groups(ids, grp)
    matrix = bias.subject_similarity(emb, ids, table)
    for i, j in itertools.product(range(len(matrix.subjects)), repeat=2):
        a = np.flatnonzero(ids == matrix.subjects[i])
        b = np.flatnonzero(ids == matrix.subjects[j])
        pairs = [(x, y) for x in a for y in b if x != y]
        assert matrix.scores[i, j] == pytest.approx(np.mean([emb[x] @ emb[y] for x, y in pairs]))
    assert list(matrix.groups) == sorted(matrix.groups)  # ordered by group
    normalized = bias.normalize_nonmated(matrix.scores)
    off = ~np.eye(len(normalized), dtype=bool)
    assert normalized[off].mean() == pytest.approx(0, abs=1e-12)
    assert normalized[off].std() == pytest.approx(1)


def test_planted_group_structure_gives_a_first_component_aligned_with_the_groups():
    emb, ids, grp = planted_population()
    table = bias.subject_groups(ids, grp)
    matrix = bias.subject_similarity(emb, ids, table)
    coords, explained = bias.principal_components(bias.normalize_nonmated(matrix.scores), 5)
    index, _ = bias.clustering_index(coords, matrix.groups)
    assert index[0] > 0.9
    assert explained[0] == max(explained)
    # without group structure no component is aligned with an arbitrary labelling
    rng = np.random.default_rng(1)
    noise = unit(rng.normal(size=(180, 16)))
    shuffled = {k: rng.choice(["x", "y"]) for k in table}
    matrix = bias.subject_similarity(noise, ids, shuffled)
    coords, _ = bias.principal_components(bias.normalize_nonmated(matrix.scores), 5)
    assert bias.clustering_index(coords, matrix.groups)[0].max() < 0.3


def brute_force_rates(emb, ids, grp, t):
    fm, imp, fnm, mated = {}, {}, {}, {}
    for i, j in itertools.combinations(range(len(emb)), 2):
        s = emb[i] @ emb[j]
        key = tuple(sorted((grp[i], grp[j])))
        if ids[i] == ids[j]:
            fnm[grp[i]] = fnm.get(grp[i], 0) + (s < t)
            mated[grp[i]] = mated.get(grp[i], 0) + 1
        else:
            fm[key] = fm.get(key, 0) + (s >= t)
            imp[key] = imp.get(key, 0) + 1
    return fm, imp, fnm, mated


def test_group_rates_match_a_loop_over_all_pairs_and_say_when_a_group_is_too_small():
    emb, ids, grp = planted_population(groups=3, subjects=12, images=3, dim=8, seed=3)
    # make group2 tiny: keep two of its subjects
    keep = (grp != "group2") | np.isin(ids, ["g2s0", "g2s1"])
    emb, ids, grp = emb[keep], ids[keep], grp[keep]
    codes = np.unique(ids, return_inverse=True)[1]
    target = 0.01
    t = bias.impostor_threshold(emb, codes, target, chunk=7)
    impostor_scores = [emb[i] @ emb[j] for i, j in itertools.combinations(range(len(emb)), 2) if ids[i] != ids[j]]
    assert np.mean(np.array(impostor_scores) >= t) == pytest.approx(target, abs=1.0 / len(impostor_scores))
    counts = bias.count_pairs(emb, ids, grp, t, chunk=5)
    rates = bias.group_rates(counts, target, min_mated=10, n_boot=200)
    fm, imp, fnm, mated = brute_force_rates(emb, ids, grp, t)
    for name, entry in rates["groups"].items():
        assert entry["impostor_pairs"] == imp[(name, name)]
        assert entry["mated_pairs"] == mated[name]
        if name == "group2":  # 2 subjects: 9 impostor pairs < 1/0.01, 6 mated pairs < 10
            assert "too few impostor pairs" in entry["fmr"] and "too few mated pairs" in entry["fnmr"]
            continue
        assert entry["fmr"] == pytest.approx(fm[(name, name)] / imp[(name, name)])
        assert entry["fnmr"] == pytest.approx(fnm[name] / mated[name])
        lo, hi = entry["ci"]
        assert lo <= entry["fmr"] <= hi
    names = list(rates["groups"])
    for a, b in itertools.product(range(3), repeat=2):
        cell = rates["cross_fmr"][a][b]
        key = tuple(sorted((names[a], names[b])))
        assert cell["impostor_pairs"] == imp[key]
        if isinstance(cell["fmr"], float):
            assert cell["fmr"] == pytest.approx(fm[key] / imp[key])


def test_bias_analysis_writes_report_and_plots(tmp_path):
    emb, ids, grp = planted_population(groups=2, subjects=15)
    report = bias.analyze(emb, ids, grp, tmp_path, target_fmr=0.01, components=4, n_boot=50)
    assert report["clustering_index"]["C_k"][0] > 0.9
    for name in ("report.json", "similarity_matrix.png", "cross_group_fmr.png", "pca.png"):
        assert (tmp_path / name).stat().st_size > 0
    # within-group non-mated scores are higher than across groups: the block-diagonal structure
    means = report["block_means"]
    assert means["group0"]["group0"] > means["group0"]["group1"] < means["group1"]["group1"]


def test_group_tables_from_lfw_lists_and_csv(tmp_path):
    (tmp_path / "gender").mkdir()
    (tmp_path / "gender" / "male_names.txt").write_text("A_0001.jpg\nB_0001.jpg\n")
    (tmp_path / "gender" / "female_names.txt").write_text("C_0001.jpg\nB_0001.jpg\n")
    assert bias.lfw_gender(tmp_path) == {"A_0001.jpg": "male", "C_0001.jpg": "female"}  # B is in both
    csv = tmp_path / "groups.csv"
    csv.write_text("identity,group\nA,x\nC,y\n")
    table = bias.read_group_csv(csv)
    from pathlib import Path

    groups = bias.groups_of([Path("/d/A/A_0001.jpg"), Path("/d/Z/Z_0001.jpg")], np.array(["A", "Z"]), table)
    assert list(groups) == ["x", ""]


# ---- linear maps ------------------------------------------------------------------------------

from facerec.analysis import linear_map, membership, projection, resolution  # noqa: E402
from facerec.data import transforms  # noqa: E402
from facerec.eval.pairs import Pairs  # noqa: E402


def random_rotation(d: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q * np.sign(np.diag(r))


def test_ridge_path_equals_the_normal_equations():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 8)), rng.normal(size=(50, 5))
    lambdas = [1e-3, 0.1, 10.0]
    for got, lam in zip(linear_map.ridge_path(x, y, lambdas), lambdas, strict=True):
        np.testing.assert_allclose(got, linear_map.fit_ridge(x, y, lam), atol=1e-10)
        grad = 2 * x.T @ (x @ got - y) + 2 * lam * got  # stationary point of the objective
        np.testing.assert_allclose(grad, 0, atol=1e-8)


def pair_population(seed=0, subjects=150, images=4, dim=16):
    emb, ids, _ = planted_population(seed=seed, groups=1, subjects=subjects, images=images, dim=dim)
    return emb, ids


def lfw_like_pairs(ids: np.ndarray, test: np.ndarray, count: int, seed: int = 0) -> Pairs:
    from facerec.eval.pairs import sample_pairs

    p = sample_pairs(ids[test], count, seed)
    return Pairs(test[p.left], test[p.right], p.same, p.fold)


def test_a_linear_relation_between_spaces_is_recovered():
    a, ids = pair_population()
    # B: an exact linear image of A in a larger space (an isometry from 16 into 20 dimensions)
    b = a @ random_rotation(20, 1)[:16]
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1)
    subjects = np.unique(ids)
    test = np.flatnonzero(np.isin(ids, subjects[:70]))
    pool = np.flatnonzero(~np.isin(ids, subjects[:70]))
    pairs = lfw_like_pairs(ids, test, 600)
    report = linear_map.experiment(a, b, ids, pool, pairs, sizes=(200,), lambdas=(1e-6, 1e-2, 10.0, 1e3))
    base = report["b_alone"]["accuracy"]
    for r in report["results"]:
        assert r["lambda"] < 1.0  # exact relation: the held-out split prefers little shrinkage
        if r["variant"] == "same-image":
            assert r["accuracy"] == pytest.approx(base, abs=0.005)
    # heavy shrinkage loses the map's scale but not its direction; an unrelated B is not recoverable
    noise = linear_map.normalize(np.random.default_rng(5).normal(size=b.shape))
    unrelated = linear_map.experiment(a, noise, ids, pool, pairs, sizes=(200,), variants=("same-image",))
    assert unrelated["results"][0]["accuracy"] < 0.6


def test_training_pairs_of_both_variants():
    ids = np.array(["x", "x", "y", "z", "z", "z"])
    rng = np.random.default_rng(0)
    src, dst = linear_map.training_pairs(ids, np.arange(6), "same-image", rng)
    assert np.array_equal(src, dst)
    src, dst = linear_map.training_pairs(ids, np.arange(6), "same-identity", rng)
    assert 2 not in src  # 'y' has no second image
    assert all(ids[s] == ids[d] and s != d for s, d in zip(src, dst, strict=True))


def test_mapping_attack_matches_leaked_embeddings_in_the_other_space():
    a, ids = pair_population()
    b = linear_map.normalize(a @ random_rotation(16, 2))
    subjects = np.unique(ids)
    targets = np.flatnonzero(np.isin(ids, subjects[:50]))
    pool = np.flatnonzero(~np.isin(ids, subjects[:50]))
    report = linear_map.mapping_attack(a, b, ids, pool, targets, sizes=(5, 300))
    few, many = report["results"]
    assert many["rank1"] == pytest.approx(report["b_to_b_rank1"], abs=0.02)
    assert many["rank1"] > few["rank1"] and many["rank1"] > 10 * report["chance_rank1"]


# ---- resolution --------------------------------------------------------------------------------


def test_degrade_keeps_the_size_and_removes_detail():
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (112, 112, 3), dtype=np.uint8)
    low = transforms.degrade(crop, 36)
    assert low.shape == crop.shape and low.dtype == np.uint8
    assert np.abs(np.diff(low.astype(float), axis=1)).mean() < 0.5 * np.abs(np.diff(crop.astype(float), axis=1)).mean()
    flat = np.full((112, 112, 3), 90, dtype=np.uint8)
    assert np.abs(transforms.degrade(flat, 36).astype(int) - 90).max() <= 1


def test_degradation_is_defined_on_the_112_template_for_every_crop_geometry():
    from facerec.core.geometry import ARCFACE_112
    from facerec.data.transforms import degrade_resolution
    from facerec.models.reference import DLIB_150

    rng = np.random.default_rng(1)
    small = rng.integers(0, 256, (36, 36, 3), dtype=np.uint8)
    # a 36 px model's crop already has 36 px across the template: nothing left to lose
    assert np.array_equal(transforms.degrader(36, ARCFACE_112 * 36 / 112)(small), small)
    # dlib's 150 px chip: the template's eyes sit 1.51x further apart, so 36 px on the template is
    # 150 * 36 / (112 * 1.51) = 32 px across the chip
    assert transforms.template_scale(DLIB_150) == pytest.approx(53.265 / 35.237, rel=1e-3)
    chip = rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)
    assert np.array_equal(transforms.degrader(36, DLIB_150)(chip), degrade_resolution(chip, 32))


def test_procrustes_and_cpd_recover_a_known_rotation():
    rng = np.random.default_rng(3)
    hr = linear_map.normalize(rng.normal(size=(150, 6)))
    rot = random_rotation(6, 4)
    if np.linalg.det(rot) < 0:
        rot[:, 0] *= -1
    lr = hr @ rot.T  # LR = rotated HR
    back = resolution.procrustes(lr, hr)
    np.testing.assert_allclose(back(lr), hr, atol=1e-10)
    # CPD does not know which point is which: shuffle the cloud, turn it a little (CPD is a local
    # method), add noise and an offset
    order = rng.permutation(150)
    generator = np.zeros((6, 6))
    generator[0, 1], generator[2, 3] = 0.15, 0.1
    true = scipy.linalg.expm(generator - generator.T)
    moving = hr[order] @ true.T + 0.01 * rng.normal(size=(150, 6)) + 0.05
    fitted = resolution.cpd(hr, moving, "rigid")
    np.testing.assert_allclose(fitted(moving), hr[order], atol=0.05)
    np.testing.assert_allclose(fitted.matrix @ true, np.eye(6), atol=0.05)
    affine = resolution.cpd(hr, moving, "affine")
    np.testing.assert_allclose(affine(moving), hr[order], atol=0.05)
    assert fitted.history[-1] < fitted.history[0]


def test_cpd_agrees_with_pycpd_when_installed():
    pycpd = pytest.importorskip("pycpd")
    rng = np.random.default_rng(8)
    x = rng.normal(size=(80, 3))
    theta = 0.4
    rot = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    y = x @ rot.T * 1.2 + 0.3
    ours = resolution.cpd(x, y, "rigid", max_iter=200)
    reg = pycpd.RigidRegistration(X=x, Y=y, w=0, max_iterations=200, tolerance=1e-10)
    theirs, _ = reg.register()
    np.testing.assert_allclose(ours(y), theirs, atol=1e-3)


def test_resolution_report_before_and_after_alignment(tmp_path):
    hr, ids = pair_population(subjects=80, dim=12)
    rot = random_rotation(12, 7)
    lr = linear_map.normalize(hr @ rot.T + 0.05 * np.random.default_rng(0).normal(size=hr.shape))
    subjects = np.unique(ids)
    test = np.flatnonzero(np.isin(ids, subjects[:40]))
    fit = np.flatnonzero(~np.isin(ids, subjects[:40]))
    pairs = lfw_like_pairs(ids, test, 400)
    report = resolution.analyze(hr, lr, pairs, fit, tmp_path, 36)
    assert report["before"]["HR-LR"]["accuracy"] < 0.8  # rotated: HR and LR do not meet
    assert report["procrustes"]["HR-LR"]["accuracy"] > report["before"]["HR-HR"]["accuracy"] - 0.03
    assert report["procrustes"]["hr_to_lr_distance"]["mean"] < 0.1 * report["before"]["hr_to_lr_distance"]["mean"]
    assert (tmp_path / "distance_histograms.png").stat().st_size > 0


# ---- membership --------------------------------------------------------------------------------


def test_auc_matches_sklearn_including_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    pos, neg = np.round(rng.normal(0.5, 1, 40), 1), np.round(rng.normal(0, 1, 60), 1)
    y = np.r_[np.ones(40), np.zeros(60)]
    assert membership.auc(pos, neg) == pytest.approx(roc_auc_score(y, np.r_[pos, neg]))


def test_membership_attack_separates_compact_members():
    rng = np.random.default_rng(1)
    emb, ids = [], []
    for s in range(80):
        center = rng.normal(size=16)
        spread = 0.2 if s < 40 else 0.6  # members (first 40) are tighter
        for _ in range(4):
            emb.append(center + spread * rng.normal(size=16))
            ids.append(f"s{s}")
    emb, ids = unit(np.array(emb)), np.array(ids)
    members = {f"s{s}" for s in range(40)}
    report = membership.attack(emb, ids, members, n_boot=200)
    assert report["auc"] > 0.95 and report["auc_ci"][0] > 0.85
    shuffled = membership.attack(emb, ids, {f"s{s}" for s in range(0, 80, 2)}, n_boot=200)
    assert shuffled["auc_ci"][0] < 0.5 < shuffled["auc_ci"][1] + 0.1
    scores = membership.compactness(emb, ids)
    e = emb[ids == "s0"]
    assert scores["s0"] == pytest.approx(np.mean([e[i] @ e[j] for i in range(4) for j in range(4) if i != j]))


# ---- projections -------------------------------------------------------------------------------


def test_projections_and_the_sphere_plot(tmp_path):
    emb, ids = pair_population(subjects=10, dim=3)
    info = projection.plot(emb, ids, tmp_path / "sphere.png", dims=3)
    assert info["method"] == "sphere" and (tmp_path / "sphere.png").stat().st_size > 0
    emb, ids = pair_population(subjects=10, dim=16)
    coords, share = projection.pca(emb, 2)
    assert coords.shape == (len(emb), 2) and share[0] >= share[1]
    assert projection.plot(emb, ids, tmp_path / "tsne.png", method="tsne")["method"] == "tsne"
    mask = projection.top_identities(np.array(["a", "b", "b", "c", "c", "c"]), 2)
    assert list(mask) == [False, True, True, True, True, True]


# ---- embedding cache ---------------------------------------------------------------------------


@pytest.fixture
def faces_and_model(tmp_path):
    """An identity tree of random images (4 people x 4 images) and an untrained exported model."""
    from dataclasses import asdict

    from PIL import Image

    from facerec.config import BackboneConfig
    from facerec.models import build_backbone
    from facerec.models.io import export_model

    rng = np.random.default_rng(0)
    for person in ("ann", "bob", "cid", "dee"):
        (tmp_path / "faces" / person).mkdir(parents=True)
        for i in range(4):
            image = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(image).save(tmp_path / "faces" / person / f"{i}.png")
    cfg = BackboneConfig("lowres_irse8", 16, input_size=32, options={"widths": [8, 8, 8, 8], "se": False})
    model = export_model(tmp_path / "m.pt", build_backbone(cfg.name, 16, 32, cfg.options), asdict(cfg))
    return tmp_path / "faces", model


def test_embeddings_are_cached_and_reused_by_image_name(tmp_path, monkeypatch, faces_and_model):
    from facerec.analysis import common
    from facerec.pipeline import RecognitionPipeline

    faces, model = faces_and_model
    images = common.folder_images(faces)
    first = common.embed(images, str(model), "none", tmp_path / "cache")
    assert first.shape == (16, 16)
    np.testing.assert_allclose(np.linalg.norm(first, axis=1), 1, atol=1e-5)

    def fail(*args, **kwargs):
        raise AssertionError("embedded again instead of reading the cache")

    monkeypatch.setattr(RecognitionPipeline, "embed", fail)
    np.testing.assert_array_equal(common.embed(images, str(model), "none", tmp_path / "cache"), first)
    part = images.subset(np.array([4, 1]))  # another image list, covered by the cached one
    np.testing.assert_array_equal(common.embed(part, str(model), "none", tmp_path / "cache"), first[[4, 1]])
    with pytest.raises(AssertionError, match="embedded again"):  # degraded faces are cached under their own tag
        common.embed(images, str(model), "none", tmp_path / "cache", degrade=12)
    # another model's embeddings file is never taken for this model
    other = tmp_path / "other.npz"
    names = np.array([str(p) for p in images.paths])
    np.savez(other, plain=-first, flipped=-first, names=names)
    np.testing.assert_array_equal(common.embed(images, str(model), "none", None, reuse={str(model): [other]}), -first)
    with pytest.raises(AssertionError, match="embedded again"):
        common.embed(images, str(model), "none", None, reuse={"dlib": [other]})


def test_analyze_commands_run_on_a_folder_tree(tmp_path, faces_and_model):
    from facerec.cli import main

    faces, model = faces_and_model
    groups = tmp_path / "groups.csv"
    groups.write_text("identity,group\nann,a\nbob,a\ncid,b\ndee,b\n")
    common = ["--images", str(faces), "--model", str(model), "--detector", "none", "--cache", str(tmp_path / "c")]
    out = tmp_path / "bias"
    assert main(["analyze", "bias", "--groups", str(groups), "--target-fmr", "0.1", "--out", str(out), *common]) == 0
    report = json.loads((out / "report.json").read_text())
    assert set(report["groups"]) == {"a", "b"} and len(report["clustering_index"]["C_k"]) == 4
    out = tmp_path / "proj"
    assert main(["analyze", "embeddings", "--out", str(out), *common]) == 0
    assert (out / "pca_2d.png").is_file()
    (tmp_path / "train" / "ann").mkdir(parents=True)
    (tmp_path / "train" / "bob").mkdir()
    out = tmp_path / "members"
    args = ["analyze", "membership", "--members-from", str(tmp_path / "train"), "--out", str(out), *common]
    assert main(args) == 0
    assert json.loads((out / "report.json").read_text())["results"][str(model)]["members"] == 2


def test_lfw_people_folds_and_links(tmp_path):
    from facerec.data.lfw import link_people, people_folds

    people = tmp_path / "people.txt"
    people.write_text("2\n2\nAnn\t2\nBob\t1\n1\nCid\t3\n")
    folds = people_folds(people)
    assert folds == [{"Ann": 2, "Bob": 1}, {"Cid": 3}]
    for name, count in (("Ann", 2), ("Bob", 1), ("Cid", 3)):
        (tmp_path / "src" / name).mkdir(parents=True)
        for i in range(count):
            (tmp_path / "src" / name / f"{i}.jpg").write_bytes(b"x")
    linked, images = link_people(tmp_path / "src", tmp_path / "dst", folds[0], min_images=2)
    assert (linked, images) == (1, 2)
    assert sorted(p.name for p in (tmp_path / "dst").iterdir()) == ["Ann"]
    assert (tmp_path / "dst" / "Ann").is_symlink()


def test_analyze_bad_input_gives_clear_errors(tmp_path, capsys, faces_and_model):
    from facerec.cli import main

    faces, model = faces_and_model
    common = ["--images", str(faces), "--model", str(model), "--detector", "none", "--out", str(tmp_path / "o")]
    assert main(["analyze", "bias", "--groups", str(tmp_path / "none.csv"), *common]) == 2
    assert "group labels not found" in capsys.readouterr().err
    assert main(["analyze", "membership", "--members-from", str(tmp_path / "nope"), *common]) == 2
    assert "--members-from folder (the model's training tree) not found" in capsys.readouterr().err
    assert main(["analyze", "embeddings", "--reuse", "file.npz", *common]) == 2
    assert "MODEL=FILE.npz" in capsys.readouterr().err
    assert main(["analyze", "resolution", "--model", str(model), "--out", str(tmp_path / "o")]) == 2
    assert "give --lfw" in capsys.readouterr().err


def test_eval_scores_degraded_faces_when_asked(tmp_path, faces_and_model):
    from facerec.cli import main

    faces, model = faces_and_model
    rows = ["path1,path2,label"]
    people = sorted(p.name for p in faces.iterdir())
    for i, a in enumerate(people):
        rows.append(f"{a}/0.png,{a}/1.png,1")
        rows.append(f"{a}/2.png,{people[(i + 1) % len(people)]}/3.png,0")
    (faces / "pairs.csv").write_text("\n".join(rows) + "\n")
    reports = {}
    for degrade in (0, 12):
        out = tmp_path / f"d{degrade}"
        args = ["eval", "pairs", str(faces / "pairs.csv"), "--model", str(model), "--detector", "none"]
        assert main([*args, "--degrade", str(degrade), "--out", str(out)]) == 0
        reports[degrade] = json.loads((out / "report.json").read_text())
        reports[degrade]["emb"] = np.load(out / "embeddings.npz")["plain"]
    assert "degraded to 12 px" in reports[12]["pipeline"] and reports[12]["pipeline_options"]["degrade"] == 12
    assert reports[0]["pipeline_options"]["degrade"] == 0
    assert not np.allclose(reports[0]["emb"], reports[12]["emb"])
