"""MTCNN (Zhang et al. 2016) face detection and five landmarks, in plain PyTorch.

The three cascaded networks load the weight files that ship inside the `facenet-pytorch`
wheel (`pnet.pt`, `rnet.pt`, `onet.pt`; install it with `pip install --no-deps
facenet-pytorch`). That package itself is never imported: it needs torchvision.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from facerec.align.nms import nms
from facerec.align.types import Face
from facerec.errors import FacerecError


class PNet(nn.Module):
    """Proposal net: fully convolutional, 12x12 receptive field, stride 2."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 10, 3), nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(10, 16, 3), nn.PReLU(16)
        self.conv3, self.prelu3 = nn.Conv2d(16, 32, 3), nn.PReLU(32)
        self.conv4_1, self.conv4_2 = nn.Conv2d(32, 2, 1), nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.prelu3(self.conv3(self.prelu2(self.conv2(x))))
        return self.conv4_2(x), F.softmax(self.conv4_1(x), dim=1)


def caffe_flatten(x: torch.Tensor) -> torch.Tensor:
    """Flatten in the (W, H, C) order the original Caffe weights expect."""
    return x.permute(0, 3, 2, 1).reshape(len(x), -1)


class RNet(nn.Module):
    """Refinement net on 24x24 crops."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 28, 3), nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(28, 48, 3), nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(48, 64, 2), nn.PReLU(64)
        self.dense4, self.prelu4 = nn.Linear(576, 128), nn.PReLU(128)
        self.dense5_1, self.dense5_2 = nn.Linear(128, 2), nn.Linear(128, 4)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu4(self.dense4(caffe_flatten(self.prelu3(self.conv3(x)))))
        return self.dense5_2(x), F.softmax(self.dense5_1(x), dim=1)


class ONet(nn.Module):
    """Output net on 48x48 crops: score, box refinement and five landmarks."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.prelu1 = nn.Conv2d(3, 32, 3), nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv2, self.prelu2 = nn.Conv2d(32, 64, 3), nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.conv3, self.prelu3 = nn.Conv2d(64, 64, 3), nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.conv4, self.prelu4 = nn.Conv2d(64, 128, 2), nn.PReLU(128)
        self.dense5, self.prelu5 = nn.Linear(1152, 256), nn.PReLU(256)
        self.dense6_1, self.dense6_2, self.dense6_3 = nn.Linear(256, 2), nn.Linear(256, 4), nn.Linear(256, 10)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu5(self.dense5(caffe_flatten(self.prelu4(self.conv4(x)))))
        return self.dense6_2(x), self.dense6_3(x), F.softmax(self.dense6_1(x), dim=1)


def weights_dir() -> Path:
    spec = importlib.util.find_spec("facenet_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FacerecError(
            "MTCNN weights not found: install them with `pip install --no-deps facenet-pytorch==2.6.0` "
            "(only its weight files are used)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def load_net(net: nn.Module, name: str) -> nn.Module:
    path = weights_dir() / f"{name}.pt"
    if not path.is_file():
        raise FacerecError(f"MTCNN weight file missing: {path}")
    net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return net.eval()


def square(boxes: torch.Tensor) -> torch.Tensor:
    """Grow each (x1, y1, x2, y2) box to the square around its center."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + (w - side) / 2
    y1 = boxes[:, 1] + (h - side) / 2
    return torch.stack([x1, y1, x1 + side, y1 + side], 1)


def refine(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """Apply the regression offsets (fractions of the box size, +1 pixel convention)."""
    w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
    h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
    return boxes + reg * torch.cat([w, h, w, h], 1)


def crop_resized(image: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crops of (1, 3, H, W) `image` at integer boxes (clipped to the image), resized to size."""
    _, _, h, w = image.shape
    crops = []
    for x1, y1, x2, y2 in boxes.trunc().int().tolist():
        x1, y1 = max(x1, 1), max(y1, 1)
        x2, y2 = min(x2, w), min(y2, h)
        if x2 < x1 or y2 < y1:
            crops.append(torch.zeros(1, 3, size, size))
            continue
        crop = image[:, :, y1 - 1 : y2, x1 - 1 : x2]
        crops.append(F.interpolate(crop, size=(size, size), mode="area"))
    return torch.cat(crops)


class MTCNN:
    """Three-stage cascade; `detect(image)` returns faces sorted by score."""

    name = "mtcnn"

    def __init__(
        self,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        scale_factor: float = 0.709,
        device: str = "cpu",
    ) -> None:
        self.min_face_size, self.thresholds, self.factor = min_face_size, thresholds, scale_factor
        self.device = torch.device(device)
        self.pnet = load_net(PNet(), "pnet").to(self.device)
        self.rnet = load_net(RNet(), "rnet").to(self.device)
        self.onet = load_net(ONet(), "onet").to(self.device)

    def scales(self, h: int, w: int) -> list[float]:
        scale = 12.0 / self.min_face_size
        side = min(h, w) * scale
        out = []
        while side >= 12:
            out.append(scale)
            scale *= self.factor
            side *= self.factor
        return out

    def propose(self, image: torch.Tensor) -> torch.Tensor:
        """Stage 1: PNet over an image pyramid; rows (x1, y1, x2, y2, score, 4 offsets)."""
        _, _, h, w = image.shape
        found = []
        for scale in self.scales(h, w):
            resized = F.interpolate(image, size=(int(h * scale + 1), int(w * scale + 1)), mode="area")
            reg, prob = self.pnet(resized)
            ys, xs = torch.nonzero(prob[0, 1] >= self.thresholds[0], as_tuple=True)
            if len(ys) == 0:
                continue
            cells = torch.stack([xs, ys], 1).float()
            top_left = ((2 * cells + 1) / scale).floor()
            bottom_right = ((2 * cells + 12) / scale).floor()
            score = prob[0, 1, ys, xs]
            rows = torch.cat([top_left, bottom_right, score[:, None], reg[0, :, ys, xs].T], 1)
            found.append(rows[nms(rows[:, :4], rows[:, 4], 0.5)])
        if not found:
            return torch.zeros(0, 9)
        rows = torch.cat(found)
        return rows[nms(rows[:, :4], rows[:, 4], 0.7)]

    @torch.no_grad()
    def detect(self, image: np.ndarray) -> list[Face]:
        """Faces in an RGB uint8 (H, W, 3) image."""
        if image.ndim != 3 or image.shape[2] != 3:
            raise FacerecError(f"expected an RGB image of shape (H, W, 3), got {image.shape}")
        x = torch.from_numpy(np.array(image, dtype=np.float32)).permute(2, 0, 1)[None].to(self.device)
        x = (x - 127.5) * 0.0078125
        rows = self.propose(x)
        if len(rows) == 0:
            return []
        boxes = square(refine(rows[:, :4], rows[:, 5:9]))

        reg, prob = self.rnet(crop_resized(x, boxes, 24))
        keep = prob[:, 1] > self.thresholds[1]
        boxes, scores, reg = boxes[keep], prob[keep, 1], reg[keep]
        if len(boxes) == 0:
            return []
        pick = nms(boxes, scores, 0.7)
        boxes = square(refine(boxes[pick], reg[pick]))

        reg, marks, prob = self.onet(crop_resized(x, boxes, 48))
        keep = prob[:, 1] > self.thresholds[2]
        boxes, scores, reg, marks = boxes[keep], prob[keep, 1], reg[keep], marks[keep]
        if len(boxes) == 0:
            return []
        w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
        h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
        lx = boxes[:, 0:1] + w * marks[:, 0:5] - 1
        ly = boxes[:, 1:2] + h * marks[:, 5:10] - 1
        boxes = refine(boxes, reg)
        pick = nms(boxes, scores, 0.7, mode="min")
        landmarks = torch.stack([lx, ly], 2)
        return [
            Face(
                box=boxes[i].cpu().numpy().astype(np.float64),
                score=float(scores[i]),
                landmarks=landmarks[i].cpu().numpy().astype(np.float64),
            )
            for i in pick.tolist()
        ]
