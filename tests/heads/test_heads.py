"""Every head's loss and gradient against an independent float64 NumPy reference.

The references below are written from the papers' formulas with plain NumPy and Python
loops; their gradients are central finite differences, so nothing is shared with the torch
implementation or autograd.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import finite_diff
from facerec.heads import build_head
from facerec.heads.margins import combined_margin

B, D, C = 6, 8, 5
TOL = 1e-5


def logsumexp(v: np.ndarray) -> float:
    m = v.max()
    return float(m + np.log(np.exp(v - m).sum()))


def a_softmax_psi(theta: float, m1: float, m2: float, m3: float) -> float:
    """(-1)^k cos(m1 theta + m2) - 2k - m3 on the k-th interval of u = m1 theta + m2."""
    u = m1 * theta + m2
    k = 0
    while u >= (k + 1) * math.pi:
        k += 1
    return (-1) ** k * math.cos(u) - 2 * k - m3


def clipped_acos(c: float) -> float:
    return math.acos(min(max(c, -1 + 1e-7), 1 - 1e-7))


def ref_margin_loss(x, w, y, scale, target_fn, negative_fn=None) -> float:
    """Mean cross-entropy of s * cos logits with target_fn(cos_t, i) replacing the target."""
    total = 0.0
    for i in range(len(x)):
        xi = x[i] / np.sqrt((x[i] ** 2).sum())
        cos = np.array([xi @ (wj / np.sqrt((wj**2).sum())) for wj in w])
        target = target_fn(cos[y[i]], i)
        logits = cos.copy()
        if negative_fn is not None:
            logits = np.array([negative_fn(c, target, i) for c in cos])
        logits[y[i]] = target
        logits = scale * logits
        total += logsumexp(logits) - logits[y[i]]
    return total / len(x)


def random_problem(seed: int, near_pi: bool = False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(B, D)) * 3
    w = rng.normal(size=(C, D))
    y = rng.integers(0, C, size=B)
    if near_pi:  # embeddings almost opposite their class center: theta close to pi
        for i in range(B):
            x[i] = -w[y[i]] * 2 + rng.normal(size=D) * 0.02
    return x, w, y


def run_head(head, x, w, y, dtype=torch.float64):
    head = head.to(dtype).train()
    with torch.no_grad():
        head.weight.copy_(torch.tensor(w, dtype=dtype))
    xt = torch.tensor(x, dtype=dtype, requires_grad=True)
    loss = head(xt, torch.tensor(y))
    loss.backward()
    return float(loss.detach()), xt.grad.numpy(), head.weight.grad.numpy()


def check_against_reference(head, x, w, y, ref_loss):
    loss, gx, gw = run_head(head, x, w, y)
    rx, rw = x.copy(), w.copy()
    expected = ref_loss(rx, rw)
    ex, ew = finite_diff(lambda: ref_loss(rx, rw), [rx, rw])
    assert abs(loss - expected) < TOL * max(1.0, abs(expected))
    np.testing.assert_allclose(gx, ex, atol=TOL, rtol=TOL)
    np.testing.assert_allclose(gw, ew, atol=TOL, rtol=TOL)


MARGINS = {
    "normface": ({"scale": 16.0}, (1.0, 0.0, 0.0)),
    "cosface": ({"margin": 0.35, "scale": 16.0}, (1.0, 0.0, 0.35)),
    "arcface": ({"margin": 0.5, "scale": 16.0}, (1.0, 0.5, 0.0)),
    "sphereface": ({"margin": 4.0, "scale": 16.0, "lambda_base": 0.0}, (4.0, 0.0, 0.0)),
    "combined": ({"m1": 1.35, "m2": 0.25, "m3": 0.2, "scale": 16.0}, (1.35, 0.25, 0.2)),
}


@pytest.mark.parametrize("near_pi", [False, True])
@pytest.mark.parametrize("name", list(MARGINS))
def test_angular_margin_heads_match_reference(name, near_pi):
    options, (m1, m2, m3) = MARGINS[name]
    x, w, y = random_problem(1, near_pi)
    head = build_head(name, D, C, options)

    def ref(xa, wa):
        return ref_margin_loss(xa, wa, y, options["scale"], lambda c, i: a_softmax_psi(clipped_acos(c), m1, m2, m3))

    check_against_reference(head, x, w, y, ref)


def test_near_pi_inputs_really_reach_the_extension():
    x, w, y = random_problem(1, near_pi=True)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    wn = w / np.linalg.norm(w, axis=1, keepdims=True)
    theta = np.arccos(np.einsum("bd,bd->b", xn, wn[y]))
    assert (theta + 0.5 > math.pi).all()


def test_sphereface_annealing_matches_reference():
    x, w, y = random_problem(2)
    head = build_head("sphereface", D, C, {"scale": 16.0, "lambda_base": 1000.0, "lambda_min": 5.0})
    head.margin.step.fill_(100)
    lam = max(5.0, 1000.0 / (1 + 0.12 * 100))

    def ref(xa, wa):
        return ref_margin_loss(
            xa,
            wa,
            y,
            16.0,
            lambda c, i: (lam * c + a_softmax_psi(clipped_acos(c), 4.0, 0, 0)) / (1 + lam),
        )

    check_against_reference(head, x, w, y, ref)
    assert int(head.margin.step) == 101


def test_softmax_head_matches_reference():
    x, w, y = random_problem(3)
    head = build_head("softmax", D, C).double()
    with torch.no_grad():
        head.bias.copy_(torch.linspace(-0.5, 0.5, C))
    bias = head.bias.detach().numpy().copy()

    def ref(xa, wa):
        total = 0.0
        for i in range(B):
            logits = wa @ xa[i] + bias
            total += logsumexp(logits) - logits[y[i]]
        return total / B

    check_against_reference(head, x, w, y, ref)


def test_adaface_matches_reference():
    x, w, y = random_problem(4)
    head = build_head("adaface", D, C, {"scale": 16.0, "margin": 0.4, "h": 0.333})
    norms = np.linalg.norm(x, axis=1)
    mean = 0.99 * 20.0 + 0.01 * norms.mean()
    std = 0.99 * 100.0 + 0.01 * norms.std(ddof=1)
    z = np.clip((norms - mean) / (std + 1e-3) * 0.333, -1, 1)  # no gradient through z

    def target(c, i):
        theta = min(max(clipped_acos(c) - 0.4 * z[i], 1e-7), math.pi - 1e-7)
        return math.cos(theta) - (0.4 + 0.4 * z[i])

    check_against_reference(head, x, w, y, lambda xa, wa: ref_margin_loss(xa, wa, y, 16.0, target))
    assert float(head.margin.norm_mean) == pytest.approx(mean)


def test_magface_matches_reference():
    x, w, y = random_problem(5)
    x = x * 8  # norms inside [l_a, u_a] so the margin and regularizer depend on them
    head = build_head("magface", D, C, {"scale": 16.0})

    def ref(xa, wa):
        a = np.clip(np.linalg.norm(xa, axis=1), 10, 110)
        m = (0.8 - 0.45) / 100 * (a - 10) + 0.45

        def target(c, i):
            return a_softmax_psi(clipped_acos(c), 1.0, m[i], 0.0)

        ce = ref_margin_loss(xa, wa, y, 16.0, target)
        return ce + 35.0 * float(np.mean(a / 110**2 + 1 / a))

    check_against_reference(head, x, w, y, ref)


def test_curricularface_matches_reference():
    x, w, y = random_problem(6)
    head = build_head("curricularface", D, C, {"scale": 16.0, "margin": 0.5})
    head.margin.t.fill_(0.3)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    wn = w / np.linalg.norm(w, axis=1, keepdims=True)
    cos_t = np.einsum("bd,bd->b", xn, wn[y])
    t = 0.99 * 0.3 + 0.01 * cos_t.mean()
    hard_threshold = [a_softmax_psi(clipped_acos(c), 1.0, 0.5, 0.0) for c in cos_t]

    def negative(c, target, i):  # mask fixed at the unperturbed point (no gradient through it)
        return c * (t + c) if c > hard_threshold[i] else c

    def target(c, i):
        return a_softmax_psi(clipped_acos(c), 1.0, 0.5, 0.0)

    check_against_reference(head, x, w, y, lambda xa, wa: ref_margin_loss(xa, wa, y, 16.0, target, negative))
    assert float(head.margin.t) == pytest.approx(t)


@pytest.mark.parametrize("margins", [(1, 0.5, 0), (4, 0, 0), (1.35, 0.25, 0.2), (2, 0.5, 0.1)])
def test_combined_target_is_continuous_and_decreasing_on_0_pi(margins):
    theta = torch.linspace(1e-4, math.pi - 1e-4, 20001, dtype=torch.float64)
    psi = combined_margin(torch.cos(theta), *margins)
    steps = psi[1:] - psi[:-1]
    assert (steps <= 1e-12).all()
    assert steps.abs().max() < 1e-3  # no jumps


def test_margins_can_be_combined_and_reduce_to_single_margins():
    cos = torch.linspace(-0.99, 0.99, 101, dtype=torch.float64)
    theta = torch.acos(cos)
    arc = combined_margin(cos, 1.0, 0.5, 0.0)
    inside = theta + 0.5 <= math.pi
    torch.testing.assert_close(arc[inside], torch.cos(theta[inside] + 0.5))
    torch.testing.assert_close(combined_margin(cos, 1.0, 0.0, 0.35), cos - 0.35)
    both = combined_margin(cos, 2.0, 0.3, 0.2)
    inside = 2 * theta + 0.3 <= math.pi
    torch.testing.assert_close(both[inside], torch.cos(2 * theta[inside] + 0.3) - 0.2)


def test_arcface_margin_gradient_flows_through_the_margin():
    """The gradient w.r.t. the target cosine is d cos(theta+m)/d cos(theta), not 1."""
    cos = torch.tensor([0.3, -0.2, 0.8], dtype=torch.float64, requires_grad=True)
    combined_margin(cos, 1.0, 0.5, 0.0).sum().backward()
    theta = torch.acos(cos.detach())
    torch.testing.assert_close(cos.grad, torch.sin(theta + 0.5) / torch.sin(theta))


def test_float32_agrees_with_float64():
    x, w, y = random_problem(7)
    for name, (options, _) in MARGINS.items():
        l64, gx64, _ = run_head(build_head(name, D, C, options), x, w, y, torch.float64)
        l32, gx32, _ = run_head(build_head(name, D, C, options), x, w, y, torch.float32)
        assert l32 == pytest.approx(l64, rel=1e-5)
        np.testing.assert_allclose(gx32, gx64, rtol=1e-3, atol=1e-5)


def test_gradcheck_arcface():
    head = build_head("arcface", D, C, {"scale": 8.0}).double()
    x = torch.randn(B, D, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, C, (B,))
    assert torch.autograd.gradcheck(lambda e: head(e, y), (x,))


def test_unknown_option_is_reported_with_suggestion():
    from facerec.errors import ConfigError

    with pytest.raises(ConfigError, match="Did you mean 'margin'"):
        build_head("arcface", D, C, {"margn": 0.5})
    with pytest.raises(ConfigError, match="unknown head 'arcfce'"):
        build_head("arcfce", D, C)
