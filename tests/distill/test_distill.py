"""Distillation losses against loops written from their definitions, and their gradients."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from facerec.distill import losses as kd
from facerec.distill.targets import teacher_threshold
from facerec.errors import DataError
from facerec.eval.pairs import sample_pairs


def batch(n=7, ds=5, dt=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, ds, generator=g, dtype=torch.float64), torch.randn(n, dt, generator=g, dtype=torch.float64)


def huber(x: float) -> float:
    return 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def test_embedding_regression_terms():
    s, t = batch(dt=5)
    sn, tn = s.numpy(), t.numpy()
    want_l2 = np.mean([np.sum((unit(a) - unit(b)) ** 2) for a, b in zip(sn, tn, strict=True)])
    want_cos = np.mean([1 - unit(a) @ unit(b) for a, b in zip(sn, tn, strict=True)])
    assert float(kd.embedding_l2(s, t)) == pytest.approx(want_l2)
    assert float(kd.embedding_cosine(s, t)) == pytest.approx(want_cos)
    assert float(kd.embedding_l2(t * 3, t)) == pytest.approx(0, abs=1e-12)  # scale does not matter


def test_relational_terms_match_loops():
    s, t = batch()
    sn, tn = s.numpy(), t.numpy()
    n = len(sn)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    want = np.mean([(unit(sn[i]) @ unit(sn[j]) - unit(tn[i]) @ unit(tn[j])) ** 2 for i, j in pairs])
    assert float(kd.similarity_matrix(s, t)) == pytest.approx(want)

    def dist(x):
        d = {(i, j): np.linalg.norm(x[i] - x[j]) for i, j in pairs}
        mean = np.mean(list(d.values()))
        return {k: v / mean for k, v in d.items()}

    ds, dt = dist(sn), dist(tn)
    assert float(kd.rkd_distance(s, t)) == pytest.approx(np.mean([huber(ds[p] - dt[p]) for p in pairs]))

    def angle(x, i, j, k):
        a, b = x[i] - x[j], x[k] - x[j]
        if not a.any() or not b.any():
            return 0.0
        return unit(a) @ unit(b)

    triplets = list(itertools.product(range(n), repeat=3))
    want = np.mean([huber(angle(sn, i, j, k) - angle(tn, i, j, k)) for i, j, k in triplets])
    assert float(kd.rkd_angle(s, t)) == pytest.approx(want)


def test_relational_terms_ignore_rotation_and_scale_of_the_student():
    s, _ = batch(ds=6)
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    moved = 2.5 * s @ q
    for loss in (kd.similarity_matrix, kd.rkd_distance, kd.rkd_angle):
        assert float(loss(moved, s)) == pytest.approx(0, abs=1e-10)


def test_logit_kd_matches_the_definition():
    s, t = batch(ds=9, dt=9)
    temp = 3.0
    p = torch.softmax(t / temp, 1).numpy()
    q = torch.softmax(s / temp, 1).numpy()
    want = temp**2 * np.mean((p * (np.log(p) - np.log(q))).sum(1))
    assert float(kd.logit_kd(s, t, temp)) == pytest.approx(want)
    assert float(kd.logit_kd(t, t, temp)) == pytest.approx(0, abs=1e-12)


def test_evaluation_relation_weights_pairs_near_the_threshold():
    s, t = batch()
    sn, tn = s.numpy(), t.numpy()
    thr, width = 0.1, 0.2
    num = den = 0.0
    for i, j in itertools.permutations(range(len(sn)), 2):
        si, ti = unit(sn[i]) @ unit(sn[j]), unit(tn[i]) @ unit(tn[j])
        w = math.exp(-((ti - thr) ** 2) / (2 * width**2)) + 1.0 * ((si >= thr) != (ti >= thr))
        num += w * (si - ti) ** 2
        den += w
    assert float(kd.evaluation_relation(s, t, thr, width)) == pytest.approx(num / den)


@pytest.mark.parametrize("name", ["l2", "cosine", "similarity", "rkd_distance", "rkd_angle"])
def test_gradients_agree_with_finite_differences(name):
    s, t = batch(n=5, ds=4, dt=4)
    s.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: kd.EMBEDDING_LOSSES[name](x, t), (s,))


def test_distillation_loss_module_projects_when_sizes_differ():
    s, t = batch(ds=5, dt=8)
    loss = kd.DistillationLoss(5, 8, {"cosine": 1.0, "rkd_angle": 2.0, "evaluation": 0.5}, threshold=0.3).double()
    parts = loss(s, t)
    assert set(parts) == {"distill_cosine", "distill_rkd_angle", "distill_evaluation"}
    assert loss.projection is not None and loss.projection.weight.shape == (8, 5)
    sum(parts.values()).backward()
    assert loss.projection.weight.grad is not None
    with pytest.raises(ValueError, match="unknown distillation terms"):
        kd.DistillationLoss(5, 8, {"kl": 1.0})
    with pytest.raises(ValueError, match="threshold"):
        kd.DistillationLoss(5, 8, {"evaluation": 1.0})


def test_teacher_threshold_is_the_best_on_its_sampled_pairs():
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(40), 3)
    centers = rng.normal(size=(40, 16))
    x = centers[labels] + rng.normal(scale=0.8, size=(120, 16))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    threshold = teacher_threshold(x, labels, pairs=2000, seed=1)
    drawn = sample_pairs(labels, 2000, 1)
    scores, same = (x[drawn.left] * x[drawn.right]).sum(1), drawn.same
    best = max(((scores >= t) == same).mean() for t in np.unique(scores))  # brute force
    assert ((scores >= threshold) == same).mean() == best
    with pytest.raises(DataError, match=r"distill\.threshold"):
        teacher_threshold(x, np.zeros(120, dtype=int))


# ---- refitting the output layer before distillation ------------------------------------------
class _Items(torch.utils.data.Dataset):
    """Training items as the loop reads them without a seed: the image and the teacher's target."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor) -> None:
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "target": self.targets[i]}


class _Student(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 9), torch.nn.Tanh())
        self.output = torch.nn.Linear(9, 4, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.body(x))


def test_the_output_layer_refit_is_the_least_squares_map_onto_the_teacher():
    from facerec.distill.refit import fit_output_layer

    g = torch.Generator().manual_seed(0)
    student = _Student().double()
    images = torch.randn(60, 3, 2, 2, generator=g, dtype=torch.float64)
    targets = torch.randn(60, 4, generator=g, dtype=torch.float64)
    chosen = np.random.default_rng(5).choice(60, 40, replace=False)
    with torch.no_grad():
        s = student(images[chosen]).numpy()
    fit = np.linalg.lstsq(s, targets[chosen].numpy(), rcond=None)[0]  # an independent solve
    want = (student.output.weight.detach().numpy().T @ fit).T
    before, after = fit_output_layer(student, _Items(images, targets), 40, seed=5)
    assert np.allclose(student.output.weight.detach().numpy(), want, atol=1e-8)
    assert after > before
    with torch.no_grad():  # the new layer gives what the fitted map gives
        assert np.allclose(student(images[chosen]).numpy(), s @ fit, atol=1e-8)


def test_a_backbone_without_a_plain_output_layer_cannot_be_refitted():
    from facerec.distill.refit import fit_output_layer
    from facerec.errors import ConfigError
    from facerec.models import build_backbone

    net = build_backbone("mobilefacenet", 8, 32)
    items = _Items(torch.zeros(4, 3, 32, 32), torch.zeros(4, 8))
    with pytest.raises(
        ConfigError, match=r"distill\.fit_output needs a backbone whose output layer is one bias-free linear layer"
    ):
        fit_output_layer(net, items, 4, seed=0)
