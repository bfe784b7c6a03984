"""Demographically blind models: the directions between groups, their projection folded into the
network's last layers, and `facerec debias` end to end."""

from __future__ import annotations

import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from facerec.analysis.debias import fold_projection, group_directions
from facerec.config import BackboneConfig
from facerec.errors import DataError, FacerecError
from facerec.models import build_backbone
from facerec.models.io import export_model, load_recognition_model


def grouped_embeddings(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit embeddings of three groups whose means differ along two known directions (d = 16)."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(16, 16)))[0]
    offsets = {"a": 0.8 * basis[0], "b": -0.5 * basis[0] + 0.6 * basis[1], "c": -0.4 * basis[1]}
    groups = np.array(["a"] * 300 + ["b"] * 200 + ["c"] * 100 + [""] * 10)
    emb = np.stack([offsets.get(g, np.zeros(16)) for g in groups]) + 0.3 * rng.normal(size=(len(groups), 16))
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), groups, basis[:2]


def test_the_directions_span_the_group_differences_and_their_projection_equalizes_the_means():
    emb, groups, true_directions = grouped_embeddings()
    fitted = group_directions(emb, groups)
    d = fitted.directions
    assert d.shape == (2, 16) and fitted.group_sizes == {"a": 300, "b": 200, "c": 100}
    np.testing.assert_allclose(d @ d.T, np.eye(2), atol=1e-10)  # orthonormal
    # the fitted plane is the planted one (up to sampling noise in the group means)
    overlap = np.linalg.svd(d @ true_directions.T, compute_uv=False)
    assert overlap.min() > 0.95  # cosines of the principal angles between the planes
    assert fitted.variance_share[0] >= fitted.variance_share[1] and fitted.variance_share.sum() == pytest.approx(1)
    projected = emb @ fitted.projection()
    means = [projected[groups == g].mean(0) for g in "abc"]
    np.testing.assert_allclose(means[0], means[1], atol=1e-12)
    np.testing.assert_allclose(means[1], means[2], atol=1e-12)
    # one direction only: the strongest
    first = group_directions(emb, groups, components=1).directions
    np.testing.assert_allclose(np.abs(first @ d[0]), 1, atol=1e-10)


def test_unfit_groups_are_refused():
    emb, groups, _ = grouped_embeddings()
    with pytest.raises(DataError, match=r"fewer than 101 images cannot be fitted: c \(100\)"):
        group_directions(emb, groups, min_images=101)
    with pytest.raises(DataError, match="at least two groups"):
        group_directions(emb, np.where(groups == "", "", "a"))
    with pytest.raises(DataError, match="span at most 2 directions; asked for 3"):
        group_directions(emb, groups, components=3)
    twins = np.concatenate([emb, emb])  # groups a and c hold the same faces: their means coincide
    twin_groups = np.concatenate([np.where(groups == "c", "", groups), np.where(groups == "a", "c", "")])
    with pytest.raises(DataError, match="span fewer than 2 directions"):
        group_directions(twins, twin_groups)


def randomize_norms(net: nn.Module, seed: int = 0) -> nn.Module:
    """Batch norms with non-trivial statistics and affine parameters, as after training."""
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            with torch.no_grad():
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.2)
    return net.eval()


@pytest.mark.parametrize(
    "name,options,size",
    [
        ("mobilefacenet", {"width_mult": 0.25}, 32),
        ("lowres_irse8", {"widths": [8, 8, 8, 8], "se": False}, 32),
        ("dlib_resnet", {}, 104),  # ends in a linear layer without a batch norm
    ],
)
def test_the_folded_network_outputs_the_projected_embedding(name, options, size):
    torch.manual_seed(0)  # the same network on every run
    net = randomize_norms(build_backbone(name, 16, size, options))
    emb, groups, _ = grouped_embeddings()
    matrix = group_directions(emb, groups).projection()
    folded = fold_projection(net, matrix, size)
    x = torch.randn(6, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = net(x).double().numpy() @ matrix.T  # the projection applied after the network, in float64
        np.testing.assert_allclose(folded(x).double().numpy(), reference, atol=2e-5)
    assert set(folded.state_dict()) == set(net.state_dict())  # the same architecture: an ordinary model file


def test_networks_not_ending_in_the_two_layers_are_refused():
    matrix = np.eye(4)
    ends_in_a_relu = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.BatchNorm1d(4), nn.ReLU())
    with pytest.raises(FacerecError, match="changed more than the output"):
        fold_projection(randomize_norms(ends_in_a_relu), -matrix, 2)
    ends_in_a_conv = nn.Sequential(nn.Linear(2, 2), nn.Conv2d(3, 3, 1))
    with pytest.raises(
        FacerecError, match=r"does not end in a linear layer \(and a batch norm\): it ends in Linear, Conv2d"
    ):
        fold_projection(ends_in_a_conv, matrix, 2)
    with pytest.raises(FacerecError, match="does not fit a 4-d embedding"):
        fold_projection(randomize_norms(nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.BatchNorm1d(4))), np.eye(5), 2)


@pytest.fixture
def two_group_faces(tmp_path):
    """Six people of eight images each in two groups (smooth images, 40 px), and an exported model."""
    rng = np.random.default_rng(0)
    for p in range(6):
        (tmp_path / "faces" / f"p{p}").mkdir(parents=True)
        tint = np.array([60, 0, 0] if p < 3 else [0, 0, 60])  # the groups differ in colour
        for i in range(8):
            coarse = rng.integers(0, 190, (5, 5, 3)) + tint
            image = Image.fromarray(coarse.astype(np.uint8)).resize((40, 40), Image.BICUBIC)
            image.save(tmp_path / "faces" / f"p{p}" / f"{i}.png")
    rows = "".join(f"p{p},{'x' if p < 3 else 'y'}\n" for p in range(6))
    (tmp_path / "groups.csv").write_text("identity,group\n" + rows)
    cfg = BackboneConfig("lowres_irse8", 16, input_size=32, options={"widths": [8, 8, 8, 8], "se": False})
    torch.manual_seed(0)  # the same network on every run
    net = randomize_norms(build_backbone(cfg.name, 16, 32, cfg.options))
    model = export_model(tmp_path / "m.pt", net, asdict(cfg))
    return tmp_path, model


def test_debias_writes_a_model_whose_embeddings_are_the_projected_ones(two_group_faces, capsys):
    from facerec.analysis.common import embed, folder_images
    from facerec.cli import main

    root, model = two_group_faces
    out = root / "blind" / "m_blind.pt"
    common = ["--images", str(root / "faces"), "--groups", str(root / "groups.csv"), "--cache", str(root / "c")]
    assert main(["debias", "--model", str(model), *common, "--out", str(out)]) == 0
    assert "1 directions between x 24, y 24" in capsys.readouterr().out
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["directions"] == 1 and report["written_digest"] != report["model_digest"]
    card = load_recognition_model(out).card
    assert card.thresholds == [] and "facerec calibrate" in card.notes and card.architecture == "lowres_irse8"
    images = folder_images(root / "faces")
    before = embed(images, str(model), "none", flip=False)
    after = embed(images, str(out), "none", flip=False)
    direction = np.array(report["direction_vectors"])
    expected = before - (before @ direction.T) @ direction
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(after, expected, atol=1e-4)
    labels = np.repeat([0, 1], 24)
    fitted_on = embed(images, str(model), "none")  # as debias embeds them: with the mirror image
    between = fitted_on[labels == 0].mean(0) - fitted_on[labels == 1].mean(0)
    assert abs(direction[0] @ between) > 0.999 * np.linalg.norm(between)  # the direction is the groups' difference
    np.testing.assert_allclose(after @ direction.T, 0, atol=1e-4)  # and no embedding keeps any of it


def test_debias_bad_input_gives_clear_errors(two_group_faces, capsys):
    from facerec.cli import main

    root, model = two_group_faces
    common = ["--images", str(root / "faces"), "--groups", str(root / "groups.csv"), "--cache", str(root / "c")]
    assert main(["debias", "--model", str(model), *common, "--out", str(root / "x.onnx")]) == 2
    assert "ends in .pt" in capsys.readouterr().err
    (root / "taken.pt").write_bytes(b"")
    assert main(["debias", "--model", str(model), *common, "--out", str(root / "taken.pt")]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["debias", "--model", str(model), *common, "--components", "2", "--out", str(root / "y.pt")]) == 2
    assert "span at most 1 directions" in capsys.readouterr().err
