"""`facerec train` under torchrun with 2 gloo processes and a Partial FC head: exact resume,
per-rank checkpoints, conversion between world sizes."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from conftest import losses
from facerec.config import load_config
from facerec.errors import TrainingError
from facerec.train import Trainer
from facerec.train.checkpoint import list_checkpoints
from facerec.train.convert import convert

ARGS = [
    "data.source=synthetic",
    "backbone.input_size=16",
    "data.synthetic.identities=20",
    "data.synthetic.images_per_identity=4",
    "data.val_identities=4",
    "data.batch_size=8",
    "backbone.name=lowres_irse8",
    "backbone.embedding_size=16",
    "backbone.options={widths: [4, 8, 8, 8]}",
    "head.name=partial_fc",
    "head.options={sample_rate: 0.5, scale: 16, m2: 0.3}",
    "train.epochs=2",
    "train.checkpoint_every=3",
    "train.log_every=1",
    "train.progress=false",
    "train.device=cpu",
]


def torchrun(out, *extra, resume=False):
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "facerec.cli",
        "train",
        "quickstart",
        *[x for a in [*ARGS, *extra] for x in ("--set", a)],
        "--output-dir",
        str(out),
    ]
    done = subprocess.run([*cmd, "--resume"] if resume else cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    torchrun(root / "full")
    torchrun(root / "split", "train.stop_after=4")  # a planned stop after step 4 (checkpointed)
    torchrun(root / "split", resume=True)
    return root


def test_two_process_run_resumes_exactly(root):
    expected, got = losses(root / "full"), losses(root / "split")
    assert sorted(got) == sorted(expected) == list(range(1, 9))
    for step in expected:
        assert got[step] == pytest.approx(expected[step], rel=1e-5, abs=1e-6)


def shards(directory, step=8):
    return [
        torch.load(directory / name, weights_only=False)
        for name in (f"checkpoint_{step:08d}.pt", f"checkpoint_{step:08d}.rank1.pt")
    ]


def test_each_rank_checkpoints_its_block_of_classes(root):
    assert [p.name for p in list_checkpoints(root / "full" / "checkpoints", rank=1)][
        -1
    ] == "checkpoint_00000008.rank1.pt"
    a, b = shards(root / "full" / "checkpoints")
    assert a["net"]["head._extra_state"]["class_range"] == (0, 8)
    assert b["net"]["head._extra_state"]["class_range"] == (8, 16)
    assert not torch.equal(a["net"]["head.weight"], b["net"]["head.weight"])
    torch.testing.assert_close(a["net"]["backbone.stem.0.weight"], b["net"]["backbone.stem.0.weight"])


def test_convert_to_one_file_and_back(root, tmp_path):
    original = shards(root / "full" / "checkpoints")
    (single,) = convert(root / "full" / "checkpoints" / "checkpoint_00000008.rank1.pt", 1, tmp_path / "one")
    merged = torch.load(single, weights_only=False)
    full = torch.cat([s["net"]["head.weight"] for s in original])
    assert torch.equal(merged["net"]["head.weight"], full) and merged["world_size"] == 1
    again = [torch.load(p, weights_only=False) for p in convert(single, 2, tmp_path / "two")]
    for new, old in zip(again, original, strict=True):
        for key in ("head.weight", "head.momentum_buffer"):
            assert torch.equal(new["net"][key], old["net"][key])


def test_resuming_with_another_world_size_is_explained(root):
    cfg = load_config("quickstart", [*ARGS, f"train.output_dir={root / 'full'}"])
    with pytest.raises(TrainingError, match=r"written by 2 processes.*facerec checkpoint convert"):
        Trainer(cfg).fit(resume=True)
