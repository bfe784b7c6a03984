"""`facerec analyze transfer-leakage` (facerec.analysis.transfer_leakage) on a tiny synthetic tree,
two training steps per model: the report's structure, the frozen parts of the fine-tunings left
bit-for-bit unchanged (state dicts compared here, buffers included), the fit accuracy recomputed
from the files, disjoint people, and clear errors for a bad split or a work folder of another run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from facerec.analysis.transfer_leakage import (
    PeopleSets,
    TrainedModel,
    TransferLeakagePlan,
    attack_images,
    check_frozen,
    paired_auc_difference,
    run_config,
    run_study,
    same_run,
    training_seconds,
)
from facerec.cli import main
from facerec.core.images import identity_tree
from facerec.data import SyntheticFaces
from facerec.errors import DataError, TrainingError
from facerec.models import build_backbone
from facerec.models.io import export_model, read_model_file
from facerec.pipeline import RecognitionPipeline
from facerec.train import checkpoint as ckpt

TINY_RUN = [
    "backbone.input_size=16",
    "backbone.embedding_size=16",
    "backbone.options={widths: [4, 8, 8, 8]}",
    "data.batch_size=8",
    "train.max_steps=2",
    "train.checkpoint_every=100",
    "train.progress=false",
]
PEOPLE = 18  # 6 members (A), 6 fine-tuning people (B), 6 non-members (N); 3 images each


def names(first: int, count: int) -> frozenset[str]:
    return frozenset(f"id_{i:05d}" for i in range(first, first + count))


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("people")
    SyntheticFaces(PEOPLE, 3, size=32).write_tree(root, progress=False)
    return root


@pytest.fixture(scope="module")
def study(faces, tmp_path_factory) -> tuple[TransferLeakagePlan, dict]:
    base = tmp_path_factory.mktemp("study")
    people = PeopleSets(names(0, 6), names(6, 6), names(12, 6), "synthetic")
    plan = TransferLeakagePlan(
        faces, people, base / "work", base / "out", overrides=TINY_RUN, n_boot=50, device="cpu", budgets=(1, 2)
    )
    return plan, run_study(plan)


def backbone_state(path: Path) -> dict[str, torch.Tensor]:
    return read_model_file(path).backbone


def differing(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> set[str]:
    assert a.keys() == b.keys()
    return {k for k in a if not torch.equal(a[k], b[k])}


def test_report_structure_and_files(study):
    plan, report = study
    assert list(report["models"]) == ["model_A", "full", "output", "head", "control"]
    assert report["people"]["members_A"] == report["people"]["finetune_B"] == report["people"]["non_members_N"] == 6
    assert report["people"]["attack_images"] == 12 * 3
    kinds = ["embeddings", "scores only, 1 pair per person", "scores only, 2 pairs per person"]
    for m in report["models"].values():
        assert list(m["attacks"]) == kinds
        assert m["steps"] == 2 and 0 <= m["fit_accuracy"] <= 1 and m["train_seconds"] > 0
        for r in m["attacks"].values():
            assert r["members"] == r["non_members"] == 6
            assert 0 <= r["auc_ci"][0] <= r["auc"] <= r["auc_ci"][1] <= 1
    assert report["models"]["model_A"]["training_images"] == 18 and report["models"]["control"]["classes"] == 6
    on_disk = json.loads((plan.out / "report.json").read_text())
    assert on_disk["models"]["head"]["attacks"] == report["models"]["head"]["attacks"]
    table = (plan.out / "table.md").read_text().split("\n\n")
    assert len(table[0].splitlines()) == 2 + 5 and "control (B only)" in table[0].splitlines()[-1]
    # differences: each fine-tuning against model_A and the control, the two references against each other
    assert len(table[1].splitlines()) == 2 + 3 * 2 + 1
    assert set(report["models"]["full"]["auc_difference"]) == {"vs model_A", "vs control"}
    assert set(report["models"]["model_A"]["auc_difference"]) == {"vs control"}
    assert "auc_difference" not in report["models"]["control"]
    for name, m in report["models"].items():
        for ref, by_kind in m.get("auc_difference", {}).items():
            other = report["models"][ref.removeprefix("vs ")]["attacks"]
            for kind, d in by_kind.items():
                assert d["difference"] == pytest.approx(m["attacks"][kind]["auc"] - other[kind]["auc"])
                assert d["ci"][0] <= d["difference"] <= d["ci"][1], (name, ref, kind)
    assert (plan.out / "transfer_leakage.png").stat().st_size > 0


def test_frozen_parts_did_not_change(study):
    plan, report = study
    runs = plan.work / "runs"
    model_a = backbone_state(runs / "model_A" / "model.pt")
    head_only = differing(model_a, backbone_state(runs / "finetune_head" / "model.pt"))
    output = differing(model_a, backbone_state(runs / "finetune_output" / "model.pt"))
    full = differing(model_a, backbone_state(runs / "finetune_full" / "model.pt"))
    assert head_only == set()  # BatchNorm statistics included
    assert output and all(k.startswith("output.") for k in output)
    assert {"output.fc.weight", "output.bn_emb.running_mean"} <= output
    assert any(k.startswith("stem.") for k in full) and any(k.startswith("stages.") for k in full)
    assert report["models"]["head"]["changed_backbone_tensors"] == 0
    assert report["models"]["output"]["changed_backbone_tensors"] == len(output)
    trained = report["models"]["output"]["trained_parameters"]
    assert "head.weight" in trained and all(n.startswith(("backbone.output.", "head.")) for n in trained)
    # the head-only model embeds as model_A does: every attack gives the same numbers
    assert report["models"]["head"]["attacks"] == report["models"]["model_A"]["attacks"]
    for d in report["models"]["head"]["auc_difference"]["vs model_A"].values():
        assert d == {"difference": 0.0, "ci": [0.0, 0.0]}


def test_fine_tunings_start_from_model_a_and_the_control_from_nothing(study):
    plan, _ = study
    runs = plan.work / "runs"
    for kind in ("full", "output", "head"):
        train = yaml.safe_load((runs / f"finetune_{kind}" / "config.yaml").read_text())["train"]
        assert train["init_from"] == str(runs / "model_A" / "model.pt") and not train["init_head"]
    control = yaml.safe_load((runs / "control" / "config.yaml").read_text())
    assert control["train"]["init_from"] is None and control["data"]["root"] == str(plan.work / "trees" / "finetune")


def test_people_are_disjoint_and_the_attack_sees_members_and_non_members_only(study):
    plan, _ = study
    trees = {
        n: {p.name for p in identity_tree(plan.work / "trees" / n)} for n in ("members", "finetune", "non_members")
    }
    assert trees["members"] == set(plan.people.members) and trees["non_members"] == set(plan.people.non_members)
    assert not (trees["members"] & trees["finetune"]) and not (trees["members"] & trees["non_members"])
    assert not (trees["finetune"] & trees["non_members"])
    images = attack_images(plan.work / "trees")
    assert set(images.identities) == trees["members"] | trees["non_members"]
    assert len(set(images.paths)) == len(images.paths) == 36


def test_fit_accuracy_is_the_heads_top1_on_the_training_images(study):
    """Recomputed another way: the model file through a pipeline, the head from the last checkpoint."""
    plan, report = study
    run = plan.work / "runs" / "model_A"
    head = ckpt.load_checkpoint(ckpt.list_checkpoints(run / "checkpoints", 0)[-1])["net"]["head.weight"].double()
    pipeline = RecognitionPipeline.load(run / "model.pt", detector="none", flip=False, device="cpu")
    people = identity_tree(plan.work / "trees" / "members")
    right = 0
    for label, person in enumerate(people):
        emb = pipeline.embed(person.images, progress=False).get(False).astype(np.float64)
        for e in emb:
            cosines = [float(e @ c / np.linalg.norm(c)) for c in head.numpy()]
            right += int(np.argmax(cosines) == label)
    assert report["models"]["model_A"]["fit_accuracy"] == pytest.approx(right / 18)


def mann_whitney(pos: np.ndarray, neg: np.ndarray) -> float:
    """AUC by the definition: over every (member, non-member) pair, 1 if the member scores higher, 1/2 if tied."""
    return float(np.mean([(p > n) + 0.5 * (p == n) for p in pos for n in neg]))


def scored(pos: np.ndarray, neg: np.ndarray) -> tuple[dict[str, float], set[str]]:
    people = {f"m{i}": float(v) for i, v in enumerate(pos)} | {f"n{i}": float(v) for i, v in enumerate(neg)}
    return people, {f"m{i}" for i in range(len(pos))}


def test_paired_auc_difference_against_the_definition():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(1.0, 1, 80), rng.normal(0, 1, 60)
    a, members = scored(pos, neg)
    b, _ = scored(pos * 0.3 + rng.normal(0, 1, 80), neg)  # a weaker leak of the same people
    found = paired_auc_difference(a, b, members, n_boot=300)
    weaker = np.array([b[f"m{i}"] for i in range(80)])
    assert found["difference"] == pytest.approx(mann_whitney(pos, neg) - mann_whitney(weaker, neg))
    assert 0 < found["ci"][0] < found["difference"] < found["ci"][1]
    same = paired_auc_difference(a, dict(a), members, n_boot=100)
    assert same == {"difference": 0.0, "ci": [0.0, 0.0]}  # paired: one draw of people for both
    noise, _ = scored(rng.normal(0, 1, 80), rng.normal(0, 1, 60))
    null = paired_auc_difference(noise, scored(rng.normal(0, 1, 80), rng.normal(0, 1, 60))[0], members, n_boot=300)
    assert null["ci"][0] < 0 < null["ci"][1]
    with pytest.raises(DataError, match="same people"):
        paired_auc_difference(a, {"x": 1.0}, members)


def test_training_time_is_read_back_from_the_logged_rates(tmp_path):
    records = [
        {"step": 20, "loss": 3.0, "images_per_s": 64.0},  # 20 steps x 8 images at 64/s: 2.5 s
        {"step": 25, "loss": 2.0, "images_per_s": 20.0},  # 5 x 8 at 20/s: 2 s
        {"step": 25, "val_accuracy": 0.5},  # a record without a rate
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert training_seconds(tmp_path / "metrics.jsonl", batch_size=8) == pytest.approx(4.5)


def test_a_changed_frozen_tensor_is_caught(tmp_path):
    net = build_backbone("lowres_irse8", 8, 16, {"widths": [4, 4, 4, 4]})
    cfg = {"name": "lowres_irse8", "embedding_size": 8, "input_size": 16, "options": {"widths": [4, 4, 4, 4]}}
    export_model(tmp_path / "a.pt", net, cfg)
    with torch.no_grad():
        net.output.fc.weight.add_(1.0)
        net.stem[0].weight.add_(1.0)  # a frozen part that moved
    export_model(tmp_path / "b.pt", net, cfg)
    trained = ["backbone.output.fc.weight", "backbone.output.fc.bias", "head.weight"]
    tuned = TrainedModel(tmp_path / "b.pt", 2, None, trained, 0.0, 10, 2)
    with pytest.raises(TrainingError, match=r"changed frozen tensors, e\.g\. stem\.0\.weight"):
        check_frozen("output", tmp_path / "a.pt", tuned)


def test_bad_splits_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="share 1 people"):
        PeopleSets(names(0, 3), names(2, 3), names(10, 3))
    with pytest.raises(DataError, match="non-members \\(N\\) set of people is empty"):
        PeopleSets(names(0, 3), names(3, 3), frozenset())
    people = tmp_path / "people.txt"
    people.write_text("3\n2\na\t2\nb\t3\n1\nc\t4\n1\nd\t2\n")
    split = PeopleSets.from_lfw_folds(people, [0], [1], [2])
    assert (split.members, split.finetune, split.non_members) == ({"a", "b"}, {"c"}, {"d"})
    with pytest.raises(DataError, match="overlap"):
        PeopleSets.from_lfw_folds(people, [0, 1], [1], [2])


def test_a_work_folder_of_another_run_is_refused(faces, tmp_path):
    plan = TransferLeakagePlan(faces, PeopleSets(names(0, 2), names(2, 2), names(4, 2)), tmp_path, tmp_path / "out")
    cfg = run_config(plan, "model_A", tmp_path / "trees" / "members", TINY_RUN)
    out = Path(cfg.train.output_dir)
    assert not same_run(out, cfg)
    out.mkdir(parents=True)
    cfg.dump(out / "config.yaml")
    assert same_run(out, cfg)
    other = run_config(plan, "model_A", tmp_path / "trees" / "members", [*TINY_RUN, "optim.lr=0.5"])
    with pytest.raises(TrainingError, match="holds a run of another config"):
        same_run(out, other)


def test_command_line_errors_name_the_problem(faces, tmp_path, capsys):
    lfw = tmp_path / "lfw"
    (lfw / "meta").mkdir(parents=True)
    (lfw / "meta" / "people.txt").write_text("2\n1\nid_00000\t3\n1\nid_00001\t3\n")
    common = ["analyze", "transfer-leakage", "--lfw", str(lfw), "--aligned", str(faces), "--out", str(tmp_path / "o")]
    assert main([*common, "--members-folds", "0", "--finetune-folds", "0", "--non-member-folds", "1"]) == 2
    assert "LFW people folds of members [0] and fine-tuning [0] overlap" in capsys.readouterr().err
    assert main([*common, "--members-folds", "0", "--finetune-folds", "1", "--non-member-folds", "5"]) == 2
    assert "LFW people folds are 0-1, got [5]" in capsys.readouterr().err


def test_the_command_runs_the_study_on_lfw_style_folds(faces, tmp_path, capsys):
    """Three 'people folds' of the synthetic people in an LFW-style meta/people.txt; one fine-tuning."""
    lfw = tmp_path / "lfw"
    (lfw / "meta").mkdir(parents=True)
    folds = [sorted(names(0, 4)), sorted(names(4, 4)), sorted(names(8, 4))]
    (lfw / "meta" / "people.txt").write_text("3\n" + "".join("4\n" + "".join(f"{n}\t3\n" for n in f) for f in folds))
    tiny = [x for item in TINY_RUN for x in ("--set", item)]
    args = ["analyze", "transfer-leakage", "--lfw", str(lfw), "--aligned", str(faces), "--work", str(tmp_path / "w")]
    args += ["--members-folds", "0", "--finetune-folds", "1", "--non-member-folds", "2", "--kinds", "head"]
    args += ["--pairs", "1", "--bootstrap", "20", "--device", "cpu", "--out", str(tmp_path / "o"), *tiny]
    assert main(args) == 0
    report = json.loads((tmp_path / "o" / "report.json").read_text())
    assert list(report["models"]) == ["model_A", "head", "control"]
    assert report["people"]["members_A"] == report["people"]["non_members_N"] == 4
    assert "control (B only)" in capsys.readouterr().out
