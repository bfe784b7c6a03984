"""Head pose from landmarks: recovery of known poses from synthetic projections of the generic
face, the documented sign conventions checked on hand-made landmark moves, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from facerec.align.pose import (
    GENERIC_FACE_5,
    IBUG68_TO_5,
    Pose,
    angles_from_rotation,
    estimate_pose,
    project,
    rotation_matrix,
)
from facerec.errors import DataError


def frontal(scale: float = 1.0) -> np.ndarray:
    """The generic face seen frontally, centred at (56, 60), by hand (no project())."""
    return scale * GENERIC_FACE_5[:, :2] + np.array([56.0, 60.0])


@pytest.mark.parametrize("pitch", [-20.0, 0.0, 20.0])
def test_recovers_known_yaw_and_pitch_with_noise(pitch):
    rng = np.random.default_rng(int(pitch) + 100)
    for yaw in np.arange(-60.0, 61.0, 10.0):
        roll = rng.uniform(-15, 15)
        scale = rng.uniform(0.4, 2.0)
        # noise of 1% of the interocular distance, as a good landmark detector gives
        points = project(GENERIC_FACE_5, yaw, pitch, roll, scale=scale, shift=(60.0, 70.0))
        points += rng.normal(0.0, 0.01 * 65.7 * scale, points.shape)
        pose = estimate_pose(points)
        assert abs(pose.yaw - yaw) < 4.0, (yaw, pitch, pose)
        assert abs(pose.pitch - pitch) < 4.0, (yaw, pitch, pose)
        assert abs(pose.roll - roll) < 4.0, (yaw, pitch, pose)
        assert pose.scale == pytest.approx(scale, rel=0.05)


def test_exact_projection_is_recovered_exactly():
    points = project(GENERIC_FACE_5, 37.0, -12.0, 8.0, scale=1.3, shift=(10.0, -4.0))
    pose = estimate_pose(points)
    assert (pose.yaw, pose.pitch, pose.roll) == pytest.approx((37.0, -12.0, 8.0), abs=1e-3)
    assert pose.residual < 1e-6


def test_project_matches_a_hand_written_rotation():
    # yaw about the vertical (y) axis alone: x' = x cos(t) - z sin(t) with t = yaw (nose, z < 0,
    # moves to +x for yaw > 0)
    t = np.radians(30.0)
    x, y, z = GENERIC_FACE_5.T
    expected = np.stack([x * np.cos(t) - z * np.sin(t), y], axis=1)
    assert project(GENERIC_FACE_5, 30.0, 0.0, 0.0) == pytest.approx(expected)


def test_yaw_sign_nose_towards_image_right_is_positive():
    points = frontal()
    assert abs(estimate_pose(points).yaw) < 3.0
    moved = points.copy()
    moved[2, 0] += 15.0  # nose tip towards the image's right
    assert estimate_pose(moved).yaw > 10.0
    moved[2, 0] -= 30.0
    assert estimate_pose(moved).yaw < -10.0
    # and from the 3-D side: a positive yaw sends the nose direction (0, 0, -1) to +x
    assert (rotation_matrix(20.0, 0.0, 0.0) @ np.array([0.0, 0.0, -1.0]))[0] > 0


def test_pitch_sign_nose_up_is_positive():
    points = frontal()
    moved = points.copy()
    moved[2, 1] -= 12.0  # nose tip towards the top of the image (y down)
    assert estimate_pose(moved).pitch > 8.0
    moved[2, 1] += 24.0
    assert estimate_pose(moved).pitch < -8.0


def test_roll_sign_clockwise_in_the_image_is_positive():
    angle = np.radians(20.0)
    # with y pointing down, this matrix turns the picture clockwise on screen
    turn = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = frontal() @ turn.T
    pose = estimate_pose(points)
    assert pose.roll == pytest.approx(20.0, abs=1.0)
    assert points[1, 1] > points[0, 1]  # the eye on the image's right is lower, as documented


def test_mirror_negates_yaw_and_roll_keeps_pitch():
    points = project(GENERIC_FACE_5, 35.0, 10.0, 5.0, scale=1.0)
    pose = estimate_pose(points)
    mirrored = points * np.array([-1.0, 1.0])
    mirrored = mirrored[[1, 0, 2, 4, 3]]  # left/right labels swap in the mirror image
    mirror_pose = estimate_pose(mirrored)
    # the generic face is nearly but not exactly symmetric: a degree or two of slack
    assert mirror_pose.yaw == pytest.approx(-pose.yaw, abs=2.5)
    assert mirror_pose.pitch == pytest.approx(pose.pitch, abs=2.5)
    assert mirror_pose.roll == pytest.approx(-pose.roll, abs=2.5)


def test_angles_round_trip_through_the_rotation():
    rng = np.random.default_rng(3)
    for yaw, pitch, roll in rng.uniform([-80, -60, -90], [80, 60, 90], size=(50, 3)):
        r = rotation_matrix(yaw, pitch, roll)
        assert r @ r.T == pytest.approx(np.eye(3), abs=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)
        assert angles_from_rotation(r) == pytest.approx((yaw, pitch, roll), abs=1e-9)


def test_68_point_input_uses_the_ibug_five():
    rng = np.random.default_rng(4)
    five = project(GENERIC_FACE_5, -25.0, 5.0, 0.0, scale=1.5, shift=(80.0, 90.0))
    points68 = rng.uniform(0, 160, size=(68, 2))
    for target, idx in zip(five, IBUG68_TO_5, strict=True):
        offsets = rng.normal(0, 3.0, size=(len(idx), 2))
        points68[list(idx)] = target + offsets - offsets.mean(0)  # the mean is the target
    assert isinstance(estimate_pose(points68), Pose)
    assert estimate_pose(points68).yaw == pytest.approx(estimate_pose(five).yaw, abs=1e-6)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((4, 2)), "5 or 68 landmarks"),
        (np.zeros(10), "5 or 68 landmarks"),
        (np.full((5, 2), np.nan), "finite"),
        (np.ones((5, 2)), "not all at one point"),
    ],
)
def test_bad_landmarks_give_a_data_error(bad, message):
    with pytest.raises(DataError, match=message):
        estimate_pose(bad)
