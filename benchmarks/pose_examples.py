"""A strip of aligned crops at chosen yaws, with their estimated yaw, pitch and landmarks: a look
at what the pose of a pose.tsv means on real faces.

    python benchmarks/pose_examples.py data/lfw_mtcnn112 --out docs/pose/lfw_yaw_examples.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from facerec.align.pose_files import POSE_FILE, read_poses
from facerec.core.images import decode_image
from facerec.core.plots import pyplot, save_figure


def nearest(rows: dict, yaw: float) -> str:
    """The image whose yaw is nearest to `yaw` (ties: the first path in sorted order)."""
    posed = sorted((abs(row.pose.yaw - yaw), path) for path, row in rows.items() if row.pose is not None)
    return posed[0][1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree")
    parser.add_argument("--yaws", type=float, nargs="+", default=[-60, -40, -20, 0, 20, 40, 60])
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rows = read_poses(Path(args.tree) / POSE_FILE)
    plt = pyplot()
    fig, axes = plt.subplots(1, len(args.yaws), figsize=(1.6 * len(args.yaws), 2.1))
    for ax, target in zip(np.atleast_1d(axes), args.yaws, strict=True):
        path = nearest(rows, target)
        row = rows[path]
        ax.imshow(decode_image(Path(args.tree) / path))
        ax.scatter(row.landmarks[:, 0], row.landmarks[:, 1], s=6, c="lime")
        ax.set_title(f"yaw {row.pose.yaw:+.0f}, pitch {row.pose.pitch:+.0f}", fontsize=7)
        ax.axis("off")
    fig.suptitle("estimated pose (yaw > 0: nose towards the image's right)", fontsize=8)
    save_figure(fig, args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
