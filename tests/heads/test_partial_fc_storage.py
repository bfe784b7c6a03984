"""Partial FC's class-row storage (bf16/fp16, no momentum, memory-mapped files) and its sampler,
against float64 references, across a resume, and on properties of the sampled sets."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import losses, tiny
from facerec.config import class_storage_config
from facerec.errors import ConfigError
from facerec.heads import build_head
from facerec.heads.class_sampling import sample_classes
from facerec.heads.class_store import DTYPES, RoundingNoise, round_stochastic
from facerec.train import Trainer

EMB, BATCH = 8, 12
BASE = {"m1": 1.0, "m2": 0.3, "m3": 0.1, "scale": 16.0}


def embeddings_and_labels(classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(BATCH, EMB, generator=g), torch.randint(0, classes, (BATCH,), generator=g)


def head(classes: int, tmp_path=None, seed: int = 4, rate: float = 0.1, **storage):
    if storage.get("backend") == "mmap":
        storage.setdefault("directory", str(tmp_path))
    return build_head("partial_fc", EMB, classes, {**BASE, "sample_rate": rate, "seed": seed, "storage": storage})


def step(pfc, emb: torch.Tensor, labels: torch.Tensor, lr: float, momentum: float = 0.9, wd: float = 5e-2) -> float:
    loss = pfc(emb, labels)
    loss.backward()
    pfc.sparse_step(lr, momentum, wd)
    return float(loss.detach())


# ---- options -------------------------------------------------------------------------------
def test_storage_options_are_checked(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown config key 'head.options.storage.dtpye'.*'dtype'"):
        head(50, dtpye="bf16")
    with pytest.raises(ConfigError, match=r"storage.dtype must be one of fp32, bf16, fp16, got 'bf61'"):
        head(50, dtype="bf61")
    with pytest.raises(ConfigError, match=r"storage.rounding must be one of nearest, stochastic"):
        head(50, rounding="up")
    with pytest.raises(ConfigError, match="'mmap' needs a directory"):
        build_head("partial_fc", EMB, 50, {"storage": {"backend": "mmap"}})
    with pytest.raises(ConfigError, match="update 'sparse' only"):
        build_head("partial_fc", EMB, 50, {"update": "dense", "storage": {"dtype": "bf16"}})
    blocked = tmp_path / "file"
    blocked.write_text("")
    with pytest.raises(ConfigError, match="cannot create"):
        head(50, backend="mmap", directory=str(blocked / "sub"))


def test_compact_layout_keeps_its_dtype_and_names_its_arrays(tmp_path):
    pfc = head(40, dtype="bf16", momentum=False).double()  # a module cast leaves compact rows alone
    assert pfc.weight.dtype == torch.bfloat16 and pfc.momentum_buffer is None
    assert {"weight", "last_step"} <= set(pfc.state_dict()) and "momentum_buffer" not in pfc.state_dict()
    mapped = head(40, tmp_path, dtype="fp16", backend="mmap")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "partial_fc.rank0of1.momentum.fp16",
        "partial_fc.rank0of1.weight.fp16",
    ]
    assert (tmp_path / "partial_fc.rank0of1.weight.fp16").stat().st_size == 40 * EMB * 2
    plain = head(40)  # fp32 in memory: the initial centers of earlier versions, same generator
    want = torch.empty(40, EMB).normal_(0, 0.01, generator=torch.Generator().manual_seed(4 * 1_000_003))
    assert torch.equal(plain.weight, want)
    assert torch.equal(mapped.weight, want.half())


# ---- rounding ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["bf16", "fp16"])
def test_stochastic_rounding_is_unbiased_and_lands_on_a_neighbour(name):
    dtype = DTYPES[name]
    g = torch.Generator().manual_seed(0)
    x = (torch.rand(64, generator=g) - 0.5) * torch.logspace(-3, 2, 64)  # both signs, many exponents
    draws = 4000
    noise = RoundingNoise(1)
    out = round_stochastic(x.repeat(draws, 1).clone(), dtype, noise).double()
    near = x.to(dtype).double()
    other = torch.nextafter(x.to(dtype), torch.where(x >= near.float(), torch.inf, -torch.inf).to(dtype)).double()
    assert ((out == near) | (out == other)).all()  # never further than the two neighbours
    gap = (other - near).abs()
    p = (x.double() - near).abs() / gap  # the probability of `other`
    mean_error = (out.mean(0) - x.double()).abs()
    bound = 5 * gap * torch.sqrt(p * (1 - p) / draws) + 1e-12  # 5 standard deviations of the mean
    assert (mean_error <= bound).all()
    nearest_bias = (near - x.double()).abs()
    assert (mean_error < nearest_bias).float().mean() > 0.9  # where nearest rounding is off, SR is not


# ---- the lazy catch-up with compact rows against float64 -----------------------------------
@pytest.mark.parametrize(("dtype", "momentum"), [("bf16", True), ("fp16", True), ("bf16", False)])
def test_compact_rows_follow_a_float64_reference_of_the_lazy_update(dtype, momentum):
    """Every step: the rows the head gathers equal the stored values brought through the missed
    steps in float64 (a plain loop over them), to fp32 rounding; what it writes back is the float64
    step rounded to nearest in the stored dtype, to one unit in the last place where fp32
    arithmetic lands on the other side of a rounding boundary."""
    classes, mu, wd = 300, (0.9 if momentum else 0.0), 5e-2
    emb, y = embeddings_and_labels(classes)
    pfc = head(classes, rate=0.05, dtype=dtype, momentum=momentum, rounding="nearest")
    w = pfc.weight.double().clone()
    buf = torch.zeros_like(w)
    last = torch.full((classes,), -1)
    lrs: list[float] = []
    eps = torch.finfo(DTYPES[dtype]).eps
    for t in range(40):
        lr = 0.3 * (1 + math.cos(math.pi * t / 40)) / 2
        loss = pfc(emb, (y * 37 + t) % classes)
        loss.backward()
        index, rows, _ = pfc._sampled
        for i in index.tolist():  # the missed steps last[i]+1 .. t-1, one by one
            for s in range(last[i] + 1, t):
                buf[i] = mu * buf[i] + wd * w[i]
                w[i] = w[i] - lrs[s] * buf[i]
        torch.testing.assert_close(rows.detach().double(), w[index], rtol=2e-6, atol=1e-9)
        grad = rows.grad.double().clone()
        pfc.sparse_step(lr, 0.9, wd)
        g = grad + wd * w[index]
        buf[index] = mu * buf[index] + g
        w[index] = w[index] - lr * buf[index]
        for ref, got in [(w, pfc.weight)] + ([(buf, pfc.momentum_buffer)] if momentum else []):
            want = ref[index].to(DTYPES[dtype]).double()
            diff = (got[index].double() - want).abs()
            assert (diff <= eps * want.abs() + 1e-30).all()  # at most one unit in the last place
            assert (diff == 0).float().mean() > 0.99
            ref[index] = got[index].double()  # the reference goes on from what was stored
        last[index] = t
        lrs.append(lr)
    assert int((last < 39).sum()) > 200  # most rows were lazy


# ---- memory-mapped rows -----------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_mmap_rows_equal_memory_rows_bit_for_bit(tmp_path, dtype):
    emb, y = embeddings_and_labels(500)
    memory = head(500, dtype=dtype)
    mapped = head(500, tmp_path, dtype=dtype, backend="mmap")
    for t in range(25):
        labels = (y * 13 + t) % 500
        assert step(memory, emb, labels, 0.2) == step(mapped, emb, labels, 0.2)
    assert torch.equal(memory.weight, mapped.weight)
    assert torch.equal(memory.momentum_buffer, mapped.momentum_buffer)
    on_disk = torch.from_file(
        str(tmp_path / f"partial_fc.rank0of1.weight.{dtype}"), size=500 * EMB, dtype=DTYPES[dtype]
    ).view(500, EMB)
    assert torch.equal(on_disk, memory.weight)  # the file holds the rows


@pytest.mark.parametrize("momentum", [True, False])
def test_mmap_rows_resume_bit_identically(tmp_path, momentum):
    """A checkpoint (torch.save of the state dict, loaded memory-mapped) of a bf16, stochastically
    rounded, memory-mapped head continues exactly as the uninterrupted run."""
    emb, y = embeddings_and_labels(400)
    options = {"dtype": "bf16", "backend": "mmap", "momentum": momentum}

    def run(pfc, steps):
        return [step(pfc, emb, (y * 7 + t) % 400, 0.1 + 0.002 * t) for t in steps]

    straight = head(400, tmp_path / "straight", **options)
    want = run(straight, range(30))
    first = head(400, tmp_path / "first", **options)
    got = run(first, range(17))
    torch.save(first.state_dict(), tmp_path / "checkpoint.pt")
    second = head(400, tmp_path / "second", seed=9, **options)
    second.load_state_dict(torch.load(tmp_path / "checkpoint.pt", mmap=True))
    got += run(second, range(17, 30))
    assert got == want
    assert torch.equal(second.weight, straight.weight)


def test_training_with_mmap_rows_resumes_exactly(tmp_path):
    storage = f"{{dtype: bf16, backend: mmap, directory: {tmp_path / 'rows'}}}"
    extra = [
        "head.name=partial_fc",
        f"head.options={{sample_rate: 0.5, scale: 16, m2: 0.3, storage: {storage}}}",
        "train.checkpoint_every=4",
    ]
    Trainer(tiny(tmp_path / "full", *extra)).fit()
    Trainer(tiny(tmp_path / "split", *extra, "train.stop_after=4")).fit()
    Trainer(tiny(tmp_path / "split", *extra)).fit(resume=True)
    expected, got = losses(tmp_path / "full"), losses(tmp_path / "split")
    assert sorted(got) == sorted(expected) == list(range(1, 13))
    assert got == expected


# ---- sampling ------------------------------------------------------------------------------
@pytest.mark.parametrize(("classes", "keep"), [(1000, 50), (1000, 600), (37, 37), (500, 1)])
def test_sampler_draws_keep_distinct_classes_with_every_positive(classes, keep):
    g = torch.Generator().manual_seed(2)
    for n_pos in (0, 1, 5, 30):
        positives = torch.randperm(classes, generator=g)[: min(n_pos, classes)]
        index = sample_classes(classes, keep, positives, g)
        assert len(index) == min(max(keep, len(positives)), classes)
        assert torch.equal(index, index.unique())  # sorted and distinct
        assert torch.isin(positives, index).all()
        assert int(index.min()) >= 0 and int(index.max()) < classes


@pytest.mark.parametrize("keep", [8, 40])  # the rejection and the priority regime
def test_sampler_picks_negatives_uniformly(keep):
    classes, draws = 50, 3000
    positives = torch.tensor([3, 17])
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(classes)
    for _ in range(draws):
        counts[sample_classes(classes, keep, positives, g)] += 1
    assert (counts[positives] == draws).all()
    others = counts[torch.ones(classes, dtype=torch.bool).index_fill_(0, positives, False)]
    expected = draws * (keep - 2) / 48
    chi2 = float(((others - expected) ** 2 / expected).sum())
    assert chi2 < 90  # 47 degrees of freedom: P(chi2 > 90) < 1e-4 for a uniform draw


def test_sampler_does_no_work_per_class():
    """10^15 classes: anything that touched every class (a permutation, a priority per class,
    a position map) would need petabytes; drawing 1,000 of them must not."""
    g = torch.Generator().manual_seed(0)
    positives = torch.tensor([5, 10**15 - 1])
    index = sample_classes(10**15, 1000, positives, g)
    assert len(index) == 1000 and torch.equal(index, index.unique())
    assert torch.isin(positives, index).all()
    pfc = build_head("partial_fc", EMB, 10**6, {"sample_rate": 0.001})
    labels = torch.tensor([0, 999_999, 5, 5])
    index, target = pfc.sample(labels)
    assert torch.equal(index[target], labels) and len(index) == 1000


def test_storage_config_round_trips_through_the_typed_config():
    spec = class_storage_config({"dtype": "fp16", "momentum": False})
    assert (spec.dtype, spec.momentum, spec.rounding, spec.backend) == ("fp16", False, "stochastic", "memory")
