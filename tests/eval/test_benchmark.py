"""`facerec benchmark`: each row equals the protocol's numbers computed independently (sklearn
AUC on cosines computed here), flip rows from flip-summed embeddings, one row per variant."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import roc_auc_score
from torch import nn

from facerec.cli import main
from facerec.config import ProtocolConfig
from facerec.data.synthetic import SyntheticFaces
from facerec.errors import ConfigError
from facerec.eval.benchmark import BenchmarkSets, markdown_table, read_protocol_list, run_benchmark
from facerec.pipeline import RecognitionPipeline


class Projection(nn.Module):
    """A fixed random projection of the pixels: deterministic, not mirror-symmetric."""

    def __init__(self, size: int = 16, dim: int = 8) -> None:
        super().__init__()
        self.proj = nn.Linear(3 * size * size, dim, bias=False)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(dim, 3 * size * size, generator=torch.Generator().manual_seed(0)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.flatten(1))


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory) -> tuple[Path, list[tuple[str, str, int]]]:
    folder = tmp_path_factory.mktemp("bench")
    faces = SyntheticFaces(identities=6, images_per_identity=3, size=16, seed=5)
    names = []
    for i in range(len(faces)):
        names.append(f"{faces.label(i)}_{i}.png")
        Image.fromarray(faces.render(i)).save(folder / names[-1])
    rows = []
    for k in range(6):
        rows.append((names[3 * k], names[3 * k + 1], 1))
        rows.append((names[3 * k + 2], names[(3 * k + 4) % 18], 0))
    (folder / "pairs.csv").write_text("\n".join(f"{a},{b},{y},{i % 2}" for i, (a, b, y) in enumerate(rows)) + "\n")
    return folder, rows


def source(net: nn.Module):
    model = RecognitionPipeline.for_network(net, 16).model

    def get(detector: str, degrade: int, flip: bool) -> RecognitionPipeline:
        return RecognitionPipeline(model, detector, degrade=degrade, flip=flip, batch_size=8)

    return get


def cosines(net: nn.Module, folder: Path, rows, flip: bool) -> np.ndarray:
    """Pair scores computed here: pixels in [-1, 1] as the pipeline feeds them, flip by torch.flip."""

    def embed(name: str) -> torch.Tensor:
        img = np.asarray(Image.open(folder / name).convert("RGB"), dtype=np.float32)
        x = torch.from_numpy((img / 127.5 - 1.0).transpose(2, 0, 1))[None]
        e = nn.functional.normalize(net(x), dim=1)
        if flip:
            e = nn.functional.normalize(e + nn.functional.normalize(net(torch.flip(x, dims=[3])), dim=1), dim=1)
        return e[0]

    with torch.no_grad():
        return np.array([float(embed(a) @ embed(b)) for a, b, _ in rows])


def test_rows_match_independent_scores(pair_files, tmp_path):
    folder, rows = pair_files
    net = Projection().eval()
    entries = [ProtocolConfig("pairs", {"csv": str(folder / "pairs.csv")}, "none")]
    bench = run_benchmark(entries, source(net), out_dir=tmp_path)
    assert [(r.protocol, r.flip) for r in bench.rows] == [("pairs", False), ("pairs", True)]
    labels = np.array([y for *_, y in rows])
    for row in bench.rows:
        expected = roc_auc_score(labels, cosines(net, folder, rows, row.flip))
        assert row.summary["auc"] == pytest.approx(expected, abs=1e-6)
    assert bench.rows[0].summary["auc"] != pytest.approx(bench.rows[1].summary["auc"], abs=1e-9)
    table = (tmp_path / "benchmark.md").read_text()
    assert table == markdown_table(bench) and table.count("| pairs (none) |") == 2
    report = json.loads((tmp_path / "benchmark.json").read_text())
    assert [r["flip"] for r in report["rows"]] == [False, True] and report["reports"][0]["protocol"] == "pairs"
    assert (tmp_path / "00_pairs" / "report.json").is_file()


def test_degraded_entries_are_rows_of_their_own(pair_files):
    folder, _ = pair_files
    sets = BenchmarkSets(pairs=[str(folder / "pairs.csv")])
    entries = sets.entries("none", degrades=(0, 8))
    assert [(e.name, e.degrade) for e in entries] == [("pairs", 0), ("pairs", 8)]
    bench = run_benchmark(entries, source(Projection().eval()), flips=(True,))
    assert [(r.degrade, r.flip) for r in bench.rows] == [(0, True), (8, True)]
    assert bench.rows[0].summary != bench.rows[1].summary  # the 8 px faces are other images
    assert "pairs (none, 8 px)" in markdown_table(bench)
    named = BenchmarkSets(lfw="L", bins=["b.bin"], templates=["T"]).entries("mtcnn")
    assert [(e.name, e.options, e.detector) for e in named] == [
        ("lfw", {"root": "L", "folds": None}, "mtcnn"),
        ("bin", {"file": "b.bin"}, "none"),  # .bin files hold aligned crops
        ("templates", {"root": "T"}, "mtcnn"),
    ]


def test_protocol_list_files(tmp_path):
    entry = "{name: lfw, options: {root: /data/lfw, folds: [9]}, detector: mtcnn, degrade: 16}"
    (tmp_path / "list.yaml").write_text(f"- {entry}\n")
    (tmp_path / "map.yaml").write_text(f"protocols:\n  - {entry}\n")
    (tmp_path / "train.yaml").write_text(f"train:\n  eval:\n    - {entry}\n")
    expected = [ProtocolConfig("lfw", {"root": "/data/lfw", "folds": [9]}, "mtcnn", 16)]
    for name in ("list.yaml", "map.yaml", "train.yaml"):
        assert read_protocol_list(tmp_path / name) == expected
    (tmp_path / "bad.yaml").write_text("- {name: lfw, detectr: mtcnn}\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'protocols\[0\].detectr'"):
        read_protocol_list(tmp_path / "bad.yaml")
    (tmp_path / "empty.yaml").write_text("protocols: []\n")
    with pytest.raises(ConfigError, match="non-empty list"):
        read_protocol_list(tmp_path / "empty.yaml")
    with pytest.raises(ConfigError, match="cannot read"):
        read_protocol_list(tmp_path / "absent.yaml")


def test_cli_runs_the_default_model_and_refuses_nothing_to_do(pair_files, tmp_path, capsys):
    folder, _ = pair_files
    out = tmp_path / "out"
    code = main(["benchmark", "fast", "--pairs", str(folder / "pairs.csv"), "--detector", "none", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| pairs (none) | no |" in printed and "| pairs (none) | yes |" in printed
    assert (out / "benchmark.md").is_file()
    assert main(["benchmark", "fast", "--out", str(out)]) == 2
    assert "nothing to run" in capsys.readouterr().err
