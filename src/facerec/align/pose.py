"""Head pose (yaw, pitch, roll) from 2-D facial landmarks, by a weak-perspective fit of a generic
3-D face.

Coordinates: the image's x to the right, y down; the camera looks along +z, so a point with a
smaller z is nearer to the camera. A 3-D point X of the face model appears at
``scale * (R @ X)[:2] + shift`` (scaled orthographic projection: faces are small against their
distance from the camera, so perspective is ignored).

Angles, in degrees (``rotation_matrix`` composes them, ``R = Rz(roll) @ Ry(-yaw) @ Rx(-pitch)``):

- **yaw > 0**: the nose points towards the image's **right** (larger x), i.e. the person turned
  to their own left; the person's right cheek (seen on the image's left) shows more.
- **pitch > 0**: the face is tilted up (the nose points towards the top of the image).
- **roll > 0**: the face is turned clockwise as seen in the image (the eye on the image's right
  is lower).

A mirrored image has the same pitch and the opposite yaw and roll.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facerec.errors import DataError

# A generic face: five points, in millimetres, in the model frame (seen frontally: x to the
# image's right, y down, z away from the camera the face looks at, so the nose tip has the
# smallest z). Source: the mean shape of the 68-point iBUG layout published with
# OpenFace (Baltrusaitis et al., "OpenFace: an open source facial behavior analysis toolkit",
# WACV 2016; the point distribution model's mean, "In-the-wild_aligned_PDM_68", widely reprinted
# as the 68 x/y/z model points of head-pose tutorials). The eyes are the means of points 36-41 and
# 42-47, the nose tip is point 30, the mouth corners are points 48 and 54. Order as in
# facerec.align.types.Face: left eye, right eye, nose tip, left mouth corner, right mouth corner
# ('left' = the smaller image x in a frontal view).
GENERIC_FACE_5 = np.array(
    [
        [-32.934914, -38.286953, 2.105181],
        [32.788306, -38.764734, 0.880466],
        [1.226783, -8.414541, -36.948060],
        [-28.916267, 28.612716, -2.240310],
        [28.794412, 28.079924, -3.217393],
    ]
)

# Which of the 68 iBUG points (0-based) make up the five points: eyes are averaged over their
# six contour points.
IBUG68_TO_5: tuple[tuple[int, ...], ...] = (
    (36, 37, 38, 39, 40, 41),
    (42, 43, 44, 45, 46, 47),
    (30,),
    (48,),
    (54,),
)


@dataclass(frozen=True)
class Pose:
    """Head pose in degrees (sign conventions in the module docstring). ``scale`` is image units
    per millimetre of the generic face; ``residual`` the RMS distance between the landmarks and
    the fitted model's projection, as a fraction of the eye-to-mouth distance (a large value,
    say above 0.15, means the landmarks fit no rigid face well: a misdetection or an odd face)."""

    yaw: float
    pitch: float
    roll: float
    scale: float = 1.0
    residual: float = 0.0


def five_from_68(landmarks: np.ndarray) -> np.ndarray:
    """The five points (Face order) of 68 landmarks in the iBUG 300-W layout."""
    points = np.asarray(landmarks, dtype=np.float64)
    return np.stack([points[list(idx)].mean(0) for idx in IBUG68_TO_5])


def _rx(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _ry(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rz(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """The 3x3 rotation (model frame -> camera frame) of a pose given in degrees."""
    y, p, r = np.radians([yaw, pitch, roll])
    return _rz(r) @ _ry(-y) @ _rx(-p)


def angles_from_rotation(rotation: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a rotation made by rotation_matrix (inverse of it for
    |yaw| < 90)."""
    r = np.asarray(rotation, dtype=np.float64)
    beta = -np.arcsin(np.clip(r[2, 0], -1.0, 1.0))
    alpha = np.arctan2(r[2, 1], r[2, 2])
    gamma = np.arctan2(r[1, 0], r[0, 0])
    return float(np.degrees(-beta)), float(np.degrees(-alpha)), float(np.degrees(gamma))


def project(
    points: np.ndarray,
    yaw: float,
    pitch: float,
    roll: float,
    scale: float = 1.0,
    shift: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Image positions (N, 2) of 3-D model points (N, 3) under a pose (scaled orthographic)."""
    camera = np.asarray(points, dtype=np.float64) @ rotation_matrix(yaw, pitch, roll).T
    return scale * camera[:, :2] + np.asarray(shift, dtype=np.float64)


def _axis_angle(v: np.ndarray) -> np.ndarray:
    """Rotation matrix of a rotation vector (Rodrigues)."""
    theta = float(np.linalg.norm(v))
    if theta < 1e-12:
        return np.eye(3)
    k = v / theta
    kx = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + np.sin(theta) * kx + (1 - np.cos(theta)) * kx @ kx


def _residuals(rotation: np.ndarray, model: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Residuals (flattened) of the best scale for a rotation; model and image are centered,
    so the best shift is zero."""
    projected = (model @ rotation.T)[:, :2]
    scale = max(float((projected * image).sum() / max((projected**2).sum(), 1e-12)), 0.0)
    return (image - scale * projected).ravel()


def _refine(rotation: np.ndarray, model: np.ndarray, image: np.ndarray, steps: int = 50) -> np.ndarray:
    """Levenberg-Marquardt on the rotation alone (scale and shift are solved in closed form for
    each rotation); small rotation-vector updates on the left, numerical Jacobian."""
    damping, eps = 1e-3, 1e-6
    cost = float((_residuals(rotation, model, image) ** 2).sum())
    for _ in range(steps):
        res = _residuals(rotation, model, image)
        jac = np.stack(
            [(_residuals(_axis_angle(eps * np.eye(3)[i]) @ rotation, model, image) - res) / eps for i in range(3)],
            axis=1,
        )
        normal = jac.T @ jac
        step = -np.linalg.solve(normal + damping * np.diag(np.diag(normal) + 1e-12), jac.T @ res)
        candidate = _axis_angle(step) @ rotation
        new_cost = float((_residuals(candidate, model, image) ** 2).sum())
        if new_cost < cost:
            rotation, damping = candidate, damping / 10
            converged = cost - new_cost < 1e-12 * max(cost, 1e-12)
            cost = new_cost
            if converged or np.linalg.norm(step) < 1e-10:
                break
        else:
            damping *= 10
            if damping > 1e8:
                break
    return rotation


def _affine_start(model: np.ndarray, image: np.ndarray) -> np.ndarray:
    """A rotation from the least-squares affine camera (2x3), made scaled-orthonormal by SVD."""
    affine = np.linalg.lstsq(model, image, rcond=None)[0].T
    u, _, vt = np.linalg.svd(affine, full_matrices=False)
    rows = u @ vt
    return np.vstack([rows, np.cross(rows[0], rows[1])])


def _check_landmarks(landmarks: np.ndarray) -> np.ndarray:
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim != 2 or points.shape not in ((5, 2), (68, 2)):
        raise DataError(f"pose needs 5 or 68 landmarks as (N, 2) x/y positions, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise DataError("pose needs finite landmark positions (got NaN or infinity)")
    return five_from_68(points) if len(points) == 68 else points


def estimate_pose(landmarks: np.ndarray, model: np.ndarray = GENERIC_FACE_5) -> Pose:
    """Yaw, pitch and roll of a face from its five landmarks (Face order: left eye, right eye,
    nose tip, left mouth corner, right mouth corner) or 68 iBUG landmarks, in image pixels.

    The generic face is fitted by least squares under scaled orthographic projection; the fit
    starts from the affine camera and from a few yaws, and keeps the best (the depth of the nose
    makes the mirror-in-depth solution fit worse)."""
    points = _check_landmarks(landmarks)
    model = np.asarray(model, dtype=np.float64)
    image_c = points - points.mean(0)
    model_c = model - model.mean(0)
    spread = float(np.linalg.norm(image_c, axis=1).max())
    if spread < 1e-6:
        raise DataError("pose needs landmarks that are not all at one point")
    starts = [_affine_start(model_c, image_c)] + [rotation_matrix(y, 0.0, 0.0) for y in (-45.0, 0.0, 45.0)]
    fits = [_refine(start, model_c, image_c) for start in starts]
    costs = [float((_residuals(r, model_c, image_c) ** 2).sum()) for r in fits]
    best = fits[int(np.argmin(costs))]
    projected = (model_c @ best.T)[:, :2]
    scale = float((projected * image_c).sum() / max((projected**2).sum(), 1e-12))
    eye_mouth = float(np.linalg.norm(points[:2].mean(0) - points[3:].mean(0)))
    rms = float(np.sqrt(min(costs) / len(points)))
    yaw, pitch, roll = angles_from_rotation(best)
    return Pose(yaw, pitch, roll, scale=scale, residual=rms / max(eye_mouth, 1e-6))
