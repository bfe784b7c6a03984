"""The head contract: capability flags, the after-step hook, resharding, old state dicts."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from facerec.errors import ConfigError
from facerec.heads import HEADS, MARGINS, Head, Margin, OptimizerStep, build_head, head_type
from facerec.heads.base import reshard_rows

EMB, CLASSES = 8, 11
PAIRWISE = {"contrastive", "triplet"}


@pytest.mark.parametrize("name", HEADS.names())
def test_every_registered_head_declares_the_contract(name):
    cls = head_type(name)
    assert issubclass(cls, Head)
    flags = (cls.needs_identity_batches, cls.sharded, cls.owns_update)
    assert all(isinstance(flag, bool) for flag in flags)
    assert cls.needs_identity_batches == (name in PAIRWISE)
    assert cls.sharded == (name == "partial_fc")
    assert cls.owns_update == (name == "partial_fc")
    assert (cls.sharded_state_keys() != ()) == cls.sharded
    head = build_head(name, EMB, CLASSES)
    assert isinstance(head, cls)
    assert isinstance(head.owns_update, bool)


def test_unknown_head_type_is_a_config_error():
    with pytest.raises(ConfigError, match="Did you mean 'arcface'"):
        head_type("arcfac")


def test_every_registered_margin_is_a_margin_module():
    for name in MARGINS.names():
        margin = MARGINS.build(name)
        assert isinstance(margin, Margin)
        assert isinstance(margin.adjusts_negatives, bool) and isinstance(margin.uses_batch_targets, bool)


def test_optimizer_step_is_frozen():
    step = OptimizerStep(lr=0.1, momentum=0.9)
    with pytest.raises(dataclasses.FrozenInstanceError):
        step.lr = 0.2  # type: ignore[misc]
    assert (step.weight_decay, step.nesterov, step.grad_scale) == (0.0, False, 1.0)


def test_after_optimizer_step_is_the_sparse_update():
    emb = torch.randn(6, EMB, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 3, 5, 7, 9, 3])
    by_hook = build_head("partial_fc", EMB, 300, {"sample_rate": 0.1, "seed": 1}).double()
    by_call = build_head("partial_fc", EMB, 300, {"sample_rate": 0.1, "seed": 1}).double()
    for step in range(3):
        by_hook(emb, (labels + step) % 300).backward()
        by_hook.after_optimizer_step(OptimizerStep(0.1, 0.9, 5e-4, nesterov=True, grad_scale=2.0))
        by_call(emb, (labels + step) % 300).backward()
        by_call.sparse_step(0.1, 0.9, 5e-4, grad_scale=2.0, nesterov=True)
    assert torch.equal(by_hook.weight, by_call.weight)
    assert torch.equal(by_hook.momentum_buffer, by_call.momentum_buffer)


def test_heads_without_an_own_update_ignore_the_hook():
    head = build_head("arcface", EMB, CLASSES)
    before = {k: v.clone() for k, v in head.state_dict().items()}
    head(torch.randn(4, EMB), torch.tensor([0, 1, 2, 3])).backward()
    head.after_optimizer_step(OptimizerStep(lr=0.1))
    after = head.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k != "margin.step")
    dense = build_head("partial_fc", EMB, CLASSES, {"update": "dense"})
    assert not dense.owns_update and "momentum_buffer" not in dense.state_dict()


def test_reshard_rows_cuts_by_shard_range():
    parts = [torch.arange(6), torch.arange(6, 11)]
    assert [p.tolist() for p in reshard_rows(parts, 3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]]


def test_partial_fc_state_reshards_and_round_trips():
    head = build_head("partial_fc", EMB, CLASSES, {"sample_rate": 0.5, "seed": 4, "margin": "adaface"})
    head(torch.randn(6, EMB), torch.tensor([0, 1, 2, 3, 4, 5])).backward()
    head.after_optimizer_step(OptimizerStep(0.1, 0.9))
    state = head.state_dict()
    split = type(head).reshard_state([state], 3)
    assert [s["_extra_state"]["class_range"] for s in split] == [(0, 4), (4, 8), (8, 11)]
    assert [len(s["weight"]) for s in split] == [4, 4, 3]
    assert all(torch.equal(s["margin.norm_mean"], state["margin.norm_mean"]) for s in split)
    fresh = torch.Generator().manual_seed(4 * 1_000_003 + 7919 + 2).get_state()
    assert torch.equal(split[2]["_extra_state"]["sampler"], fresh)
    (joined,) = type(head).reshard_state(split, 1)
    for key in head.sharded_state_keys():
        assert torch.equal(joined[key], state[key])
    copy = build_head("partial_fc", EMB, CLASSES, {"sample_rate": 0.5, "seed": 4, "margin": "adaface"})
    copy.load_state_dict(joined)
    assert len(copy.history) == 1


def test_old_single_process_state_dicts_load():
    """Before margins were modules their buffers sat on the head: step, norm_mean/std, t."""
    for name, buffers in {
        "combined": {"step": torch.tensor(7)},
        "sphereface": {"step": torch.tensor(7)},
        "adaface": {"norm_mean": torch.tensor(3.0), "norm_std": torch.tensor(2.0)},
        "curricularface": {"t": torch.tensor(0.25)},
    }.items():
        head = build_head(name, EMB, CLASSES)
        old = {"weight": torch.randn(CLASSES, EMB), **buffers}
        head.load_state_dict(old)
        for key, value in buffers.items():
            assert torch.equal(getattr(head.margin, key), value)


def test_old_partial_fc_state_dicts_load():
    head = build_head("partial_fc", EMB, CLASSES, {"m3": 0.3, "m2": 0.0})
    old = {k: v for k, v in head.state_dict().items() if not k.startswith("margin.")}
    extra = dict(old["_extra_state"])
    del extra["seed"]
    old["_extra_state"] = extra
    head.load_state_dict(old)
    assert type(head).reshard_state([old], 1)[0]["_extra_state"]["class_range"] == (0, CLASSES)
