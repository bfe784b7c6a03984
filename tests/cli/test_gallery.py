"""`facerec gallery ...`: import an old .npz gallery, list, set a threshold, erase, make a key."""

from __future__ import annotations

import stat

import numpy as np
import pytest

from facerec.cli import main
from facerec.core.files import save_npz
from facerec.serve.store import KEY_ENV, open_store


def write_old_gallery(path, digest: str = "c" * 64) -> None:
    vectors = np.eye(3, 8, dtype=np.float32)
    save_npz(
        path,
        model="old-model",
        digest=digest,
        detector="mtcnn",
        embeddings=vectors,
        names=np.array(["ann", "ann", "bob"]),
        sources=np.array(["a1.jpg", "a2.jpg", "b1.jpg"]),
    )


@pytest.fixture(autouse=True)
def no_key_in_the_environment(monkeypatch):
    monkeypatch.delenv(KEY_ENV, raising=False)


def test_import_list_threshold_erase(tmp_path, capsys):
    write_old_gallery(tmp_path / "old.npz")
    key = tmp_path / "key"
    assert main(["gallery", "key", str(key)]) == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    store = ["--key-file", str(key)]
    into = [str(tmp_path / "old.npz"), "--into", str(tmp_path / "s.db"), *store]
    assert main(["gallery", "import", *into, "--name", "staff"]) == 0
    assert "imported 3 faces of 2 people into gallery 'staff'" in capsys.readouterr().out
    assert main(["gallery", "import", *into, "--name", "staff"]) == 2
    assert "gallery 'staff' already exists" in capsys.readouterr().err
    located = ["--gallery", str(tmp_path / "s.db"), *store]
    assert main(["gallery", "threshold", "0.45", "--gallery-name", "staff", *located]) == 0
    assert main(["gallery", "list", *located]) == 0
    listed = capsys.readouterr().out
    assert "staff: 2 people, 3 faces; model 'old-model' (digest cccccccccccc)" in listed
    assert "detector mtcnn, threshold 0.4500" in listed
    assert main(["gallery", "erase", "ann", "--gallery-name", "staff", *located]) == 0
    assert "erased 'ann' and 2 faces" in capsys.readouterr().out
    with open_store(tmp_path / "s.db", key_file=key) as opened:
        assert [s.name for s in opened.subjects("staff")] == ["bob"]


def test_mistakes_are_refused_and_nothing_is_lost(tmp_path, capsys):
    key = tmp_path / "key"
    key.write_text("precious\n")
    assert main(["gallery", "key", str(key)]) == 2
    assert "is never overwritten" in capsys.readouterr().err and key.read_text() == "precious\n"
    write_old_gallery(tmp_path / "older.npz", digest="")
    into = ["--into", str(tmp_path / "s.db"), "--plaintext"]
    assert main(["gallery", "import", str(tmp_path / "older.npz"), *into]) == 2
    assert "predates model digests: name the model that made it (`--model`" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["gallery", "threshold", "high", "--plaintext"])
    assert "'high' is neither a number nor 'card'" in capsys.readouterr().err
    assert main(["gallery", "list", "--gallery", str(tmp_path / "none.db"), "--plaintext"]) == 2
    assert "gallery store not found" in capsys.readouterr().err
