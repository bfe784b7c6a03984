"""Deterministic synthetic face identities: the embedded default data set.

An identity is a vector of shape and color parameters (face outline, skin, hair and
hairline, eyes and irises, brows, nose, mouth and lips, ears, moles, beard, glasses). An
image of it adds nuisance: pose (in-plane rotation, scale, shift, yaw), expression (smile,
open mouth, eye opening, raised brows), lighting (direction, strength, color cast),
background, blur, sensor noise and resolution loss. Everything is a pure function of
(seed, identity, image), so any image can be re-rendered anywhere without storing it.

Faces are drawn roughly aligned, like the output of a five-point alignment step: the eyes
sit near the standard template's eye positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

Params = dict[str, float | np.ndarray]
# black, dark brown, brown, blond, red, grey: hair colors are mixtures of these
HAIR_COLORS = np.array(
    [[0.05, 0.04, 0.03], [0.2, 0.12, 0.06], [0.45, 0.28, 0.14], [0.85, 0.7, 0.4], [0.6, 0.22, 0.08], [0.72, 0.72, 0.7]]
)


def identity_params(seed: int, identity: int) -> Params:
    rng = np.random.default_rng([seed, identity, 0xFACE])
    u = rng.uniform
    skin_tone = u(0.25, 0.95)
    return {
        "face_w": u(0.52, 0.72),
        "face_h": u(0.70, 0.92),
        "jaw": u(0.0, 0.35),  # how much the lower face narrows
        "skin": np.array([skin_tone, skin_tone * u(0.72, 0.88), skin_tone * u(0.55, 0.78)]),
        "hair": rng.dirichlet(np.full(len(HAIR_COLORS), 0.3)) @ HAIR_COLORS,
        "hairline": u(-0.75, -0.35),
        "hair_volume": u(0.02, 0.22),
        "fringe_tilt": u(-0.25, 0.25),
        "eye_x": u(0.19, 0.30),
        "eye_y": u(-0.18, -0.05),
        "eye_w": u(0.08, 0.13),
        "eye_h": u(0.035, 0.06),
        "iris": rng.uniform(0.05, 0.7, 3),
        "brow_gap": u(0.08, 0.16),
        "brow_thick": u(0.015, 0.045),
        "brow_tilt": u(-0.35, 0.35),
        "nose_len": u(0.12, 0.28),
        "nose_w": u(0.05, 0.11),
        "mouth_y": u(0.32, 0.48),
        "mouth_w": u(0.14, 0.26),
        "lip_h": u(0.02, 0.05),
        "lips": np.array([u(0.45, 0.85), u(0.15, 0.4), u(0.2, 0.4)]),
        "ear": u(0.06, 0.14),
        "moles": rng.uniform(-0.45, 0.45, (int(rng.integers(0, 4)), 2)),
        "beard": float(rng.random() < 0.25) * u(0.4, 0.9),
        "glasses": float(rng.random() < 0.2),
        "glasses_tint": u(0.0, 0.3),
    }


def nuisance_params(seed: int, identity: int, image: int, difficulty: float = 1.0) -> Params:
    rng = np.random.default_rng([seed, identity, image, 0xBEEF])
    d = difficulty

    def sym(scale: float) -> float:
        return float(rng.uniform(-scale, scale) * d)

    return {
        "roll": sym(0.18),
        "scale": 1.0 + sym(0.08),
        "shift": np.array([sym(0.06), sym(0.06)]),
        "yaw": sym(0.35),
        "smile": sym(0.6),
        "mouth_open": float(rng.uniform(0, 1) ** 3 * d),
        "eye_open": float(np.clip(1.0 - rng.uniform(0, 0.6) * d, 0.25, 1.0)),
        "brow_raise": sym(0.04),
        "light_dir": float(rng.uniform(0, 2 * np.pi)),
        "light_strength": float(rng.uniform(0, 0.45) * d),
        "brightness": 1.0 + sym(0.25),
        "contrast": 1.0 + sym(0.2),
        "cast": 1.0 + rng.uniform(-0.08, 0.08, 3) * d,
        "background": rng.uniform(0.05, 0.95, 3),
        "bg_gradient": sym(0.3),
        "blur": float(rng.uniform(0, 1.2) * d),
        "noise": float(rng.uniform(0, 0.04) * d),
        "noise_seed": int(rng.integers(2**31)),
        "lowres": float(rng.uniform(0.35, 1.0) if rng.random() < 0.3 * d else 1.0),
    }


class Canvas:
    """Color layers alpha-composited on a grid of face coordinates in [-1, 1]."""

    def __init__(self, size: int, pose: Params) -> None:
        pix = (np.arange(size) + 0.5) / size * 2 - 1
        gx, gy = np.meshgrid(pix, pix)
        shift = pose["shift"]
        gx, gy = (gx - shift[0]) / pose["scale"], (gy - shift[1]) / pose["scale"]
        c, s = np.cos(pose["roll"]), np.sin(pose["roll"])
        self.x, self.y = c * gx + s * gy, -s * gx + c * gy
        self.edge = 2.0 / size  # soft edges one pixel wide: anti-aliasing for free
        self.yaw = float(pose["yaw"])
        self.image = np.zeros((size, size, 3))

    def inner_x(self, x: float, depth: float = 1.0) -> float:
        """Horizontal position of an inner feature after yaw (nearer features move more)."""
        return x * (1 - 0.25 * abs(self.yaw)) + 0.12 * self.yaw * depth

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, tilt: float = 0.0) -> np.ndarray:
        dx, dy = self.x - cx, self.y - cy
        c, s = np.cos(tilt), np.sin(tilt)
        u, v = (c * dx + s * dy) / rx, (-s * dx + c * dy) / ry
        r = np.sqrt(u * u + v * v)
        return np.clip((1 - r) * min(rx, ry) / self.edge + 0.5, 0, 1)

    def paint(self, alpha: np.ndarray, color: np.ndarray, opacity: float = 1.0) -> None:
        a = (alpha * opacity)[..., None]
        self.image = self.image * (1 - a) + a * np.asarray(color)[None, None, :]


def render_face(ident: Params, nuis: Params, size: int = 112) -> np.ndarray:
    """Render one face as an (size, size, 3) uint8 RGB array."""
    cv = Canvas(size, nuis)
    bg = np.asarray(nuis["background"])
    cv.image[:] = bg * (1 + nuis["bg_gradient"] * cv.y[..., None])

    fw, fh = float(ident["face_w"]), float(ident["face_h"])
    face_cx = cv.inner_x(0.0, 0.3)
    hair = np.asarray(ident["hair"])
    skin = np.asarray(ident["skin"])
    cv.paint(cv.ellipse(face_cx, -0.12, fw + ident["hair_volume"], fh * 0.8 + ident["hair_volume"]), hair)
    for side in (-1, 1):
        cv.paint(cv.ellipse(face_cx + side * fw * 0.98, 0.0, ident["ear"], ident["ear"] * 1.6), skin * 0.92)
    lower = np.clip(cv.y, 0, None) * float(ident["jaw"])  # jaw narrows the outline below the eyes
    face = cv.ellipse(face_cx, 0.05, fw, fh) * (np.abs(cv.x - face_cx) < fw * (1 - lower))
    cv.paint(face, skin)
    fringe = (cv.y < ident["hairline"] + ident["fringe_tilt"] * (cv.x - face_cx)) * face
    cv.paint(fringe, hair)
    if ident["beard"] > 0:
        beard = face * (cv.y > 0.25) * np.clip((cv.y - 0.25) * 6, 0, 1)
        cv.paint(beard, hair * 0.8, float(ident["beard"]))

    ex, ey = float(ident["eye_x"]), float(ident["eye_y"])
    for side in (-1, 1):
        cx = cv.inner_x(side * ex)
        brow_y = ey - ident["brow_gap"] - nuis["brow_raise"]
        cv.paint(
            cv.ellipse(cx, brow_y, ident["eye_w"] * 1.2, ident["brow_thick"], side * ident["brow_tilt"]),
            hair * 0.7,
        )
        eye_h = ident["eye_h"] * nuis["eye_open"]
        cv.paint(cv.ellipse(cx, ey, ident["eye_w"], eye_h), np.array([0.95, 0.95, 0.93]))
        iris_r = min(float(ident["eye_h"]) * 0.9, float(ident["eye_w"]) * 0.6)
        cv.paint(cv.ellipse(cx, ey, iris_r, min(iris_r, eye_h)), ident["iris"])
        cv.paint(cv.ellipse(cx, ey, iris_r * 0.4, min(iris_r * 0.4, eye_h)), np.zeros(3))
        if ident["glasses"]:
            ring = cv.ellipse(cx, ey, ident["eye_w"] * 1.6, 0.11)
            inner = cv.ellipse(cx, ey, ident["eye_w"] * 1.6 - 0.02, 0.09)
            cv.paint(np.clip(ring - inner, 0, 1), np.array([0.1, 0.1, 0.12]))
            cv.paint(inner, np.array([0.3, 0.35, 0.4]), float(ident["glasses_tint"]))

    nose_y = ey + 0.06 + ident["nose_len"] / 2
    nose_cx = cv.inner_x(0.0, 1.6)
    cv.paint(cv.ellipse(nose_cx, nose_y, ident["nose_w"], ident["nose_len"] / 2), skin * 0.8, 0.7)
    cv.paint(cv.ellipse(nose_cx, ey + 0.06 + ident["nose_len"], ident["nose_w"] * 0.9, 0.025), skin * 0.5)

    mouth_cx = cv.inner_x(0.0, 0.9)
    my = float(ident["mouth_y"])
    bend = -nuis["smile"] * ((cv.x - mouth_cx) / ident["mouth_w"]) ** 2 * 0.06
    lip_h = ident["lip_h"] * (1 + 1.5 * nuis["mouth_open"])
    dy, saved_y = cv.y, cv.y
    cv.y = dy - bend
    cv.paint(cv.ellipse(mouth_cx, my, ident["mouth_w"], lip_h), ident["lips"])
    if nuis["mouth_open"] > 0.05:
        cv.paint(cv.ellipse(mouth_cx, my, ident["mouth_w"] * 0.8, lip_h * nuis["mouth_open"] * 0.7), np.full(3, 0.1))
    cv.y = saved_y
    for mx, my_ in np.asarray(ident["moles"]).reshape(-1, 2):
        cv.paint(cv.ellipse(cv.inner_x(float(mx) * fw), float(my_) * fh, 0.018, 0.018) * face, skin * 0.35)

    return finish(cv.image, cv.x, cv.y, nuis)


def finish(img: np.ndarray, x: np.ndarray, y: np.ndarray, nuis: Params) -> np.ndarray:
    """Lighting, camera blur, resolution loss and noise; returns uint8."""
    phi = nuis["light_dir"]
    light = 1 + nuis["light_strength"] * (np.cos(phi) * x + np.sin(phi) * y)
    img = img * light[..., None] * np.asarray(nuis["cast"])[None, None, :]
    img = (img - 0.5) * nuis["contrast"] + 0.5
    img = img * nuis["brightness"]
    if nuis["blur"] > 0.05:
        img = gaussian_blur(img, float(nuis["blur"]))
    size = img.shape[0]
    out = Image.fromarray(to_uint8(img))
    if nuis["lowres"] < 1.0:
        small = max(8, round(size * float(nuis["lowres"])))
        out = out.resize((small, small), Image.BILINEAR).resize((size, size), Image.BILINEAR)
    arr = np.asarray(out, dtype=np.float64) / 255
    rng = np.random.default_rng(int(nuis["noise_seed"]))
    arr = arr + rng.normal(0, float(nuis["noise"]), arr.shape)
    return to_uint8(arr)


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    radius = max(1, int(3 * sigma + 0.5))
    t = np.arange(-radius, radius + 1)
    kernel = np.exp(-(t**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    pad = np.pad(img, ((radius, radius), (radius, radius), (0, 0)), mode="edge")
    rows = sum(k * pad[:, i : i + img.shape[1]] for i, k in enumerate(kernel))
    return sum(k * rows[i : i + img.shape[0]] for i, k in enumerate(kernel))


@dataclass(frozen=True)
class SyntheticFaces:
    """N identities x M images of synthetic faces; image k is identity k // M."""

    identities: int
    images_per_identity: int
    size: int = 112
    seed: int = 0
    difficulty: float = 1.0
    first_identity: int = 0  # offset, so disjoint sets share one seed

    def __len__(self) -> int:
        return self.identities * self.images_per_identity

    def label(self, index: int) -> int:
        return index // self.images_per_identity

    def render(self, index: int) -> np.ndarray:
        if not 0 <= index < len(self):
            raise IndexError(f"synthetic image {index} out of range (0..{len(self) - 1})")
        ident = self.first_identity + self.label(index)
        image = index % self.images_per_identity
        return render_face(
            identity_params(self.seed, ident),
            nuisance_params(self.seed, ident, image, self.difficulty),
            self.size,
        )

    def write_tree(self, root: str | Path, progress: bool = True) -> Path:
        """Write the images as an identity-folder tree: root/id_00000/00.png ..."""
        from tqdm import tqdm

        root = Path(root)
        for index in tqdm(range(len(self)), desc="rendering", unit="img", disable=not progress):
            folder = root / f"id_{self.first_identity + self.label(index):05d}"
            folder.mkdir(parents=True, exist_ok=True)
            name = f"{index % self.images_per_identity:02d}.png"
            Image.fromarray(self.render(index)).save(folder / name)
        return root
