"""facerec.core: image trees, atomic writes, the device choice, plots."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from facerec.core.device import pick_device
from facerec.core.files import atomic_path, save_image, save_npz, torch_save, write_json
from facerec.core.images import decode_image, identity_tree, image_files, images_under
from facerec.core.plots import pyplot, save_figure
from facerec.errors import ConfigError, DataError


def make_tree(root, people):
    """root/<name>/<file> for {name: [file names]}; files are tiny PNGs."""
    for name, files in people.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for file in files:
            save_image(np.zeros((4, 4, 3), np.uint8), root / name / file)
    return root


def test_identity_tree_sorts_skips_empty_folders_and_non_images(tmp_path):
    root = make_tree(tmp_path / "t", {"bob": ["b.png", "a.png"], "ann": ["x.png"], "empty": []})
    (root / "bob" / "notes.txt").write_text("not an image")
    (root / "stray.png").write_bytes(b"")  # files beside the identity folders are no identity
    people = identity_tree(root)
    assert [p.name for p in people] == ["ann", "bob"]
    assert [f.name for f in people[1].images] == ["a.png", "b.png"]


def test_identity_tree_errors_name_the_folder(tmp_path):
    with pytest.raises(DataError, match=r"dataset folder not found: .*nope"):
        identity_tree(tmp_path / "nope")
    (tmp_path / "e" / "someone").mkdir(parents=True)
    with pytest.raises(DataError, match=r"no images in .*e: expected root/<identity>/<image>"):
        identity_tree(tmp_path / "e")


def test_image_files_walk_every_depth_in_order(tmp_path):
    make_tree(tmp_path, {"a/deep": ["2.png"], "a": ["1.png"], "b": ["0.PNG"]})
    names = [p.relative_to(tmp_path).as_posix() for p in image_files(tmp_path)]
    assert names == ["a/1.png", "a/deep/2.png", "b/0.PNG"]
    assert images_under(tmp_path / "b") == [tmp_path / "b" / "0.PNG"]
    (tmp_path / "c").mkdir()
    with pytest.raises(DataError, match=r"no images under .*c \(extensions"):
        images_under(tmp_path / "c")
    with pytest.raises(DataError, match=r"source folder not found: .*missing"):
        images_under(tmp_path / "missing", "source folder")


def test_decode_image_names_the_file(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"cannot decode image .*bad.jpg"):
        decode_image(bad)
    with pytest.raises(DataError, match="image not found"):
        decode_image(tmp_path / "missing.png")


def test_atomic_writes_replace_whole_files_and_leave_nothing_on_failure(tmp_path):
    target = tmp_path / "sub" / "report.json"
    write_json(target, {"a": np.float32(0.5), "b": np.arange(2)})
    assert json.loads(target.read_text()) == {"a": 0.5, "b": [0, 1]}
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half a fi")
        raise RuntimeError("writer died")
    assert json.loads(target.read_text())["a"] == 0.5  # the old file is untouched
    assert sorted(p.name for p in target.parent.iterdir()) == ["report.json"]


def test_npz_torch_and_image_writers_keep_the_target_name(tmp_path):
    assert np.load(save_npz(tmp_path / "e.npz", x=np.ones(3)))["x"].sum() == 3
    assert torch.load(torch_save({"w": torch.ones(2)}, tmp_path / "m.pt"))["w"].sum() == 2
    save_image(np.full((5, 6, 3), 200, np.uint8), tmp_path / "c.jpg", quality=95)
    assert decode_image(tmp_path / "c.jpg").shape == (5, 6, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jpg", "e.npz", "m.pt"]


def test_pick_device():
    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device().type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ConfigError, match="unknown device 'gpu0'"):
        pick_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA is not available"):
            pick_device("cuda")


def test_save_figure_writes_and_closes(tmp_path):
    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "plot.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    assert not plt.fignum_exists(fig.number)
