"""The parts of a run and the callbacks around its steps: what a run builds leaves its config and
data as given, which hooks run when, evaluation during training and what the export records."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conftest import losses, tiny
from facerec.data import SyntheticFaces
from facerec.models.io import read_model_file
from facerec.train import Trainer
from facerec.train.builder import build_run
from facerec.train.callbacks import Callback, StepInfo, TrainerView
from facerec.train.logger import read_metrics


class Recorder(Callback):
    """Every hook called, with the step it saw."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail_at = fail_at

    def on_start(self, trainer: Trainer) -> None:
        assert isinstance(trainer, TrainerView)  # the loop offers all that callbacks may read
        self.calls.append(("start", trainer.step))

    def on_step_end(self, trainer: Trainer, step: StepInfo) -> None:
        assert step.step == trainer.step and step.images == 8
        self.calls.append(("step", step.step))
        if step.step == self.fail_at:
            raise RuntimeError("stop here")

    def on_epoch_end(self, trainer: Trainer) -> None:
        self.calls.append(("epoch", trainer.epoch))

    def on_train_end(self, trainer: Trainer, results: dict[str, Any]) -> None:
        self.calls.append(("train_end", trainer.step))
        results["recorded"] = True

    def on_end(self, trainer: Trainer, results: dict[str, Any]) -> None:
        self.calls.append(("end", results["step"]))

    def on_close(self, trainer: Trainer) -> None:
        self.calls.append(("close", trainer.step))


def test_build_run_leaves_the_config_and_the_datasets_as_given(tmp_path):
    cfg = tiny(tmp_path)
    before = cfg.to_dict()
    parts = build_run(cfg)
    assert cfg.to_dict() == before and parts.config is cfg and parts.run_config is cfg
    assert parts.train_set.augment is not None and not hasattr(parts.train_set.base, "augment")
    assert parts.total_steps == 12 and parts.teacher is None
    assert not (tmp_path / "config.yaml").exists(), "building a run writes nothing"


def test_callbacks_see_every_hook_in_order(tmp_path):
    recorder = Recorder()
    results = Trainer(tiny(tmp_path, "train.epochs=2"), callbacks=[recorder]).fit()
    steps = [c for c in recorder.calls if c[0] in ("step", "epoch")]
    assert steps == [
        *(("step", s) for s in range(1, 5)),
        ("epoch", 1),
        *(("step", s) for s in range(5, 9)),
        ("epoch", 2),
    ]
    assert recorder.calls[0] == ("start", 0)
    assert recorder.calls[-3:] == [("train_end", 8), ("end", 8), ("close", 8)]
    assert results == {"step": 8, "recorded": True}
    assert not any(tmp_path.iterdir()), "the installed callbacks decide what a run writes: here nothing"


def test_callbacks_close_after_an_error(tmp_path):
    recorder = Recorder(fail_at=3)
    with pytest.raises(RuntimeError, match="stop here"):
        Trainer(tiny(tmp_path), callbacks=[recorder]).fit()
    assert recorder.calls[-2:] == [("step", 3), ("close", 3)]


def test_periodic_evaluation_leaves_resume_exact(tmp_path):
    """Evaluation right after a checkpoint must not shift the random draws of the next steps."""
    extra = ["train.eval_every=4", "train.checkpoint_every=4"]
    full = Trainer(tiny(tmp_path / "full", *extra)).fit()
    Trainer(tiny(tmp_path / "split", *extra, "train.stop_after=4")).fit()
    resumed = Trainer(tiny(tmp_path / "split", *extra)).fit(resume=True)
    expected, got = losses(tmp_path / "full"), losses(tmp_path / "split")
    assert sorted(got) == sorted(expected) == list(range(1, 13))
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-6)
    evaluated = [r["step"] for r in read_metrics(tmp_path / "full" / "metrics.jsonl") if "val_accuracy" in r]
    assert evaluated == [4, 8, 12]  # the last one once, with the results
    assert resumed["val_accuracy"] == pytest.approx(full["val_accuracy"])
    assert {"val_accuracy", "val_accuracy_std", "val_threshold"} <= set(full)


def pairs_csv(folder: Path) -> Path:
    """A pairs CSV over synthetic face images written to disk: 20 pairs, half of them genuine."""
    faces = SyntheticFaces(identities=5, images_per_identity=2, size=16, seed=3)
    names = []
    for i in range(len(faces)):
        names.append(f"{faces.label(i)}_{i}.png")
        Image.fromarray(faces.render(i)).save(folder / names[-1])
    rows = []
    for k in range(10):
        a = 2 * (k % 5)
        rows.append(f"{names[a]},{names[a + 1]},1")  # the two images of one identity
        rows.append(f"{names[a]},{names[(a + 2 + 2 * (k // 5)) % 10]},0")
    (folder / "pairs.csv").write_text("\n".join(rows) + "\n")
    return folder / "pairs.csv"


def test_evaluation_protocols_run_during_training(tmp_path):
    (tmp_path / "pairs").mkdir()
    csv = pairs_csv(tmp_path / "pairs")
    cfg = tiny(
        tmp_path / "run",
        "train.epochs=2",
        "train.eval_every=4",
        f"train.eval=[{{name: pairs, options: {{csv: {csv}}}}}]",
    )
    results = Trainer(cfg).fit()
    periodic = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "eval/pairs/accuracy" in r]
    assert [r["step"] for r in periodic] == [4, 8]
    assert 0.0 <= results["eval/pairs/accuracy"] <= 1.0 and "eval/pairs/auc" in results
    assert "val_accuracy" in periodic[0], "the held-out check runs beside the protocols"
    assert (tmp_path / "run" / "eval" / "00_pairs" / "report.json").is_file()
    table = (tmp_path / "run" / "eval" / "benchmark.md").read_text()  # the same table `facerec benchmark` writes
    assert "| pairs (none) | yes |" in table and "| pairs (none) | no |" in table


def test_exported_model_records_the_held_out_threshold(tmp_path):
    results = Trainer(tiny(tmp_path, "train.epochs=1")).fit()
    card = read_model_file(tmp_path / "model.pt").card
    (record,) = card.thresholds
    assert record.value == pytest.approx(results["val_threshold"])
    assert (record.detector, record.flip) == ("none", True)
    assert record.data.startswith("2 held-out identities of synthetic faces")
    assert card.input_size == 16 and card.architecture == "lowres_irse8"
    assert np.isfinite(results["val_accuracy"])


def test_the_held_out_people_follow_data_val_seed_not_the_training_seed(tmp_path):
    def held_out(*extra: str) -> list[int]:
        parts = build_run(tiny(tmp_path, "data.synthetic.identities=40", "data.val_identities=5", *extra))
        return sorted(set(parts.val_set.base.labels[parts.val_set.indices].tolist()))

    by_train_seed = held_out("train.seed=0"), held_out("train.seed=1")
    assert by_train_seed[0] != by_train_seed[1]  # unset, the training seed chooses them
    pinned = held_out("train.seed=1", "data.val_seed=0")
    assert pinned == by_train_seed[0]  # pinned: the same people under another training seed


@pytest.mark.parametrize("key", ["train.seed", "data.val_seed", "data.synthetic.seed"])
def test_a_negative_seed_is_a_clear_error(tmp_path, key):
    from facerec.errors import ConfigError

    with pytest.raises(ConfigError, match=f"{key} must be a non-negative integer, got -1"):
        build_run(tiny(tmp_path, f"{key}=-1"))
