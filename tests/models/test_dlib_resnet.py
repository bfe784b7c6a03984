"""dlib's network rebuilt in torch: its reader of dlib's files, its residual sum, and its
descriptors against dlib's own C++ on real faces."""

import struct

import numpy as np
import pytest
import torch

from conftest import LFW, needs_dlib, needs_lfw
from facerec.errors import FacerecError
from facerec.models.dlib_resnet import (
    BLOCKS,
    DlibResNetTorch,
    add_padded,
    dlib_state_dict,
    read_dlib_layers,
)


def test_the_residual_sum_is_dlibs_add_prev_checked_by_a_loop():
    """The sum is as large as the larger input in each dimension, missing values count as 0."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 3, 4, 4))
    b = rng.normal(size=(2, 5, 3, 3))
    expected = np.zeros((2, 5, 4, 4))
    for n, c, y, x in np.ndindex(expected.shape):
        for t in (a, b):
            if c < t.shape[1] and y < t.shape[2] and x < t.shape[3]:
                expected[n, c, y, x] += t[n, c, y, x]
    got = add_padded(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    assert got.shape == expected.shape and np.allclose(got, expected)
    assert np.allclose(add_padded(torch.from_numpy(b), torch.from_numpy(a)).numpy(), expected)


# ---- dlib's serialization, written here from its definition (dlib/serialize.h) -----------------
def packed(value: int) -> bytes:
    magnitude = abs(value)
    body = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if value < 0 else 0)]) + body


def name(text: str) -> bytes:
    return packed(len(text)) + text.encode()


def tensor(values: np.ndarray) -> bytes:
    head = packed(2) + b"".join(packed(d) for d in (values.size, 1, 1, 1))
    return head + struct.pack(f"<{values.size}f", *values.ravel())


def conv_layer(weights: np.ndarray, bias: np.ndarray, stride: int, pad: int) -> bytes:
    out, _, rows, cols = weights.shape
    params = np.concatenate([weights.ravel(), bias])
    return name("con_4") + tensor(params) + b"".join(packed(v) for v in (out, rows, cols, stride, stride, pad, pad))


def dlib_file(net_state: dict[str, torch.Tensor], noise: bytes = b"\x05junk") -> bytes:
    """A dlib network file holding `net_state`'s weights, with unrelated bytes between layers
    (dlib writes relu, pool and tag layers there)."""
    out = name("loss_metric_2") + noise
    convs = [("stem", 2, 0)] + [
        (f"blocks.{i}.conv{j}", stride if j == 1 else 1, (1 if stride == 1 else 0) if j == 1 else 1)
        for i, (_, stride) in enumerate(BLOCKS)
        for j in (1, 2)
    ]
    for prefix, stride, pad in convs:
        bn = "stem_bn" if prefix == "stem" else prefix.replace("conv", "bn")
        w, b = net_state[f"{prefix}.weight"].numpy(), net_state[f"{prefix}.bias"].numpy()
        out += conv_layer(w, b, stride, pad) + noise
        affine = np.concatenate([net_state[f"{bn}.weight"].numpy(), net_state[f"{bn}.bias"].numpy()])
        out += name("affine_") + tensor(affine) + noise
    fc = net_state["output.weight"].numpy()  # (out, in); dlib stores (in, out)
    out += name("fc_2") + packed(fc.shape[0]) + packed(fc.shape[1]) + tensor(fc.T.copy())
    return out


def test_a_dlib_file_is_read_into_the_network_it_describes(tmp_path):
    torch.manual_seed(0)
    source = DlibResNetTorch()
    for p in source.parameters():
        torch.nn.init.normal_(p)
    path = tmp_path / "net.dat"
    path.write_bytes(dlib_file(source.state_dict()))
    layers = read_dlib_layers(path.read_bytes())
    assert [layer.kind for layer in layers[:3]] == ["con_4", "affine_", "con_4"] and layers[-1].kind == "fc_2"
    assert layers[0].stride == (2, 2) and layers[0].padding == (0, 0) and layers[0].shape == (32, 3, 7, 7)
    state = dlib_state_dict(path)
    for key, value in source.state_dict().items():
        assert torch.equal(state[key], value), key


def test_the_smallest_input_is_checked_where_the_network_is_built():
    from facerec.errors import ConfigError
    from facerec.models import build_backbone

    with torch.no_grad():
        net = build_backbone("dlib_resnet", 16, 103)
        assert net(torch.zeros(1, 3, 103, 103)).shape == (1, 16)
        with pytest.raises(RuntimeError):  # one pixel less and a convolution has nothing to slide over
            net(torch.zeros(1, 3, 102, 102))
    with pytest.raises(ConfigError, match="dlib_resnet needs an input_size of at least 103, got 102"):
        build_backbone("dlib_resnet", 16, 102)


def test_a_file_that_is_not_dlibs_network_is_a_clear_error(tmp_path):
    state = DlibResNetTorch().state_dict()
    whole = dlib_file(state)
    cases = {
        "missing.dat": None,
        "empty.dat": b"",
        "truncated.dat": whole[: len(whole) // 2],
        "extra.dat": whole + name("con_4") + tensor(np.zeros(4)) + b"".join(packed(v) for v in (1, 1, 1, 1, 1, 0, 0)),
    }
    for file, data in cases.items():
        path = tmp_path / file
        if data is not None:
            path.write_bytes(data)
        with pytest.raises(FacerecError, match="is not dlib's face recognition ResNet model file"):
            dlib_state_dict(path)


@needs_dlib
@needs_lfw
def test_the_rebuild_gives_dlibs_own_descriptors_on_real_faces():
    """dlib's C++ and the torch rebuild on the same 150 px chips of real faces."""
    from PIL import Image

    from facerec.models.io import load_recognition_model
    from facerec.models.reference import DlibResNet

    images = sorted((LFW / "images").glob("*/*.jpg"))[:6]
    chips = np.stack([np.asarray(Image.open(p).convert("RGB").crop((50, 50, 200, 200))) for p in images])
    x = torch.from_numpy(chips).permute(0, 3, 1, 2).float() / 127.5 - 1
    theirs = DlibResNet()(x)
    ours = load_recognition_model("dlib").net(x).detach()
    assert ours.shape == (6, 128)
    assert torch.allclose(ours, theirs, atol=1e-4), (ours - theirs).abs().max()
    # and the descriptors are not all alike (a broken port can agree on a constant)
    sims = torch.nn.functional.cosine_similarity(theirs[:, None], theirs[None], dim=-1)
    assert sims[~torch.eye(6, dtype=bool)].min() < 0.95
