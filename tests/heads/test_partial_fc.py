"""Partial FC: 2 gloo processes against single-process full softmax; sampling; sparse updates."""

from __future__ import annotations

import math

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from facerec.distributed import all_reduce_sum_hook, shard_range
from facerec.errors import ConfigError
from facerec.heads import build_head, build_margin
from facerec.heads.classifier import MarginHead
from facerec.heads.lazy_sgd import StepHistory, transition
from facerec.heads.margins import AdaFaceMargin, CombinedMargin, Margin, combined_margin
from facerec.heads.partial_fc import PartialFC, ScaledCosines

EMB, CLASSES, BATCH = 8, 11, 12
MARGINS = {"m1": 1.0, "m2": 0.3, "m3": 0.1, "scale": 16.0}

# Partial FC options (beside scale and sample rate 1) and update of each case against the
# single-process head. Options make every margin's state matter: t_alpha 0.5 weighs the batch
# statistics heavily, MagFace's norm range holds the problem's norms (1.7 to 5.1).
CASES = {
    "combined-sparse": ({"m1": 1.0, "m2": 0.3, "m3": 0.1}, "sparse"),
    "combined-dense": ({"m1": 1.0, "m2": 0.3, "m3": 0.1}, "dense"),
    "adaface": ({"margin": {"name": "adaface", "margin": 0.4, "h": 0.5, "t_alpha": 0.5}}, "sparse"),
    "curricularface": ({"margin": {"name": "curricularface", "margin": 0.3, "t_alpha": 0.5}}, "sparse"),
    "magface": (
        {"margin": {"name": "magface", "l_a": 1.0, "u_a": 6.0, "l_m": 0.3, "u_m": 0.8, "lambda_g": 2.0}},
        "sparse",
    ),
}
START = {"curricularface": {"t": 0.3}}  # margin buffers before the step, where the default (0) hides them


def problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, 16, generator=g, dtype=torch.float64)
    y = torch.randint(0, CLASSES, (BATCH,), generator=g)
    centers = torch.randn(CLASSES, EMB, generator=g, dtype=torch.float64)
    net = nn.Sequential(nn.Linear(16, 32), nn.PReLU(), nn.Linear(32, EMB)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.3)
    return x, y, centers, net


def margin_of(case: str) -> Margin:
    options, _ = CASES[case]
    if "margin" in options:
        return build_margin(options["margin"])
    return CombinedMargin(options["m1"], options["m2"], options["m3"])


def start_margin(head: nn.Module, case: str) -> None:
    with torch.no_grad():
        for name, value in START.get(case, {}).items():
            getattr(head.margin, name).fill_(value)


def partial_fc(case: str, classes: int = CLASSES, **extra) -> PartialFC:
    options, update = CASES[case]
    head = build_head("partial_fc", EMB, classes, {**options, "scale": 16.0, "update": update, **extra}).double()
    start_margin(head, case)
    return head


def center_grad(head: PartialFC) -> torch.Tensor:
    return head.weight.grad if head.update == "dense" else head._sampled[1].grad


def reference(case: str = "combined-sparse"):
    """Loss, backbone and center gradients, margin state after the step: single-process head."""
    x, y, centers, net = problem()
    head = MarginHead(EMB, CLASSES, margin_of(case), scale=16.0).double()
    start_margin(head, case)
    with torch.no_grad():
        head.weight.copy_(centers)
    loss = head(net(x), y)
    loss.backward()
    grads = [p.grad.clone() for p in net.parameters()]
    return float(loss.detach()), grads, head.weight.grad.clone(), head.margin.state_dict()


def worker(rank: int, world: int, init: str, out: str) -> None:
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    try:
        results = {}
        for case in CASES:
            x, y, centers, net = problem()
            ddp = nn.parallel.DistributedDataParallel(net)
            ddp.register_comm_hook(None, all_reduce_sum_hook)
            head = partial_fc(case, sample_rate=1.0)
            start, end = shard_range(CLASSES, rank, world)
            with torch.no_grad():
                head.weight.copy_(centers[start:end])
            per = BATCH // world
            loss = head(ddp(x[rank * per : (rank + 1) * per]), y[rank * per : (rank + 1) * per])
            loss.backward()
            results[case] = {
                "loss": float(loss.detach()),
                "backbone": [p.grad for p in net.parameters()],
                "centers": center_grad(head),
                "range": (start, end),
                "margin": head.margin.state_dict(),
            }
            del ddp  # its reducer holds the process group: release it before the next case
        torch.save(results, f"{out}/rank{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory) -> list[dict]:
    """Every case run once on 2 gloo processes (one spawn for all: starting processes is slow)."""
    out = tmp_path_factory.mktemp("gloo")
    mp.spawn(worker, args=(2, f"file://{out}/rendezvous", str(out)), nprocs=2)
    return [torch.load(out / f"rank{rank}.pt") for rank in range(2)]


@pytest.mark.parametrize("case", list(CASES))
def test_two_gloo_ranks_equal_single_process_full_softmax(two_ranks, case):
    loss, backbone, centers, margin_state = reference(case)
    for got in (ranks[case] for ranks in two_ranks):
        assert got["loss"] == pytest.approx(loss, abs=1e-9)
        for a, b in zip(got["backbone"], backbone, strict=True):
            torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-7)
        start, end = got["range"]
        torch.testing.assert_close(got["centers"], centers[start:end], atol=1e-9, rtol=1e-7)
        # the margin's statistics are those of the global batch
        assert got["margin"].keys() == margin_state.keys()
        for key, value in margin_state.items():
            torch.testing.assert_close(got["margin"][key], value, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("case", list(CASES))
def test_single_process_rate_one_equals_full_softmax(case):
    x, y, centers, net = problem()
    head = partial_fc(case, sample_rate=1.0)
    with torch.no_grad():
        head.weight.copy_(centers)
    loss = head(net(x), y)
    ref_loss, ref_backbone, ref_grad, _ = reference(case)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(ref_loss, abs=1e-10)
    torch.testing.assert_close(center_grad(head), ref_grad)
    for p, want in zip(net.parameters(), ref_backbone, strict=True):
        torch.testing.assert_close(p.grad, want)


def test_cases_exercise_their_margins():
    """The problem reaches what each margin does differently: CurricularFace hard negatives,
    MagFace norms inside its range, AdaFace norms spread across its clip range."""
    x, y, centers, net = problem()
    emb = net(x).detach()
    norms = emb.norm(dim=1)
    cos = torch.nn.functional.normalize(emb, dim=1) @ torch.nn.functional.normalize(centers, dim=1).t()
    target = combined_margin(cos.gather(1, y[:, None]).squeeze(1), m2=0.3)
    hard = (cos > target[:, None]).sum() - (cos.gather(1, y[:, None]).squeeze(1) > target).sum()
    assert hard > 5
    assert ((norms > 1.0) & (norms < 6.0)).all()
    z = (norms - norms.mean()) / norms.std() * 0.5
    assert z.min() < -0.3 and z.max() > 0.3


def test_margin_spelling():
    assert isinstance(build_head("partial_fc", EMB, CLASSES, {"margin": "adaface"}).margin, AdaFaceMargin)
    default = build_head("partial_fc", EMB, CLASSES).margin
    assert isinstance(default, CombinedMargin) and (default.m1, default.m2, default.m3) == (1.0, 0.5, 0.0)
    with pytest.raises(ValueError, match="either 'margin' or"):
        build_head("partial_fc", EMB, CLASSES, {"margin": "adaface", "m2": 0.3})
    with pytest.raises(ConfigError, match="needs a 'name'"):
        build_head("partial_fc", EMB, CLASSES, {"margin": {"margin": 0.3}})
    with pytest.raises(ConfigError, match="Did you mean 'margin'"):
        build_head("partial_fc", EMB, CLASSES, {"margin": {"name": "arcface", "margn": 0.3}})


def test_every_positive_is_sampled():
    head = build_head("partial_fc", EMB, 1000, {"sample_rate": 0.05})
    g = torch.Generator().manual_seed(1)
    for _ in range(50):
        labels = torch.randint(0, 1000, (int(torch.randint(1, 120, (1,), generator=g)),), generator=g)
        index, target = head.sample(labels)
        assert (target >= 0).all()  # one process holds every class
        assert torch.equal(index[target], labels)  # each row's column is its own class
        assert len(index) == max(math.ceil(0.05 * 1000), len(labels.unique()))
        assert len(index.unique()) == len(index)


def test_sparse_step_is_sgd_at_rate_one_and_leaves_unsampled_rows_alone():
    x, y, centers, net = problem()
    sparse = build_head("partial_fc", EMB, CLASSES, {**MARGINS, "sample_rate": 1.0}).double()
    dense = build_head("partial_fc", EMB, CLASSES, {**MARGINS, "sample_rate": 1.0, "update": "dense"}).double()
    with torch.no_grad():
        sparse.weight.copy_(centers)
        dense.weight.copy_(centers)
    opt = torch.optim.SGD(dense.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    emb = net(x).detach()
    for _ in range(3):
        sparse(emb, y).backward()
        sparse.sparse_step(0.1, 0.9, 5e-4)
        opt.zero_grad()
        dense(emb, y).backward()
        opt.step()
    torch.testing.assert_close(sparse.weight, dense.weight.detach())

    partial = build_head("partial_fc", EMB, 500, {"sample_rate": 0.1}).double()
    before = partial.weight.clone()
    partial(emb, y).backward()
    index = partial._sampled[0]
    partial.sparse_step(0.1, 0.9, 5e-4)
    untouched = torch.ones(500, dtype=torch.bool)
    untouched[index] = False
    assert torch.equal(partial.weight[untouched], before[untouched])
    assert (partial.momentum_buffer[untouched] == 0).all()
    assert not torch.equal(partial.weight[index], before[index])


def test_sampling_state_resumes():
    a = build_head("partial_fc", EMB, 300, {"sample_rate": 0.1, "seed": 3})
    labels = torch.arange(0, 300, 30)
    a.sample(labels)
    b = build_head("partial_fc", EMB, 300, {"sample_rate": 0.1, "seed": 9})
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.sample(labels)[0], b.sample(labels)[0])


def brute_force_product(steps, start: int, end: int) -> torch.Tensor:
    out = torch.eye(2, dtype=torch.float64)
    for lr, momentum, wd, nesterov in steps[start:end]:
        out = transition(lr, momentum, wd, bool(nesterov)) @ out
    return out


def test_step_history_range_products_match_a_loop_and_survive_a_reload():
    g = torch.Generator().manual_seed(1)
    history = StepHistory()
    for t in range(77):  # crosses several capacity doublings
        history.append(float(torch.rand(1, generator=g)) * 0.5, 0.9, 5e-3, nesterov=t % 3 == 0)
    start = torch.randint(0, 78, (300,), generator=g)
    end = torch.minimum(start + torch.randint(0, 78, (300,), generator=g), torch.tensor(77))
    got = history.product(start, end)
    for i in range(300):
        want = brute_force_product(history.steps, int(start[i]), int(end[i]))
        torch.testing.assert_close(got[i], want, rtol=1e-12, atol=1e-14)
    reloaded = StepHistory()
    reloaded.load_state_dict(history.state_dict())
    assert torch.equal(reloaded.product(start, end), got)  # bit-identical after a resume
    with pytest.raises(ValueError, match="step ranges"):
        history.product(torch.tensor([5]), torch.tensor([4]))


@pytest.mark.parametrize("nesterov", [False, True])
def test_sparse_update_with_catch_up_equals_dense_sgd_over_every_row(nesterov):
    """r < 1: rows skipped for many steps must end where SGD over all rows (zero gradient for the
    unsampled ones: momentum keeps moving them, weight decay shrinks them) puts them."""
    x, y, _, net = problem()
    emb = net(x).detach()
    config = {**MARGINS, "sample_rate": 0.05, "seed": 5}
    sparse = build_head("partial_fc", EMB, 400, config).double()
    dense = build_head("partial_fc", EMB, 400, {**config, "update": "dense"}).double()
    opt = torch.optim.SGD(dense.parameters(), lr=0.1, momentum=0.9, weight_decay=0.05, nesterov=nesterov)
    for step in range(60):
        lr = 0.2 * (1 + math.cos(math.pi * step / 60)) / 2  # a schedule: every step's map differs
        labels = (y * 37 + step) % 400
        loss_sparse = sparse(emb, labels)
        loss_sparse.backward()
        sparse.sparse_step(lr, 0.9, 0.05, nesterov=nesterov)
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad()
        loss_dense = dense(emb, labels)
        loss_dense.backward()
        opt.step()
        torch.testing.assert_close(loss_sparse, loss_dense, rtol=1e-10, atol=1e-10)
    assert int((sparse.last_step < 59).sum()) > 300  # most rows really were lazy
    sparse.synchronize()
    torch.testing.assert_close(sparse.weight, dense.weight.detach(), rtol=1e-10, atol=1e-12)
    momentum = opt.state[dense.weight]["momentum_buffer"]
    torch.testing.assert_close(sparse.momentum_buffer, momentum, rtol=1e-10, atol=1e-12)


def test_lazy_rows_resume_bit_identically():
    x, y, _, net = problem()
    emb = net(x).detach()
    config = {**MARGINS, "sample_rate": 0.1, "seed": 2}

    def run(head, steps):
        losses = []
        for step in steps:
            loss = head(emb, (y * 13 + step) % 300)
            loss.backward()
            head.sparse_step(0.05 + 0.001 * step, 0.9, 1e-3)
            losses.append(float(loss.detach()))
        return losses

    straight = build_head("partial_fc", EMB, 300, config).double()
    want = run(straight, range(30))
    first = build_head("partial_fc", EMB, 300, config).double()
    got = run(first, range(17))
    second = build_head("partial_fc", EMB, 300, config).double()
    second.load_state_dict(first.state_dict())
    got += run(second, range(17, 30))
    assert got == want


def test_scaled_cosines_gradient_matches_autograd_and_finite_differences():
    g = torch.Generator().manual_seed(4)
    emb = torch.nn.functional.normalize(torch.randn(5, 7, generator=g, dtype=torch.float64), dim=1)
    rows = torch.randn(9, 7, generator=g, dtype=torch.float64) * 3
    emb.requires_grad_(True)
    rows.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda e, w: ScaledCosines.apply(e, w, 4.0), (emb, rows))
    weight = torch.randn(5, 9, generator=g, dtype=torch.float64)
    (ScaledCosines.apply(emb, rows, 4.0) * weight).sum().backward()
    got = emb.grad.clone(), rows.grad.clone()
    emb.grad = rows.grad = None
    (4.0 * emb @ torch.nn.functional.normalize(rows, dim=1).t() * weight).sum().backward()
    torch.testing.assert_close(got[0], emb.grad)
    torch.testing.assert_close(got[1], rows.grad)
