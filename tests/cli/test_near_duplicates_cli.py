"""facerec data near-duplicates end to end with the fast model: a planted exact copy is
flagged, the clean tree leaves it out, bad input is a clear error (exit 2, no traceback)."""

import json

import numpy as np
from PIL import Image

from conftest import smooth_image
from facerec.cli import main


def test_near_duplicates_command(tmp_path, capsys):
    rng = np.random.default_rng(7)
    train, evaluation = tmp_path / "train", tmp_path / "eval"
    for person in ("ann", "bob"):
        (train / person).mkdir(parents=True)
        for k in range(3):
            Image.fromarray(smooth_image(rng, 112)).save(train / person / f"{k}.png")
    evaluation.mkdir()
    (evaluation / "copy.png").write_bytes((train / "bob" / "1.png").read_bytes())
    Image.fromarray(smooth_image(rng, 112)).save(evaluation / "other.png")
    out, clean = tmp_path / "out", tmp_path / "clean"
    args = ["data", "near-duplicates", str(train), str(evaluation), "--out", str(out), "--model", "fast"]
    assert main([*args, "--runtime", "torch", "--write-clean", str(clean)]) == 0
    report = json.loads((out / "near_duplicates.json").read_text())
    pairs = report["sets"]["eval"]["pairs"]
    assert {(p["train"], p["eval"]) for p in pairs if p["hamming"] == 0} == {
        (str(train / "bob" / "1.png"), str(evaluation / "copy.png"))
    }
    assert not (clean / "bob" / "1.png").exists() and (clean / "bob" / "0.png").is_symlink()
    assert "training files flagged" in capsys.readouterr().out
    assert main([*args[:2], str(tmp_path / "missing"), str(evaluation), "--out", str(out)]) == 2
    assert "not found" in capsys.readouterr().err
