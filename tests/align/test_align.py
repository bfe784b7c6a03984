"""Detection and alignment: geometry against exact answers, detectors on real LFW faces."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import LFW, needs_dlib, needs_lfw, needs_mtcnn
from facerec.align.nms import nms
from facerec.align.pipeline import Aligner, AlignPolicy, NoFaceError, align_tree, centered_landmarks, choose_face
from facerec.align.types import Face
from facerec.core.geometry import ARCFACE_112, align_face, umeyama, warp_affine


def brute_force_nms(boxes, scores, threshold):
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    keep = []
    for i in order:
        ok = True
        for j in keep:
            x1, y1 = max(boxes[i][0], boxes[j][0]), max(boxes[i][1], boxes[j][1])
            x2, y2 = min(boxes[i][2], boxes[j][2]), min(boxes[i][3], boxes[j][3])
            inter = max(0, x2 - x1 + 1) * max(0, y2 - y1 + 1)
            a = (boxes[i][2] - boxes[i][0] + 1) * (boxes[i][3] - boxes[i][1] + 1)
            b = (boxes[j][2] - boxes[j][0] + 1) * (boxes[j][3] - boxes[j][1] + 1)
            if inter / (a + b - inter) > threshold:
                ok = False
        if ok:
            keep.append(i)
    return keep


def test_nms_matches_brute_force():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (60, 2))
    wh = rng.uniform(5, 30, (60, 2))
    boxes = np.hstack([xy, xy + wh])
    scores = rng.random(60)
    got = nms(torch.tensor(boxes), torch.tensor(scores), 0.4).tolist()
    assert got == brute_force_nms(boxes.tolist(), scores.tolist(), 0.4)


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rot = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    dst = scale * src @ rot.T + shift
    m = umeyama(src, dst)
    np.testing.assert_allclose(m[:, :2], scale * rot, atol=1e-10)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-9)


def test_umeyama_never_reflects():
    src = np.array([[0.0, 0], [1, 0], [0, 1]])
    mirrored = src * np.array([-1, 1])
    m = umeyama(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0


def test_warp_puts_a_landmark_on_its_template_position():
    """A bright pixel at each landmark lands (centroid) where the transform sends it: checks the
    half-pixel convention of the warp, not just the matrix."""
    img = np.zeros((200, 200, 3), dtype=np.uint8)
    marks = (ARCFACE_112 * 1.3 + np.array([30.0, 20.0])).round()
    for x, y in marks.astype(int):
        img[y, x] = 255
    matrix = umeyama(marks, ARCFACE_112)
    crop = align_face(img, marks)[..., 0].astype(float)
    assert crop.shape == (112, 112)
    for mark in marks:
        ex, ey = matrix[:, :2] @ mark + matrix[:, 2]
        r, c = round(float(ey)), round(float(ex))
        win = crop[r - 3 : r + 4, c - 3 : c + 4]
        rows, cols = np.mgrid[r - 3 : r + 4, c - 3 : c + 4]
        cy, cx = (win * rows).sum() / win.sum(), (win * cols).sum() / win.sum()
        assert abs(cx - ex) < 0.35 and abs(cy - ey) < 0.35


def test_warp_uses_pixel_center_coordinates():
    img = np.zeros((40, 40, 3), dtype=np.uint8)
    img[20, 20] = 255
    moved = warp_affine(img, np.array([[1.0, 0, 3], [0, 1, 5]]), (40, 40))[..., 0]
    assert moved[25, 23] == 255 and moved.sum() == 255
    halved = warp_affine(img, np.array([[0.5, 0, 0], [0, 0.5, 0]]), (40, 40))[..., 0].astype(float)
    rows, cols = np.mgrid[:40, :40]
    # pixel 20 -> 10 exactly; a half-pixel convention slip would put it at 10.25
    assert (halved * rows).sum() / halved.sum() == pytest.approx(10.0)
    assert (halved * cols).sum() / halved.sum() == pytest.approx(10.0)


def test_shrinking_warp_is_low_pass_filtered():
    """One-pixel stripes shrunk 4x average to grey; point sampling would give all-black or all-white."""
    img = np.zeros((160, 160, 3), dtype=np.uint8)
    img[:, ::2] = 255
    out = warp_affine(img, np.array([[0.25, 0, 0], [0, 0.25, 0]]), (40, 40))[2:-2, 2:-2].astype(float)
    assert abs(out.mean() - 127.5) < 3 and out.std() < 3


def test_warp_identity_is_exact():
    img = (np.random.default_rng(0).random((20, 30, 3)) * 255).astype(np.uint8)
    out = warp_affine(img, np.array([[1.0, 0, 0], [0, 1, 0]]), (30, 20))
    assert np.array_equal(out, img)


def face(x1, y1, x2, y2, score=0.9):
    return Face(np.array([x1, y1, x2, y2], float), score, np.zeros((5, 2)))


def test_choose_face_policies():
    faces = [face(0, 0, 40, 40, 0.99), face(80, 80, 120, 120, 0.8), face(150, 150, 199, 199, 0.9)]
    shape = (200, 200, 3)
    assert choose_face(faces, shape, "central") is faces[1]
    assert choose_face(faces, shape, "largest") is faces[2]
    assert choose_face(faces, shape, "best") is faces[0]
    with pytest.raises(Exception, match="several-faces policy"):
        AlignPolicy(several="random")


class NoFace:
    def detect(self, image):
        return []


def test_missing_face_policy():
    img = np.zeros((100, 100, 3), dtype=np.uint8)
    with pytest.raises(NoFaceError):
        Aligner(NoFace(), policy=AlignPolicy(missing="skip")).align(img)
    result = Aligner(NoFace(), policy=AlignPolicy(missing="center")).align(img)
    assert result.face is None and result.crop.shape == (112, 112, 3)
    marks = centered_landmarks((100, 100, 3), ARCFACE_112, (112, 112), 0.5)
    assert np.allclose(marks.mean(0), 25 + ARCFACE_112.mean(0) * 50 / 112)


def lfw_image(name: str, number: int = 1) -> np.ndarray:
    return np.asarray(Image.open(LFW / "images" / name / f"{name}_{number:04d}.jpg").convert("RGB"))


@needs_lfw
@needs_mtcnn
def test_mtcnn_finds_the_face_and_landmarks_on_lfw():
    from facerec.align.mtcnn import MTCNN

    faces = MTCNN().detect(lfw_image("Aaron_Eckhart"))
    assert faces and faces[0].score > 0.95
    best = choose_face(faces, (250, 250, 3), "central")
    lm = best.landmarks
    assert 90 < best.center[0] < 160 and 90 < best.center[1] < 160  # LFW faces are centered
    assert lm[0, 0] < lm[2, 0] < lm[1, 0]  # nose between the eyes
    assert lm[0, 1] < lm[2, 1] < lm[3, 1]  # eyes above nose above mouth
    assert 25 < lm[1, 0] - lm[0, 0] < 70  # plausible eye distance


@needs_mtcnn
def test_mtcnn_finds_nothing_in_noise():
    from facerec.align.mtcnn import MTCNN

    noise = (np.random.default_rng(0).random((120, 120, 3)) * 40).astype(np.uint8)
    assert MTCNN().detect(noise) == []


@needs_lfw
@needs_dlib
def test_dlib_template_reproduces_dlib_chips():
    """Aligning the 68-point-derived five points onto DLIB_150 gives nearly dlib's own chip."""
    import dlib

    from facerec.align.dlib_models import DlibHOG, five_points_from_68, shape_points, shape_predictor
    from facerec.models.reference import DLIB_150

    img = lfw_image("Aaron_Peirsol")
    rect = DlibHOG().detector(img, 1)[0]
    five = five_points_from_68(shape_points(shape_predictor(68)(img, rect)))
    ours = align_face(img, five, DLIB_150, (150, 150)).astype(float)
    theirs = np.asarray(dlib.get_face_chip(img, shape_predictor(5)(img, rect), size=150, padding=0.25)).astype(float)
    assert np.abs(ours - theirs).mean() < 12


@needs_lfw
@needs_mtcnn
def test_align_tree_resumes_and_logs_failures(tmp_path):
    src = tmp_path / "src"
    for name in ("Aaron_Eckhart", "Aaron_Guiel"):
        (src / name).mkdir(parents=True)
        Image.fromarray(lfw_image(name)).save(src / name / f"{name}_0001.jpg")
    (src / "Nobody").mkdir()
    Image.fromarray(np.zeros((80, 80, 3), dtype=np.uint8)).save(src / "Nobody" / "blank.png")
    (src / "Nobody" / "corrupt.jpg").write_bytes(b"\xff\xd8 broken")
    summary = align_tree(src, tmp_path / "dst", "mtcnn", workers=2, progress=False)
    assert summary["aligned"] == 2 and summary["failed"] == 2
    failures = (tmp_path / "dst" / "failures.tsv").read_text()
    assert "no face detected" in failures and "cannot decode" in failures
    crop = np.asarray(Image.open(tmp_path / "dst" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"))
    assert crop.shape == (112, 112, 3)
    again = align_tree(src, tmp_path / "dst", "mtcnn", workers=1, progress=False)
    assert again["already_done"] == 2 and again["aligned"] == 0
