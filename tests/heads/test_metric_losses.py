"""Metric losses against brute-force loops in float64 (loss and finite-difference gradient)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from conftest import finite_diff
from facerec.heads import build_head

MARGIN = 0.4


def normalized(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def dist(x: np.ndarray, i: int, j: int) -> float:
    return float(np.linalg.norm(x[i] - x[j]))


def ref_contrastive(x, y, margin=1.0):
    x = normalized(x)
    terms = []
    for i, j in itertools.combinations(range(len(x)), 2):
        d = dist(x, i, j)
        terms.append(d**2 if y[i] == y[j] else max(0.0, margin - d) ** 2)
    return float(np.mean(terms))


def ref_batch_hard(x, y):
    x = normalized(x)
    losses = []
    for a in range(len(x)):
        pos = [dist(x, a, p) for p in range(len(x)) if p != a and y[p] == y[a]]
        neg = [dist(x, a, n) for n in range(len(x)) if y[n] != y[a]]
        losses.append(max(0.0, max(pos) - min(neg) + MARGIN))
    return float(np.mean(losses))


def ref_semi_hard(x, y):
    x = normalized(x)
    losses = []
    for a in range(len(x)):
        for p in range(len(x)):
            if p == a or y[p] != y[a]:
                continue
            d_ap = dist(x, a, p)
            neg = [dist(x, a, n) for n in range(len(x)) if y[n] != y[a]]
            farther = [d for d in neg if d > d_ap]
            d_an = min(farther) if farther else max(neg)
            losses.append(max(0.0, d_ap - d_an + MARGIN))
    return float(np.mean(losses))


def ref_all_triplets(x, y):
    x = normalized(x)
    losses = []
    n = len(x)
    for a, p, q in itertools.product(range(n), repeat=3):
        if p != a and y[p] == y[a] and y[q] != y[a]:
            value = dist(x, a, p) - dist(x, a, q) + MARGIN
            if value > 0:
                losses.append(value)
    return float(np.mean(losses))


def ref_center(x, y, centers):
    return float(np.mean([0.5 * ((x[i] - centers[y[i]]) ** 2).sum() for i in range(len(x))]))


CASES = {
    "contrastive": ({}, ref_contrastive),
    "batch_hard": ({"mining": "batch_hard", "margin": MARGIN}, ref_batch_hard),
    "semi_hard": ({"mining": "semi_hard", "margin": MARGIN}, ref_semi_hard),
    "all": ({"mining": "all", "margin": MARGIN}, ref_all_triplets),
}


def pk_batch(seed: int):
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), 3)
    x = rng.normal(size=(9, 5)) + y[:, None] * 0.5
    return x, y


@pytest.mark.parametrize("case", list(CASES))
def test_metric_losses_match_brute_force(case):
    options, ref = CASES[case]
    name = "contrastive" if case == "contrastive" else "triplet"
    loss_fn = build_head(name, 5, 3, options)
    x, y = pk_batch(0)
    xt = torch.tensor(x, requires_grad=True)
    loss = loss_fn(xt, torch.tensor(y))
    loss.backward()
    expected = ref(x, y)
    assert float(loss.detach()) == pytest.approx(expected, abs=1e-10)
    assert expected > 0
    xr = x.copy()
    (grad,) = finite_diff(lambda: ref(xr, y), [xr])
    np.testing.assert_allclose(xt.grad.numpy(), grad, atol=1e-5)


def test_semi_hard_uses_farthest_negative_when_none_is_farther():
    # anchor 0's positive is farther than every negative: fallback to the farthest negative
    x = np.array([[1.0, 0.0], [-1.0, 0.05], [0.9, 0.4], [0.8, -0.6]])
    y = np.array([0, 0, 1, 1])
    loss = build_head("triplet", 2, 2, {"mining": "semi_hard", "margin": MARGIN})
    assert float(loss(torch.tensor(x), torch.tensor(y))) == pytest.approx(ref_semi_hard(x, y))


def test_center_loss_matches_reference():
    loss_fn = build_head("center", 5, 3).double()
    x, y = pk_batch(1)
    centers = loss_fn.centers.detach().numpy().copy()
    xt = torch.tensor(x, requires_grad=True)
    value = loss_fn(xt, torch.tensor(y))
    value.backward()
    assert float(value.detach()) == pytest.approx(ref_center(x, y, centers))
    xr, cr = x.copy(), centers.copy()
    gx, gc = finite_diff(lambda: ref_center(xr, y, cr), [xr, cr])
    np.testing.assert_allclose(xt.grad.numpy(), gx, atol=1e-6)
    np.testing.assert_allclose(loss_fn.centers.grad.numpy(), gc, atol=1e-6)


def test_pair_losses_explain_a_batch_without_positives():
    loss = build_head("triplet", 4, 4)
    with pytest.raises(ValueError, match="pk"):
        loss(torch.randn(4, 4), torch.arange(4))


def test_zero_distance_pairs_have_finite_gradient():
    x = torch.ones(4, 3, dtype=torch.float64, requires_grad=True)
    loss = build_head("contrastive", 3, 2)(x, torch.tensor([0, 0, 1, 1]))
    loss.backward()
    assert torch.isfinite(x.grad).all()
