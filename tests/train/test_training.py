"""The training loop: exact resume, fine-tuning, divergence guard, every loss through one loop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import TINY, losses, tiny
from facerec.errors import ConfigError, TrainingError
from facerec.models.io import load_model
from facerec.train import Trainer
from facerec.train.checkpoint import list_checkpoints
from facerec.train.logger import read_metrics


def test_interrupted_training_resumes_exactly(tmp_path, monkeypatch):
    reference = Trainer(tiny(tmp_path / "a")).fit()
    original_step = Trainer.train_step

    def failing_step(self, images, labels, teacher=None):
        if self.step == 6:
            raise KeyboardInterrupt
        return original_step(self, images, labels, teacher)

    monkeypatch.setattr(Trainer, "train_step", failing_step)
    with pytest.raises(KeyboardInterrupt):
        Trainer(tiny(tmp_path / "b")).fit()
    monkeypatch.setattr(Trainer, "train_step", original_step)
    # the checkpoint before the interruption falls at an epoch end
    assert [p.name for p in list_checkpoints(tmp_path / "b" / "checkpoints")] == ["checkpoint_00000004.pt"]
    resumed = Trainer(tiny(tmp_path / "b")).fit(resume=True)

    expected, got = losses(tmp_path / "a"), losses(tmp_path / "b")
    assert sorted(got) == sorted(expected) == list(range(1, 13))
    logged = [r["step"] for r in read_metrics(tmp_path / "b" / "metrics.jsonl") if "loss" in r]
    assert logged == list(range(1, 13))  # step 5, logged before the interruption, is not repeated
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-6)
    assert resumed["val_accuracy"] == pytest.approx(reference["val_accuracy"])


def test_loader_workers_persist_across_epochs_and_change_nothing(tmp_path, monkeypatch):
    """Worker processes kept from epoch to epoch (and resumed mid-run) give the losses of a run
    that loads every batch in the main process: each sample's augmentation follows its seed."""
    made = []
    original_init = torch.utils.data.DataLoader.__init__

    def counting_init(self, *args, **kwargs):
        made.append(kwargs.get("persistent_workers"))
        original_init(self, *args, **kwargs)

    monkeypatch.setattr(torch.utils.data.DataLoader, "__init__", counting_init)
    Trainer(tiny(tmp_path / "once", "data.num_workers=2", "data.val_identities=0")).fit()
    assert made == [True]  # one loader for all three epochs, its workers kept
    monkeypatch.setattr(torch.utils.data.DataLoader, "__init__", original_init)
    Trainer(tiny(tmp_path / "main", "data.num_workers=0")).fit()
    Trainer(tiny(tmp_path / "workers", "data.num_workers=2", "train.stop_after=6")).fit()
    Trainer(tiny(tmp_path / "workers", "data.num_workers=2")).fit(resume=True)
    expected, got = losses(tmp_path / "main"), losses(tmp_path / "workers")
    assert sorted(got) == sorted(expected) == list(range(1, 13))  # three epochs of four steps
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-6)


def test_checkpoint_from_before_a_new_config_field_resumes(tmp_path):
    """A field added to the config since a checkpoint was written reads as its default."""
    import torch

    Trainer(tiny(tmp_path, "train.epochs=1")).fit()
    path = list_checkpoints(tmp_path / "checkpoints")[-1]
    payload = torch.load(path, weights_only=False)
    del payload["config"]["distill"]["teacher"]
    torch.save(payload, path)
    trainer = Trainer(tiny(tmp_path, "train.epochs=2"))
    assert trainer.resume(path) and trainer.step == 4  # one epoch of 32 images in batches of 8
    with pytest.raises(TrainingError, match="different 'head' config"):
        Trainer(tiny(tmp_path, "train.epochs=2", "head.options={scale: 8, margin: 0.3}")).resume(path)


def test_killed_process_resumes_with_the_same_loss_curve(tmp_path):
    """A real SIGKILL in the middle of a run of the CLI, then `--resume`."""
    # checkpoint 5 lies inside epoch 1 (4 batches an epoch): resume starts mid-epoch
    args = [*TINY, "train.epochs=6", "train.checkpoint_every=5"]
    cmd = [sys.executable, "-m", "facerec.cli", "train", "quickstart", *[x for a in args for x in ("--set", a)]]
    subprocess.run([*cmd, "--output-dir", str(tmp_path / "full")], check=True, capture_output=True)

    run = tmp_path / "killed"
    proc = subprocess.Popen([*cmd, "--output-dir", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not list_checkpoints(run / "checkpoints") and time.time() < deadline:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list_checkpoints(run / "checkpoints"), "no checkpoint was written before the kill"
    assert not (run / "results.json").exists(), "the run finished before it could be killed"
    with (run / "metrics.jsonl").open("a") as f:
        f.write('{"step": 99, "lo')  # a record cut short by the kill
    subprocess.run([*cmd, "--output-dir", str(run), "--resume"], check=True, capture_output=True)
    logged = [r["step"] for r in read_metrics(run / "metrics.jsonl") if "loss" in r]
    assert logged == sorted(set(logged)), "steps redone after the resume were logged twice"

    expected, got = losses(tmp_path / "full"), losses(run)
    assert sorted(got) == sorted(expected)
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-6)


def test_exported_model_reproduces_backbone(tmp_path):
    trainer = Trainer(tiny(tmp_path, "train.epochs=1"))
    trainer.fit()
    model, size = load_model(tmp_path / "model.pt")
    x = torch.randn(3, 3, size, size)
    trainer.net["backbone"].eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), trainer.net["backbone"](x))
    ckpt_model, _ = load_model(list_checkpoints(tmp_path / "checkpoints")[-1])
    with torch.no_grad():
        torch.testing.assert_close(ckpt_model(x), model(x))


def test_fine_tuning_with_frozen_backbone_changes_only_the_head(tmp_path):
    Trainer(tiny(tmp_path / "base", "train.epochs=1")).fit()
    base = list_checkpoints(tmp_path / "base" / "checkpoints")[-1]
    cfg = tiny(tmp_path / "ft", "train.epochs=1", f"train.init_from={base}", "train.freeze=[backbone]")
    trainer = Trainer(cfg)
    before = {k: v.clone() for k, v in trainer.net.state_dict().items()}
    trainer.fit()
    after = trainer.net.state_dict()
    for key in before:
        if key.startswith("backbone."):
            assert torch.equal(before[key], after[key]), f"{key} changed though frozen"
    assert not torch.equal(before["head.weight"], after["head.weight"])


def test_fine_tuning_starts_from_an_exported_model_file(tmp_path):
    Trainer(tiny(tmp_path / "base", "train.epochs=1")).fit()
    exported, _ = load_model(tmp_path / "base" / "model.pt")
    trainer = Trainer(tiny(tmp_path / "ft", "train.epochs=1", f"train.init_from={tmp_path / 'base' / 'model.pt'}"))
    own = trainer.net["backbone"].state_dict()
    for key, value in exported.state_dict().items():
        assert torch.equal(own[key], value), key
    with pytest.raises(TrainingError, match="neither a facerec training checkpoint nor a facerec model"):
        torch.save({"weights": 1}, tmp_path / "other.pt")
        Trainer(tiny(tmp_path / "bad", f"train.init_from={tmp_path / 'other.pt'}"))


def test_unfreezing_only_the_output_layer(tmp_path):
    cfg = tiny(tmp_path, "train.epochs=1", "train.freeze=[backbone]", "train.unfreeze=[backbone.output]")
    trainer = Trainer(cfg)
    trainable = [n for n, p in trainer.net.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith(("backbone.output.", "head.")) for n in trainable)
    assert any(n.startswith("backbone.output.") for n in trainable)


def test_freeze_pattern_that_matches_nothing_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="match no parameter"):
        Trainer(tiny(tmp_path, "train.freeze=[bakbone]"))


def test_divergence_is_reported_with_advice(tmp_path):
    cfg = tiny(tmp_path, "optim.lr=1e30", "schedule.warmup_steps=0", "train.max_bad_steps=2")
    with pytest.raises(TrainingError, match="training diverged: 2 consecutive non-finite steps"):
        Trainer(cfg).fit()


@pytest.mark.parametrize(
    "overrides",
    [
        ["head.name=triplet", "head.options={mining: batch_hard}", "data.sampler=pk"],
        ["head.name=contrastive", "head.options={}", "data.sampler=pk", "data.images_per_identity_in_batch=2"],
        ["head.name=softmax", "head.options={}", "aux_heads=[{name: center, weight: 0.01}]"],
        ["head.name=sphereface", "head.options={scale: 16}"],
        ["head.name=adaface", "head.options={scale: 16}", "optim.name=adamw", "optim.lr=1e-3"],
        ["head.name=magface", "head.options={scale: 16}", "schedule.name=poly"],
        ["head.name=curricularface", "head.options={scale: 16}", "train.grad_clip=1.0"],
        ["head.name=combined", "head.options={m1: 1.2, m2: 0.2, m3: 0.1, scale: 16}", "schedule.name=step"],
    ],
)
def test_every_loss_trains_in_the_same_loop(tmp_path, overrides):
    cfg = tiny(tmp_path, "train.epochs=2", *overrides)
    trainer = Trainer(cfg)
    first = [p.detach().clone() for p in trainer.net["backbone"].parameters()]
    results = trainer.fit()
    assert 0.0 <= results["val_accuracy"] <= 1.0
    assert any(not torch.equal(a, b) for a, b in zip(first, trainer.net["backbone"].parameters(), strict=True))
    assert (tmp_path / "training_curves.png").is_file()


def test_pair_loss_without_pk_sampler_is_explained(tmp_path):
    with pytest.raises(ConfigError, match=r"data\.sampler: pk"):
        Trainer(tiny(tmp_path, "head.name=triplet", "head.options={}"))


def test_resume_with_another_head_is_refused(tmp_path):
    Trainer(tiny(tmp_path, "train.epochs=1")).fit()
    with pytest.raises(TrainingError, match="different 'head' config"):
        Trainer(tiny(tmp_path, "train.epochs=2", "head.name=cosface", "head.options={}")).fit(resume=True)


def test_a_backbone_on_dlibs_framing_trains_on_crops_warped_to_it_and_its_card_says_so(tmp_path):
    import numpy as np

    from facerec.core.geometry import DLIB_150
    from facerec.data.transforms import from_arcface_crop
    from facerec.models.io import read_model_file

    trainer = Trainer(tiny(tmp_path, "train.epochs=1", "backbone.template=dlib", "backbone.input_size=24"))
    stored = trainer.train_set.load(0)
    want = from_arcface_crop(stored, DLIB_150 * 24 / 150, 24)
    assert np.array_equal(trainer.train_set.image(0), want)
    assert np.array_equal(trainer.val_set.image(0), from_arcface_crop(trainer.val_set.load(0), DLIB_150 * 24 / 150, 24))
    trainer.fit()
    card = read_model_file(tmp_path / "model.pt").card
    assert card.template_name == "dlib_150@24" and np.allclose(card.template, DLIB_150 * 24 / 150)


def test_an_unknown_framing_or_an_online_teacher_on_another_framing_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"backbone\.template must be one of arcface, dlib, got 'dlb'"):
        Trainer(tiny(tmp_path, "backbone.template=dlb"))
    with pytest.raises(ConfigError, match=r"use precomputed distill\.targets"):
        Trainer(tiny(tmp_path, "backbone.template=dlib", "distill.teacher=fast", "distill.terms={cosine: 1.0}"))
