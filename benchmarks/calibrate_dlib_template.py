"""Measure where dlib's face chips put the five standard landmarks (the DLIB_150 template).

For each face: dlib's HOG detector and 5-point predictor give dlib's chip transform
(`get_face_chip_details(size=150, padding=0.25)`); the five landmarks of a detector (MTCNN, or
eye centers / nose tip / mouth corners of dlib's 68-point predictor) are mapped into chip
coordinates; the template is their median. The images are the first image of View 1 training
people (`peopleDevTrain.txt`), a random subset with a fixed seed. The chip mapping reproduces
`dlib.get_face_chip` to the pixel (checked here on the first images).

    python benchmarks/calibrate_dlib_template.py --lfw ../shared/data/lfw --detector mtcnn --faces 300
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from facerec.align.dlib_models import dlib_module, five_points_from_68, shape_points, shape_predictor
from facerec.core.geometry import warp_affine


def chip_transform(details) -> np.ndarray:
    """2x3 matrix from image pixels to chip pixels (dlib's get_mapping_to_chip, inverted)."""
    rect, angle = details.rect, details.angle
    center = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    corners = np.array([[rect.left(), rect.top()], [rect.right(), rect.top()], [rect.right(), rect.bottom()]])
    image_pts = (corners - center) @ rot.T + center
    size = details.cols - 1
    chip_pts = np.array([[0, 0], [size, 0], [size, size]], dtype=np.float64)
    to_image = np.linalg.solve(np.hstack([chip_pts, np.ones((3, 1))]), image_pts).T
    return np.linalg.inv(np.vstack([to_image, [0, 0, 1]]))[:2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--lfw", default="../shared/data/lfw")
    p.add_argument("--detector", default="mtcnn", choices=["mtcnn", "dlib68"])
    p.add_argument("--faces", type=int, default=300)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    dlib = dlib_module()
    hog = dlib.get_frontal_face_detector()
    mtcnn = None
    if args.detector == "mtcnn":
        from facerec.align.mtcnn import MTCNN

        mtcnn = MTCNN()
    lfw = Path(args.lfw)
    lines = (lfw / "meta" / "peopleDevTrain.txt").read_text().splitlines()[1:]
    names = [line.split()[0] for line in lines if line.strip()]
    chosen = np.random.default_rng(args.seed).choice(names, min(args.faces, len(names)), replace=False)
    points, checked = [], []
    for name in chosen:
        img = np.asarray(Image.open(lfw / "images" / name / f"{name}_0001.jpg").convert("RGB"))
        rects = hog(img, 1)
        if not rects:
            continue
        rect = max(rects, key=lambda r: r.area())
        details = dlib.get_face_chip_details(shape_predictor(5)(img, rect), size=150, padding=0.25)
        m = chip_transform(details)
        if len(checked) < 5:
            ours = warp_affine(img, m, (150, 150)).astype(float)
            theirs = np.asarray(dlib.extract_image_chip(img, details)).astype(float)
            checked.append(np.abs(ours - theirs).mean())
        if mtcnn is not None:
            faces = mtcnn.detect(img)
            if not faces:
                continue
            center = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
            five = min(faces, key=lambda f: np.linalg.norm(f.center - center)).landmarks
        else:
            five = five_points_from_68(shape_points(shape_predictor(68)(img, rect)))
        points.append(five @ m[:, :2].T + m[:, 2])
    pts = np.array(points)
    print(f"{len(pts)} faces; chip mapping vs dlib's chips: mean abs difference {np.mean(checked):.3f} grey levels")
    # the median: a few faces where the detector found someone else's landmarks must not pull it
    print("template (x, y) per landmark, median:", np.round(np.median(pts, 0), 3).tolist())
    print("mean:", np.round(pts.mean(0), 3).tolist())
    print("median absolute deviation:", np.round(np.median(np.abs(pts - np.median(pts, 0)), 0), 2).tolist())


if __name__ == "__main__":
    main()
