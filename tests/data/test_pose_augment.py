"""3-D-aided pose augmentation: the generic head against the published mean face, the renderer
against the input (no turn) and against where its landmarks must go (turns), the paper's rules
(away from the camera, low-entropy identities only) and the config that switches it on."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from conftest import LFW, needs_lfw, needs_mtcnn
from facerec.align.pose import GENERIC_FACE_5, estimate_pose, project
from facerec.config import Pose3DConfig, load_config
from facerec.data.pose_augment import (
    OPENFACE_68,
    Light,
    PoseAugment,
    generic_head,
    low_entropy_identities,
    pose_augmenter,
    rotate_face,
    sample_rotation,
    surface_depth,
    yaw_entropy,
)
from facerec.errors import ConfigError, DataError

SIZE = 112


def posed_landmarks(yaw: float, pitch: float = 0.0, roll: float = 0.0) -> np.ndarray:
    """The generic face's five landmarks at a pose, laid on a 112 crop about where the ArcFace
    template has them (0.54 px per mm)."""
    return project(GENERIC_FACE_5, yaw, pitch, roll, scale=0.54, shift=(56.0, 74.0))


def textured(seed: int = 0) -> np.ndarray:
    """A smooth random texture (so bilinear reads of it are well defined) on a 112 crop."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (14, 14, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((SIZE, SIZE), Image.BICUBIC))


# ---- the generic head ---------------------------------------------------------------------------
def test_the_head_passes_through_the_published_mean_face():
    # the relief is a thin-plate spline through the 68 points' depths: exact there
    z = surface_depth(OPENFACE_68[:, 0], OPENFACE_68[:, 1])
    np.testing.assert_allclose(z, OPENFACE_68[:, 2], atol=1e-6)
    # the five landmarks pose.py fits: nose and mouth corners are mean-face points; an eye center
    # is the mean of its contour, whose depths the surface interpolates (about 1 mm off)
    five = surface_depth(GENERIC_FACE_5[:, 0], GENERIC_FACE_5[:, 1])
    np.testing.assert_allclose(five[2:], GENERIC_FACE_5[2:, 2], atol=1e-6)
    assert np.abs(five[:2] - GENERIC_FACE_5[:2, 2]).max() < 1.5
    # the nose tip is the nearest point of the face
    head = generic_head(1.8)
    assert head.points[:, 2].min() == pytest.approx(GENERIC_FACE_5[2, 2], abs=2.0)


def test_head_normals_match_finite_differences_of_the_surface():
    head = generic_head(1.8)
    rng = np.random.default_rng(0)
    for i in rng.choice(len(head.points), 40, replace=False):
        x, y, _ = head.points[i].astype(np.float64)
        h = 1e-3
        dzdx = (surface_depth(np.array([x + h]), np.array([y])) - surface_depth(np.array([x - h]), np.array([y]))) / (
            2 * h
        )
        dzdy = (surface_depth(np.array([x]), np.array([y + h])) - surface_depth(np.array([x]), np.array([y - h]))) / (
            2 * h
        )
        expected = np.array([dzdx[0], dzdy[0], -1.0])
        expected /= np.linalg.norm(expected)
        # np.gradient on the sampling grid: a second-order estimate, a few degrees off at most
        # where the skull curves fast
        assert np.degrees(np.arccos(np.clip(expected @ head.normals[i], -1, 1))) < 6.0


# ---- the renderer --------------------------------------------------------------------------------
@pytest.mark.parametrize("yaw", [-25.0, 0.0, 12.0])
def test_no_turn_returns_the_input(yaw):
    image = textured()
    out = rotate_face(image, posed_landmarks(yaw, pitch=4.0, roll=3.0), 0.0, 0.0)
    # within interpolation error: the zero displacement reads every pixel at its own position
    assert np.abs(out.image.astype(int) - image).max() <= 1
    np.testing.assert_allclose(out.landmarks, posed_landmarks(yaw, pitch=4.0, roll=3.0), atol=1e-6)


def test_a_small_turn_changes_little_and_a_large_one_much():
    image = textured(1)
    marks = posed_landmarks(10.0)
    diffs = [np.abs(rotate_face(image, marks, d).image.astype(float) - image).mean() for d in (1.0, 30.0)]
    assert diffs[0] < 4.0 < 4 * diffs[0] < diffs[1]


@pytest.mark.parametrize("start", [-30.0, -8.0, 0.0, 8.0, 30.0])
def test_turned_landmarks_have_the_requested_yaw(start):
    """Pure geometry: the generic face's landmarks, turned by the renderer, give pose.py the yaw
    that was asked for (the re-alignment is a similarity: it changes no angle)."""
    image = textured(2)
    away = 1.0 if start >= 0 else -1.0
    yaws = []
    for extra in (0.0, 10.0, 20.0, 30.0):
        out = rotate_face(image, posed_landmarks(start, pitch=3.0), away * extra, pose=None)
        yaws.append(estimate_pose(out.landmarks).yaw)
        assert yaws[-1] == pytest.approx(start + away * extra, abs=1.0)
    assert np.all(np.diff(np.array(yaws) * away) > 5)  # monotone, away from the camera


def test_painted_dots_move_where_the_landmarks_go():
    """The image path, checked independently of the landmark path: five colored dots painted on
    the landmarks of a face at 10 degrees are found, after a turn, where rotate_face says the
    landmarks went, and pose.py reads the requested yaw off the dots."""
    colors = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255]])
    marks = posed_landmarks(10.0)
    image = np.full((SIZE, SIZE, 3), 128, dtype=np.uint8)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    for (x, y), color in zip(marks, colors, strict=True):
        image[np.hypot(xs - x, ys - y) <= 2.0] = color
    for extra in (15.0, 30.0):
        out = rotate_face(image, marks, extra)
        found = []
        for color in colors:
            close = np.linalg.norm(out.image.astype(float) - color, axis=2) < 60
            assert close.sum() >= 3, "every dot is still seen after turning away from the camera"
            found.append([xs[close].mean(), ys[close].mean()])
        np.testing.assert_allclose(np.array(found), out.landmarks, atol=1.0)
        assert estimate_pose(np.array(found)).yaw == pytest.approx(10.0 + extra, abs=4.0)


def test_light_brightens_the_side_it_comes_from():
    image = np.full((SIZE, SIZE, 3), 120, dtype=np.uint8)
    marks = posed_landmarks(0.0)
    from_right = rotate_face(image, marks, 0.0, light=Light((0.8, 0.0, -0.6), 0.8)).image.astype(float)
    left, right = from_right[60:80, 25:45].mean(), from_right[60:80, 67:87].mean()
    assert right > left + 20
    # no light, no change
    assert np.abs(rotate_face(image, marks, 0.0).image.astype(int) - 120).max() <= 1


def test_bad_input_is_named():
    with pytest.raises(DataError, match="uint8 RGB"):
        rotate_face(np.zeros((SIZE, SIZE), dtype=np.uint8), posed_landmarks(0), 10)
    with pytest.raises(DataError, match="five finite landmarks"):
        rotate_face(textured(), np.zeros((4, 2)), 10)


# ---- the paper's rules -----------------------------------------------------------------------------
def test_rotation_never_turns_towards_the_camera():
    cfg = Pose3DConfig(probability=0.3, yaw=(15.0, 45.0), pitch=5.0, max_yaw=75.0, frontal=5.0)
    rng = np.random.default_rng(0)
    signs_near_frontal = set()
    for yaw in rng.uniform(-70, 70, 2000):
        extra, pitch = sample_rotation(yaw, cfg, rng)
        assert abs(pitch) <= 5.0
        assert abs(yaw + extra) <= 75.0 + 1e-9
        if abs(yaw) >= cfg.frontal:
            assert extra * yaw >= 0 and abs(yaw + extra) >= abs(yaw)  # further away, never back
            assert abs(extra) <= 45.0
            if abs(yaw) <= 75.0 - 45.0:
                assert abs(extra) >= 15.0
        else:
            signs_near_frontal.add(np.sign(extra))
    assert signs_near_frontal == {-1.0, 1.0}


def test_a_turned_face_shows_a_larger_yaw_than_before():
    """Through the training transform: the turned crop's landmarks give pose.py a larger |yaw|."""
    from facerec.align.pose_files import PoseRow

    cfg = Pose3DConfig(probability=0.49, yaw=(15.0, 30.0), pitch=3.0)
    starts = [-35.0, -12.0, 2.0, 20.0]
    rows = [PoseRow(estimate_pose(posed_landmarks(s)), posed_landmarks(s)) for s in starts]
    transform = PoseAugment(cfg, rows, np.ones(len(rows), dtype=bool))
    image = textured(3)
    turned = 0
    for index, start in enumerate(starts):
        for seed in range(6):
            rng = np.random.default_rng(seed)
            if rng.random() >= cfg.probability:
                continue
            extra, pitch = sample_rotation(rows[index].pose.yaw, cfg, rng)
            out = rotate_face(image, rows[index].landmarks, extra, pitch, pose=rows[index].pose)
            assert np.array_equal(transform(image, index, np.random.default_rng(seed)), out.image)
            assert abs(estimate_pose(out.landmarks).yaw) > abs(start) + 10
            turned += 1
    assert turned > 0


def brute_entropy(yaws: list[float], width: float) -> float:
    """Entropy of the yaw histogram, bins [k - 1/2, k + 1/2) * width, counted one by one."""
    counts: dict[int, int] = {}
    for y in yaws:
        k = math.floor(y / width + 0.5)
        counts[k] = counts.get(k, 0) + 1
    total = sum(counts.values())
    return -sum(c / total * math.log(c / total) for c in counts.values())


def test_entropy_rule_selects_the_identities_with_few_poses():
    rng = np.random.default_rng(0)
    frontal = list(rng.uniform(-7, 7, 8))  # one bin (the one around 0): entropy 0
    two_sides = [-20.0, -22.0, 20.0, 18.0]  # two bins, equally: ln 2 = 0.69
    every_pose = [-80.0, -50.0, -20.0, 5.0, 35.0, 65.0]  # six bins: ln 6 = 1.79
    assert brute_entropy([7.4, -7.4, 7.6], 15.0) == pytest.approx(-(2 / 3) * math.log(2 / 3) - math.log(1 / 3) / 3)
    unknown = [np.nan, np.nan]  # no pose at all: nothing to turn
    groups = [frontal, two_sides, every_pose, unknown]
    labels = np.concatenate([[k] * len(g) for k, g in enumerate(groups)])
    yaws = np.concatenate(groups)
    for group in groups[:3]:
        assert yaw_entropy(np.array(group), 15.0) == pytest.approx(brute_entropy(group, 15.0), abs=1e-12)
    assert yaw_entropy(np.array(two_sides), 15.0) == pytest.approx(math.log(2))
    assert low_entropy_identities(labels, yaws, 1.0, 15.0).tolist() == [True, True, False, False]
    assert low_entropy_identities(labels, yaws, 0.5, 15.0).tolist() == [True, False, False, False]
    assert low_entropy_identities(labels, yaws, 2.0, 15.0).tolist() == [True, True, True, False]


# ---- the config and the training transform --------------------------------------------------------
def test_config_switches_it_on_and_rejects_unknown_keys(tmp_path):
    cfg = load_config(
        None,
        [
            "data.augment.pose3d={probability: 0.3, yaw: [15, 45], pitch: 5, light: 0.3, entropy_below: 1.0, "
            "poses: p.tsv}"
        ],
    )
    assert cfg.data.augment.pose3d.yaw == (15.0, 45.0) and cfg.data.augment.pose3d.poses == "p.tsv"
    with pytest.raises(ConfigError, match=r"data\.augment\.pose3d\.angle"):
        load_config(None, ["data.augment.pose3d.angle=30"])
    with pytest.raises(ConfigError, match=r"\[0, 0\.5\)"):
        pose_augmenter(Pose3DConfig(probability=0.6), ["a.png"], np.zeros(1, dtype=int))
    with pytest.raises(ConfigError, match="yaw"):
        pose_augmenter(Pose3DConfig(probability=0.3, yaw=(40.0, 10.0)), ["a.png"], np.zeros(1, dtype=int))
    assert pose_augmenter(Pose3DConfig(), ["a.png"], np.zeros(1, dtype=int)) is None  # off by default
    with pytest.raises(ConfigError, match=r"pose\.tsv"):
        pose_augmenter(Pose3DConfig(probability=0.3), [str(tmp_path / "p" / "a.png")], np.zeros(1, dtype=int))


def test_the_transform_reads_each_images_pose_and_the_entropy_rule(tmp_path):
    tree = tmp_path / "faces"
    lines = ["# path\tyaw\tpitch\troll" + "\tx\ty" * 5]
    paths, labels = [], []
    person_yaws = {"frontal": [0.0, 2.0, -3.0], "many": [-60.0, -30.0, 0.0, 30.0, 60.0]}
    for label, (person, yaws) in enumerate(person_yaws.items()):
        (tree / person).mkdir(parents=True)
        for i, yaw in enumerate(yaws):
            path = tree / person / f"{i}.png"
            Image.fromarray(textured(i)).save(path)
            marks = "\t".join(f"{v:.3f}" for v in posed_landmarks(yaw).ravel())
            lines.append(f"{person}/{i}.png\t{yaw}\t0\t0\t{marks}")
            paths.append(str(path))
            labels.append(label)
    (tree / "pose.tsv").write_text("\n".join(lines) + "\n")
    transform = pose_augmenter(Pose3DConfig(probability=0.4), paths, np.array(labels))  # finds TREE/pose.tsv
    assert transform is not None
    assert transform.eligible.tolist() == [True] * 3 + [False] * 5
    assert [r.pose.yaw for r in transform.rows] == [y for ys in person_yaws.values() for y in ys]
    image = textured(0)
    for seed in range(20):  # an ineligible identity is never turned
        assert transform(image, 5, np.random.default_rng(seed)) is image
    turned = sum(transform(image, 0, np.random.default_rng(s)) is not image for s in range(200))
    assert 0.3 * 200 < turned < 0.5 * 200  # about probability 0.4
    # the poses of 112 crops read for 32 px images: said, not rendered into garbage
    chosen = next(s for s in range(50) if np.random.default_rng(s).random() < 0.4)
    with pytest.raises(DataError, match="another size"):
        transform(textured(0)[:32, :32], 0, np.random.default_rng(chosen))


@needs_lfw
@needs_mtcnn
def test_mtcnn_sees_a_real_face_turned_as_asked():
    """On a real LFW face: MTCNN's landmarks on the rendered crops give pose.py a yaw that grows
    with the requested turn and stays within 10 degrees of it."""
    from facerec.align.mtcnn import MTCNN
    from facerec.align.pipeline import Aligner
    from facerec.align.pose_files import detect_crop_landmarks

    detector = MTCNN(min_face_size=40)
    image = np.asarray(Image.open(LFW / "images" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg").convert("RGB"))
    crop = Aligner(detector).align(image).crop
    marks = detect_crop_landmarks(detector, crop)
    assert marks is not None
    start = estimate_pose(marks).yaw
    away = 1.0 if start >= 0 else -1.0
    seen = []
    for extra in (0.0, 15.0, 30.0):
        out = rotate_face(crop, marks, away * extra)
        found = detect_crop_landmarks(detector, out.image)
        assert found is not None, f"MTCNN finds the face turned by {extra} degrees"
        seen.append(estimate_pose(found).yaw)
        assert seen[-1] == pytest.approx(start + away * extra, abs=10.0)
    assert np.all(np.diff(np.array(seen) * away) > 5)
