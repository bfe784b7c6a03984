"""3-D-aided pose augmentation (Xing, Xiong and Xia, "3D-Aided Data Augmentation for Robust Face
Understanding", 2020): a face is given a generic 3-D shape fitted to its five landmarks, textured
by the image itself, turned further away from the camera and rendered back onto its aligned crop.

- **Shape**: a dense generic head in millimetres, the frame of facerec.align.pose (x to the
  image's right, y down, z away from the camera). An ellipsoid carries the skull; the 68-point
  mean face of OpenFace (published mean-shape coordinates) is added onto it as a thin-plate
  spline of its depths, so the nose, brows, eye sockets, lips and jaw line sit where that mean
  face has them, and its five landmarks are exactly GENERIC_FACE_5.
- **Fit**: the head is posed at the image's estimated yaw, pitch and roll, and a 2-D affine map
  takes its projected landmarks onto the image's; every surface point visible in the image
  (z-buffer) is textured by the pixel it lands on.
- **Render**: the head turns about its own vertical axis; each surface point is forward-splatted
  (bilinear weights, a soft z-buffer) into the new view carrying its *source* coordinate, holes
  are filled by push-pull, and the output is one bilinear lookup of the image at those
  coordinates (no second resampling of colors). Background outside the head stays put. The
  result is re-aligned the way the aligner would: the similarity that brings the new landmarks
  back onto the old ones.
- **Rules of the paper**: the extra rotation has the sign of the face's own yaw (it turns further
  away, so nothing the image does not show, such as the cheek behind the nose, comes into view;
  near-frontal faces turn either way); it is applied with a probability below 1/2, and only to
  identities whose yaw histogram has low entropy (people already seen in many poses need none).

What the generic shape gets wrong: it is one head for everybody (nose length, face width and
depth are the mean's); hair, ears, glasses and the background are painted on the skull or left
flat; the far side's texture is stretched at large angles. It cannot invent what the image hides.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from facerec.align.pose import GENERIC_FACE_5, Pose, estimate_pose, rotation_matrix
from facerec.align.pose_files import PoseRow, PoseTable, find_pose_file, lookup_pose
from facerec.config import Pose3DConfig
from facerec.core.geometry import umeyama
from facerec.errors import ConfigError, DataError

log = logging.getLogger("facerec.data")

# The 68-point mean face of OpenFace (Baltrusaitis et al., WACV 2016; the same coordinates as
# the head-pose model points reprinted in many tutorials), mm, in facerec.align.pose's frame:
# iBUG order (jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, mouth 48-67).
OPENFACE_68 = np.array(
    [
        [-73.393523, -29.801432, 47.667532], [-72.775014, -10.949766, 45.909403], [-70.533638, 7.929818, 44.842580],
        [-66.850058, 26.074280, 43.141114], [-59.790187, 42.564390, 38.635298], [-48.368973, 56.481080, 30.750622],
        [-34.121101, 67.246992, 18.456453], [-17.875411, 75.056892, 3.609035], [0.098749, 77.061286, -0.881698],
        [17.477031, 74.758448, 5.181201], [32.648966, 66.929021, 19.176563], [46.372358, 56.311389, 30.770570],
        [57.343480, 42.419126, 37.628629], [64.388482, 25.455880, 40.886309], [68.212038, 6.990805, 42.281449],
        [70.486405, -11.666193, 44.142567], [71.375822, -30.365191, 47.140426], [-61.119406, -49.361602, 14.254422],
        [-51.287588, -58.769795, 7.268147], [-37.804800, -61.996155, 0.442051], [-24.022754, -61.033399, -6.606501],
        [-11.635713, -56.686759, -11.967398], [12.056636, -57.391033, -12.051204], [25.106256, -61.902186, -7.315098],
        [38.338588, -62.777713, -1.022953], [51.191007, -59.302347, 5.349435], [60.053851, -50.190255, 11.615746],
        [0.653940, -42.193790, -13.380835], [0.804809, -30.993721, -21.150853], [0.992204, -19.944596, -29.284036],
        [1.226783, -8.414541, -36.948060], [-14.772472, 2.598255, -20.132003], [-7.180239, 4.751589, -23.536684],
        [0.555920, 6.562900, -25.944448], [8.272499, 4.661005, -23.695741], [15.214351, 2.643046, -20.858157],
        [-46.047290, -37.471411, 7.037989], [-37.674688, -42.730510, 3.021217], [-27.883856, -42.711517, 1.353629],
        [-19.648268, -36.754742, -0.111088], [-28.272965, -35.134493, -0.147273], [-38.082418, -34.919043, 1.476612],
        [19.265868, -37.032306, -0.665746], [27.894191, -43.342445, 0.247660], [37.437529, -43.110822, 1.696435],
        [45.170805, -38.086515, 4.894163], [38.196454, -35.532024, 0.282961], [28.764989, -35.484289, -1.172675],
        [-28.916267, 28.612716, -2.240310], [-17.533194, 22.172187, -15.934335], [-6.684590, 19.029051, -22.611355],
        [0.381001, 20.721118, -23.748437], [8.375443, 19.035460, -22.721995], [18.876618, 22.394109, -15.610679],
        [28.794412, 28.079924, -3.217393], [19.057574, 36.298248, -14.987997], [8.956375, 39.634575, -22.554245],
        [0.381549, 40.395647, -23.591626], [-7.428895, 39.836405, -22.406106], [-18.160634, 36.677899, -15.121907],
        [-24.377490, 28.677771, -4.785684], [-6.897633, 25.475976, -20.893742], [0.340663, 26.014269, -22.220479],
        [8.444722, 25.326198, -21.025520], [24.474473, 28.323008, -5.712776], [8.449166, 30.596216, -20.671489],
        [0.205322, 31.408738, -21.903670], [-7.198266, 30.844876, -20.328022],
    ]
)  # fmt: skip


@dataclass(frozen=True)
class Skull:
    """The ellipsoid the face sits on (mm): its center (x = 0) and half axes. Width from the mean
    face's jaw line (+-73 mm at the ears), the center level with the eyes (the head's vertical
    middle), the depth such that the jaw line and brows lie on it (least squares, a few mm off)."""

    center_y: float = -40.0
    center_z: float = 80.0
    half_width: float = 78.0
    half_height: float = 125.0
    half_depth: float = 92.0

    @property
    def center(self) -> np.ndarray:
        return np.array([0.0, self.center_y, self.center_z])

    def radius(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Elliptic radius in the image plane: 1 on the head's outline."""
        return np.sqrt((x / self.half_width) ** 2 + ((y - self.center_y) / self.half_height) ** 2)

    def depth(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """z of the front half of the ellipsoid (clamped to its outline beyond it)."""
        inside = np.clip(1.0 - self.radius(x, y) ** 2, 0.0, None)
        return self.center_z - self.half_depth * np.sqrt(inside)


def _tps_kernel(r: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(r > 0, r * r * np.log(np.maximum(r, 1e-12)), 0.0)


def _thin_plate(centers: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weights and affine part of the 2-D thin-plate spline through (centers, values)."""
    n = len(centers)
    k = _tps_kernel(np.linalg.norm(centers[:, None] - centers[None], axis=2))
    p = np.hstack([np.ones((n, 1)), centers])
    system = np.block([[k, p], [p.T, np.zeros((3, 3))]])
    solution = np.linalg.solve(system, np.concatenate([values, np.zeros(3)]))
    return solution[:n], solution[n:]


def _thin_plate_at(points: np.ndarray, centers: np.ndarray, weights: np.ndarray, affine: np.ndarray) -> np.ndarray:
    k = _tps_kernel(np.linalg.norm(points[:, None] - centers[None], axis=2))
    return k @ weights + affine[0] + points @ affine[1:]


# The relief is the mean face's depth over the skull, pinned to zero on a ring just outside the
# jaw line and the brows (forehead, temples, below the chin) and faded out beyond it.
RELIEF_RING = (88.0, 112.0, -12.0)  # half width, half height, center y of the ring (mm)
RELIEF_FADE = 0.2  # the relief fades to nothing over this much of the ring's radius


def _relief_anchors(skull: Skull) -> tuple[np.ndarray, np.ndarray]:
    """Thin-plate centers and values: the 68 points' depth above the skull, and zeros on a ring."""
    angles = np.linspace(0, 2 * np.pi, 32, endpoint=False)
    ring = np.stack([RELIEF_RING[0] * np.cos(angles), RELIEF_RING[2] + RELIEF_RING[1] * np.sin(angles)], 1)
    face = OPENFACE_68[:, :2]
    relief = OPENFACE_68[:, 2] - skull.depth(face[:, 0], face[:, 1])
    return np.vstack([face, ring]), np.concatenate([relief, np.zeros(len(ring))])


@dataclass(frozen=True)
class GenericHead:
    """Samples of the generic head's visible surface on a square grid of `spacing` mm, with
    outward unit normals (towards the camera of a frontal view) and the point it turns about."""

    points: np.ndarray  # (N, 3) float32, mm
    normals: np.ndarray  # (N, 3) float32
    center: np.ndarray  # (3,) the skull's center: the head turns about the vertical axis through it
    spacing: float
    skull: Skull

    def depth(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """z of the surface at model (x, y), mm (the same function the samples are taken from)."""
        return surface_depth(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), self.skull)


def surface_depth(x: np.ndarray, y: np.ndarray, skull: Skull = Skull()) -> np.ndarray:
    """The generic head's z at model positions: skull plus the mean face's relief."""
    centers, _ = _relief_anchors(skull)
    weights, affine = _tps_cached(skull)
    flat = np.stack([np.ravel(x), np.ravel(y)], 1)
    relief = np.concatenate(
        [_thin_plate_at(flat[i : i + 8192], centers, weights, affine) for i in range(0, len(flat), 8192)]
    )
    ring = np.sqrt((flat[:, 0] / RELIEF_RING[0]) ** 2 + ((flat[:, 1] - RELIEF_RING[2]) / RELIEF_RING[1]) ** 2)
    fade = np.clip(1.0 - (ring - 1.0) / RELIEF_FADE, 0.0, 1.0)
    depth = skull.depth(flat[:, 0], flat[:, 1]) + relief * fade * fade * (3 - 2 * fade)
    return depth.reshape(np.shape(x))


@functools.lru_cache(maxsize=4)
def _tps_cached(skull: Skull) -> tuple[np.ndarray, np.ndarray]:
    return _thin_plate(*_relief_anchors(skull))


# the crop shows y from about -135 mm (forehead) to +65 mm (chin); the skull's rim is left out,
# where its surface turns edge-on and its samples would be arbitrarily sparse
HEAD_EXTENT_Y = (-150.0, 95.0)
RIM = 0.985


@functools.lru_cache(maxsize=8)
def generic_head(spacing: float = 0.9, skull: Skull = Skull()) -> GenericHead:
    """The generic head sampled every `spacing` mm (cached: built once per spacing)."""
    if not 0.05 <= spacing <= 10:
        raise DataError(f"generic head spacing must be 0.05-10 mm, got {spacing}")
    xs = np.arange(-skull.half_width, skull.half_width + spacing / 2, spacing)
    ys = np.arange(HEAD_EXTENT_Y[0], HEAD_EXTENT_Y[1] + spacing / 2, spacing)
    gx, gy = np.meshgrid(xs, ys)
    z = surface_depth(gx, gy, skull)
    dz_dy, dz_dx = np.gradient(z, spacing)
    normals = np.stack([dz_dx, dz_dy, -np.ones_like(z)], -1)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    keep = skull.radius(gx, gy) < RIM
    points = np.stack([gx, gy, z], -1)[keep]
    return GenericHead(points.astype(np.float32), normals[keep].astype(np.float32), skull.center, spacing, skull)


# ---- fitting the head to an image -----------------------------------------------------------
@dataclass(frozen=True)
class HeadFit:
    """A generic head posed on an image: model point X appears at ``affine @ [(R X)_x, (R X)_y, 1]``
    with depth ``(R X)_z * depth_scale`` (image pixels), R = rotation_matrix(yaw, pitch, roll)."""

    pose: Pose
    rotation: np.ndarray  # (3, 3)
    affine: np.ndarray  # (2, 3)

    @property
    def depth_scale(self) -> float:
        return math.sqrt(abs(np.linalg.det(self.affine[:, :2])))


def fit_head(landmarks: np.ndarray, pose: Pose | None = None) -> HeadFit:
    """Pose the generic head on five landmarks (image pixels; Face order): at the given pose or
    the one estimated from them, then the least-squares 2-D affine map that lays its projected
    landmarks onto the image's (exact up to what a rigid face cannot explain)."""
    marks = np.asarray(landmarks, dtype=np.float64)
    if marks.shape != (5, 2) or not np.isfinite(marks).all():
        raise DataError(f"pose augmentation needs five finite landmarks as (5, 2) x/y, got shape {marks.shape}")
    pose = pose if pose is not None else estimate_pose(marks)
    rotation = rotation_matrix(pose.yaw, pose.pitch, pose.roll)
    projected = (GENERIC_FACE_5 @ rotation.T)[:, :2]
    design = np.hstack([projected, np.ones((5, 1))])
    affine = np.linalg.lstsq(design, marks, rcond=None)[0].T
    return HeadFit(pose, rotation, affine)


def _camera(points: np.ndarray, rotation: np.ndarray, fit: HeadFit, pivot: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image positions (N, 2) and depths (N,) of model points turned by `rotation` about the model
    point `pivot`, which stays where the fit's own rotation puts it."""
    camera = (points - pivot) @ rotation.T + pivot @ fit.rotation.T
    xy = camera[:, :2] @ fit.affine[:, :2].T + fit.affine[:, 2]
    return xy, camera[:, 2] * fit.depth_scale


def _camera_torch(
    points: torch.Tensor, rotation: np.ndarray, fit: HeadFit, pivot: np.ndarray, after: np.ndarray | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """_camera for many points in float32, optionally followed by the 2x3 map `after` on the image."""
    affine = np.vstack([fit.affine, [0.0, 0.0, 1.0]])
    if after is not None:
        affine = np.vstack([after, [0.0, 0.0, 1.0]]) @ affine
    shift = pivot @ fit.rotation.T - pivot @ rotation.T
    # one 3x4 matrix: rotate, move the pivot back, then the image map on (x, y) and the depth scale
    camera = np.hstack([rotation, shift[:, None]])
    image = np.vstack([affine[:2, :2] @ camera[:2], fit.depth_scale * camera[2]])
    image[:2, 3] += affine[:2, 2]
    matrix = torch.from_numpy(image.astype(np.float32))
    out = points @ matrix[:, :3].T + matrix[:, 3]
    return out[:, :2], out[:, 2]


# ---- rendering ------------------------------------------------------------------------------
DEPTH_TOLERANCE = 6.0  # mm: surface points this close behind the nearest one still count as visible
OUTLINE_LEVELS = 2  # gaps in the turned surface's coverage up to ~4 px wide are still head


def _corners(xy: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """For each point and each of its 4 neighbouring pixels: flat pixel index and bilinear weight
    (0 for a pixel outside the image); shapes (4, N)."""
    h, w = size
    base = torch.floor(xy)
    fx, fy = (xy - base).unbind(1)
    x0, y0 = base.long().unbind(1)
    xs = torch.stack([x0, x0 + 1, x0, x0 + 1])
    ys = torch.stack([y0, y0, y0 + 1, y0 + 1])
    weights = torch.stack([(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy])
    weights = weights * ((xs >= 0) & (xs < w) & (ys >= 0) & (ys < h))
    return ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1), weights


def _zbuffer(index: torch.Tensor, weight: torch.Tensor, z: torch.Tensor, pixels: int) -> torch.Tensor:
    """The nearest depth at each pixel among the points that touch it (inf where none does)."""
    depth = torch.where(weight > 0.05, z.expand_as(weight), math.inf)
    zbuf = torch.full((pixels,), math.inf, dtype=z.dtype)
    return zbuf.scatter_reduce_(0, index.reshape(-1), depth.reshape(-1), "amin")


def visible(
    xy: torch.Tensor, z: torch.Tensor, size: tuple[int, int], tolerance: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which points the camera sees (not behind a nearer surface: the soft z-buffer of the
    splatting, each point tested at its nearest pixel), and the (H, W) weight sum of the seen
    points' splats (where the surface lies in the image)."""
    h, w = size
    index, weight = _corners(xy, size)
    zbuf = _zbuffer(index, weight, z, h * w)
    near = torch.round(xy).long()
    on_image = (near[:, 0] >= 0) & (near[:, 0] < w) & (near[:, 1] >= 0) & (near[:, 1] < h)
    flat = near[:, 1].clamp(0, h - 1) * w + near[:, 0].clamp(0, w - 1)
    seen = on_image & (z <= zbuf[flat] + tolerance)
    covered = torch.zeros(h * w).index_add_(0, index.reshape(-1), (weight * seen).reshape(-1))
    return seen, covered.reshape(h, w)


def splat(
    xy: torch.Tensor,
    z: torch.Tensor,
    values: torch.Tensor,
    textured: torch.Tensor,
    size: tuple[int, int],
    tolerance: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward splatting with a soft z-buffer: a point reaches the (up to 4) pixels it touches
    if it lies within `tolerance` of the nearest depth there. Per pixel: the bilinear-weighted
    mean of the values (N, C) of the textured points that reach it (C, H, W; 0 where none), their
    weight sum, and the weight sum of all points that reach it (the surface's coverage, (H, W))."""
    h, w = size
    index, weight = _corners(xy, size)
    zbuf = _zbuffer(index, weight, z, h * w)
    weight = weight * (z.expand_as(weight) <= zbuf[index] + tolerance)
    index, weight = index.reshape(-1), weight.reshape(-1)
    covered = torch.zeros(h * w).index_add_(0, index, weight)
    weight = weight * textured.repeat(4)
    total = torch.zeros(h * w).index_add_(0, index, weight)
    sums = torch.zeros(h * w, values.shape[1]).index_add_(0, index, values.repeat(4, 1) * weight[:, None])
    mean = sums / total.clamp_min(1e-12)[:, None]
    return mean.T.reshape(-1, h, w), total.reshape(h, w), covered.reshape(h, w)


def push_pull(values: torch.Tensor, weights: torch.Tensor, levels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Fill holes of a (C, H, W) map whose (H, W) weights say how sure each pixel is (1: fully
    covered): coarser averages flow into the pixels below weight 1 (Gortler et al. 1996). Holes
    wider than about 2**levels pixels keep a weight near 0."""
    w = weights.clamp(0, 1)
    if levels <= 0 or min(w.shape) < 2:
        return values, w
    num = F.avg_pool2d((values * w)[None], 2, ceil_mode=True)[0]
    den = F.avg_pool2d(w[None, None], 2, ceil_mode=True)[0, 0]
    coarse_vals, coarse_w = push_pull(num / den.clamp_min(1e-12), den * 4, levels - 1)
    size = values.shape[1:]
    up_size = (coarse_w.shape[0] * 2, coarse_w.shape[1] * 2)
    up_vals = F.interpolate(coarse_vals[None], size=up_size, mode="bilinear", align_corners=False)[0]
    up_w = F.interpolate(coarse_w[None, None], size=up_size, mode="bilinear", align_corners=False)[0, 0]
    up_vals, up_w = up_vals[:, : size[0], : size[1]], up_w[: size[0], : size[1]]
    gap = (1 - w) * up_w
    filled_w = w + gap
    filled = (values * w + up_vals * gap) / filled_w.clamp_min(1e-12)
    return filled, filled_w


def _chw(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)


def sample_bilinear(image: torch.Tensor, coords: torch.Tensor, outside: str = "border") -> torch.Tensor:
    """A (C, H, W) image read at (2, H', W') pixel coordinates (x, y), bilinear; beyond its edge
    the edge pixels repeat ("border") or the image mirrors ("reflection")."""
    h, w = image.shape[1:]
    grid = torch.stack([coords[0] / max(w - 1, 1) * 2 - 1, coords[1] / max(h - 1, 1) * 2 - 1], -1)[None]
    return F.grid_sample(image[None], grid, mode="bilinear", padding_mode=outside, align_corners=True)[0]


def _background_colors(
    image: np.ndarray, head_before: torch.Tensor, head_after: torch.Tensor, similarity: np.ndarray
) -> torch.Tensor:
    """(C, H, W) colors behind the turned head: the unmoved image (only the re-alignment applies),
    and where the head used to be but no longer is, the surrounding background pushed-pulled into
    its area (instead of a ghost of the old face)."""
    rgb = _chw(image)
    levels = int(math.log2(max(rgb.shape[1:]))) + 1
    painted, _ = push_pull(rgb, (1 - head_before) ** 2, levels)
    coords = _background(similarity, tuple(rgb.shape[1:]))
    # where the re-alignment pulls the crop's edge inwards, its edge pixels repeat (a mirrored
    # background was tried: it adds mirrored ears and hair, worse than plain streaks)
    stacked = sample_bilinear(torch.cat([rgb, painted, head_before[None]]), coords)
    uncovered = (stacked[6] - head_after).clamp(0, 1)
    return (1 - uncovered) * stacked[:3] + uncovered * stacked[3:6]


@dataclass(frozen=True)
class Light:
    """An extra light source: unit direction towards it (camera frame, z < 0: on the camera's
    side) and its strength (0: none; 1: the face lit by it alone)."""

    direction: tuple[float, float, float]
    strength: float


@dataclass(frozen=True)
class Rendered:
    image: np.ndarray  # uint8 (H, W, 3)
    landmarks: np.ndarray  # (5, 2) where the five landmarks went
    head: np.ndarray  # (H, W) in [0, 1]: the turned head's outline (the rest is unmoved background)


def head_spacing(fit: HeadFit, points_per_pixel: float = 1.0) -> float:
    """The grid spacing (mm, from a fixed ladder so the heads can be cached) that puts about
    `points_per_pixel` samples along each pixel of this image."""
    mm = 1.0 / (fit.depth_scale * points_per_pixel)
    ladder = (0.25, 0.35, 0.5, 0.7, 0.9, 1.25, 1.8, 2.5, 3.5, 5.0)
    return max([s for s in ladder if s <= mm], default=ladder[0])


def rotate_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    yaw: float,
    pitch: float = 0.0,
    pose: Pose | None = None,
    light: Light | None = None,
    realign: bool = True,
    points_per_pixel: float = 1.0,
) -> Rendered:
    """The face of `image` turned by `yaw` (and `pitch`) degrees more about its own axes, rendered
    back onto the image (same size). `landmarks`: its five landmarks (pixels); `pose`: its pose if
    known (else estimated from them). `realign`: move the result by the similarity that brings the
    turned landmarks back onto the original ones, as aligning the turned face would.
    `points_per_pixel`: head samples along a pixel; 1 suffices since the splat's holes are filled
    (2 changed LFW crops turned 30 degrees by 0.2 gray levels on average, at twice the time)."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise DataError(f"pose augmentation needs a uint8 RGB image (H, W, 3), got {image.dtype} {image.shape}")
    fit = fit_head(landmarks, pose)
    head = generic_head(head_spacing(fit, points_per_pixel))
    points = torch.from_numpy(head.points)
    size, tolerance = image.shape[:2], DEPTH_TOLERANCE * fit.depth_scale
    source_xy, source_z = _camera_torch(points, fit.rotation, fit, head.center)
    seen, covered_before = visible(source_xy, source_z, size, tolerance)  # only what the image shows has a texture
    turned = rotation_matrix(fit.pose.yaw + yaw, fit.pose.pitch + pitch, fit.pose.roll)
    marks = turned_landmarks(np.asarray(landmarks, dtype=np.float64), fit, turned, head.center)
    similarity = umeyama(marks, np.asarray(landmarks, dtype=np.float64)) if realign else np.eye(2, 3)
    xy, z = _camera_torch(points, turned, fit, head.center, after=similarity)
    values = [source_xy - xy]  # displacements: smooth, so push-pull fills them without bias at edges
    if light is not None:
        normals = torch.from_numpy(head.normals) @ torch.from_numpy(turned.astype(np.float32)).T
        values.append((normals @ torch.tensor(light.direction, dtype=torch.float32)).clamp_min(0)[:, None])
    mean, weight, covered = splat(xy, z, torch.cat(values, 1), seen.float(), size, tolerance)
    density = _density_scale(head, fit)
    filled, _ = push_pull(mean, weight * density, levels=int(math.log2(max(size))) + 1)
    # the head is where its surface lands (small gaps of the sampling closed); the rest is background
    _, inside = push_pull(torch.zeros(1, *size), covered * density, levels=OUTLINE_LEVELS)
    _, inside_before = push_pull(torch.zeros(1, *size), covered_before * density, levels=OUTLINE_LEVELS)
    head_rgb = sample_bilinear(_chw(image), filled[:2] + _pixel_grid(size))
    background = _background_colors(image, inside_before, inside, similarity)
    if light is not None:
        head_rgb *= (1 - light.strength) + light.strength * 2.0 * filled[2]
    out = inside * head_rgb + (1 - inside) * background
    new_marks = marks @ similarity[:, :2].T + similarity[:, 2]
    rgb = out.permute(1, 2, 0).numpy()
    return Rendered(np.clip(rgb + 0.5, 0, 255).astype(np.uint8), new_marks, inside.numpy())


def turned_landmarks(landmarks: np.ndarray, fit: HeadFit, turned: np.ndarray, pivot: np.ndarray) -> np.ndarray:
    """Where the five landmarks go when the head turns to `turned` (before re-alignment): the
    generic face's move, added to the image's own landmarks (so no turn leaves them exactly)."""
    before, _ = _camera(GENERIC_FACE_5, fit.rotation, fit, pivot)
    after, _ = _camera(GENERIC_FACE_5, turned, fit, pivot)
    return landmarks + (after - before)


def _density_scale(head: GenericHead, fit: HeadFit) -> float:
    """Splat weights sum to about (samples per pixel)^2 where a frontal surface covers a pixel:
    this factor brings that to 1 (a little above, so a covered pixel keeps its own value)."""
    return 1.25 * (head.spacing * fit.depth_scale) ** 2


def _pixel_grid(size: tuple[int, int]) -> torch.Tensor:
    """(2, H, W) x and y of every pixel."""
    ys, xs = torch.meshgrid(torch.arange(size[0]), torch.arange(size[1]), indexing="ij")
    return torch.stack([xs, ys]).float()


def _background(similarity: np.ndarray, size: tuple[int, int]) -> torch.Tensor:
    """(2, H, W) source coordinates of the unmoved background: only the re-alignment applies."""
    inverse = torch.from_numpy(np.linalg.inv(np.vstack([similarity, [0.0, 0.0, 1.0]]))[:2].astype(np.float32))
    return torch.einsum("ij,jhw->ihw", inverse[:, :2], _pixel_grid(size)) + inverse[:, 2, None, None]


# ---- the paper's rules ----------------------------------------------------------------------
def yaw_entropy(yaws: np.ndarray, bin_width: float = 15.0) -> float:
    """Shannon entropy (nats) of the histogram of yaws over bins of `bin_width` degrees centered on
    multiples of it (so frontal faces share the bin around 0); NaN yaws left out, 0 without any."""
    yaws = np.asarray(yaws, dtype=np.float64)
    yaws = yaws[np.isfinite(yaws)]
    if not len(yaws):
        return 0.0
    _, counts = np.unique(np.floor(yaws / bin_width + 0.5), return_counts=True)
    share = counts / counts.sum()
    return float(-(share * np.log(share)).sum())


def low_entropy_identities(labels: np.ndarray, yaws: np.ndarray, threshold: float, bin_width: float) -> np.ndarray:
    """Per identity (label 0..max): whether its images' yaw entropy is below `threshold` and it
    has at least one image with a pose (the identities the augmentation may turn)."""
    labels = np.asarray(labels)
    yaws = np.asarray(yaws, dtype=np.float64)
    out = np.zeros(int(labels.max()) + 1 if len(labels) else 0, dtype=bool)
    order = np.argsort(labels, kind="stable")  # one pass over the images grouped by identity
    for group in np.split(order, np.flatnonzero(np.diff(labels[order])) + 1) if len(order) else []:
        mine = yaws[group]
        out[labels[group[0]]] = bool(np.isfinite(mine).any()) and yaw_entropy(mine, bin_width) < threshold
    return out


def sample_rotation(yaw: float, cfg: Pose3DConfig, rng: np.random.Generator) -> tuple[float, float]:
    """(extra yaw, extra pitch) for a face at `yaw`: the magnitude uniform in cfg.yaw, capped so
    |yaw| stays within cfg.max_yaw; the sign that of the face's yaw (away from the camera), either
    for a near-frontal face (|yaw| < cfg.frontal). Extra pitch uniform in +-cfg.pitch."""
    sign = (1.0 if rng.random() < 0.5 else -1.0) if abs(yaw) < cfg.frontal else math.copysign(1.0, yaw)
    magnitude = min(rng.uniform(*cfg.yaw), max(cfg.max_yaw - abs(yaw), 0.0))
    return sign * magnitude, rng.uniform(-cfg.pitch, cfg.pitch)


def sample_light(cfg: Pose3DConfig, rng: np.random.Generator) -> Light | None:
    """With probability cfg.light an extra light from the camera's side, 10-70 degrees off its axis."""
    if cfg.light <= 0 or rng.random() >= cfg.light:
        return None
    off, around = np.radians(rng.uniform(10, 70)), rng.uniform(0, 2 * np.pi)
    direction = (math.sin(off) * math.cos(around), math.sin(off) * math.sin(around), -math.cos(off))
    return Light(direction, float(rng.uniform(0.5, 1.0) * cfg.light_strength))


def check_config(cfg: Pose3DConfig) -> None:
    where = "data.augment.pose3d"
    if not 0 <= cfg.probability < 0.5:
        raise ConfigError(
            f"{where}.probability must be in [0, 0.5) (the paper keeps turned images a minority), got {cfg.probability}"
        )
    lo, hi = cfg.yaw
    if not 0 <= lo <= hi <= 90:
        raise ConfigError(f"{where}.yaw must be [low, high] with 0 <= low <= high <= 90 degrees, got {list(cfg.yaw)}")
    if not 0 <= cfg.pitch <= 30 or not 0 < cfg.max_yaw <= 90 or cfg.frontal < 0:
        raise ConfigError(f"{where}: pitch must be 0-30, max_yaw 0-90 and frontal >= 0 degrees")
    if not 0 <= cfg.light <= 1 or not 0 <= cfg.light_strength <= 1:
        raise ConfigError(f"{where}: light (a probability) and light_strength must be in [0, 1]")
    if cfg.bin_width <= 0 or cfg.entropy_below <= 0:
        raise ConfigError(f"{where}: bin_width and entropy_below must be positive")


# ---- the training transform -----------------------------------------------------------------
@dataclass
class PoseAugment:
    """The per-image transform a dataset applies before resizing (FaceDataset.image_augment):
    turns image `index` with cfg.probability if its identity is eligible."""

    config: Pose3DConfig
    rows: list[PoseRow | None]  # per dataset index: pose and landmarks in the stored image's pixels
    eligible: np.ndarray  # per dataset index

    def __call__(self, image: np.ndarray, index: int, rng: np.random.Generator) -> np.ndarray:
        row = self.rows[index]
        if not self.eligible[index] or row is None or row.pose is None or rng.random() >= self.config.probability:
            return image
        h, w = image.shape[:2]
        if not ((row.landmarks >= -0.5 * w) & (row.landmarks <= 1.5 * np.array([w, h]))).all():
            raise DataError(
                f"pose augmentation: the landmarks of training image #{index} lie far outside its {w}x{h} pixels; "
                "was its pose.tsv made for crops of another size?"
            )
        yaw, pitch = sample_rotation(row.pose.yaw, self.config, rng)
        light = sample_light(self.config, rng)
        return rotate_face(image, row.landmarks, yaw, pitch, pose=row.pose, light=light).image


def _tables(cfg: Pose3DConfig, first_image: Path | None) -> list[PoseTable]:
    files = [cfg.poses] if isinstance(cfg.poses, str) else list(cfg.poses or [])
    if not files:
        found = find_pose_file([first_image]) if first_image is not None else None
        if found is None:
            raise ConfigError(
                "data.augment.pose3d needs each image's pose: set data.augment.pose3d.poses to a pose.tsv "
                "(make one with `facerec data pose TREE`), or keep TREE/pose.tsv beside the images"
            )
        files = [str(found)]
    return [PoseTable.read(f) for f in files]


def pose_augmenter(cfg: Pose3DConfig, images: Sequence[str], labels: np.ndarray) -> PoseAugment | None:
    """The transform for a training set (its images' paths, as `describe` gives them, and labels),
    or None when cfg.probability is 0. Identities are chosen by the entropy rule."""
    check_config(cfg)
    if cfg.probability == 0:
        return None
    tables = _tables(cfg, Path(images[0]) if len(images) else None)
    rows = [lookup_pose(tables, image) for image in images]
    yaws = np.array([r.pose.yaw if r is not None and r.pose is not None else np.nan for r in rows])
    if not np.isfinite(yaws).any():
        raise DataError("data.augment.pose3d: no training image has a pose in the pose file(s) (paths must match)")
    chosen = low_entropy_identities(labels, yaws, cfg.entropy_below, cfg.bin_width)
    eligible = chosen[np.asarray(labels)] & np.isfinite(yaws)
    log.info(
        "pose augmentation: %d of %d images have a pose; %d of %d identities (yaw entropy < %.2f) may be turned",
        int(np.isfinite(yaws).sum()), len(rows), int(chosen.sum()), len(chosen), cfg.entropy_below,
    )  # fmt: skip
    return PoseAugment(cfg, rows, eligible)
