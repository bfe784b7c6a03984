"""Pictures and numbers of the 3-D-aided pose augmentation (facerec.data.pose_augment) on real
aligned LFW crops of the training people (folds 0-8 of people.txt; fold 9 is never shown):

- a grid of `--people` faces, each as stored, turned 15/30/45 degrees away from the camera, and
  turned 30 degrees with an extra light;
- the CPU time of one turn of a 112 crop (process time, so other jobs on the machine count less);
- whether the turned faces look turned to a detector: MTCNN's landmarks on the rendered crops,
  through facerec.align.pose, against the requested turn.

    OMP_NUM_THREADS=1 python benchmarks/pose_augment_examples.py \\
        --tree data/lfw_mtcnn112 --lfw ../shared/data/lfw --out docs/augmentation

The tree needs its pose.tsv (`facerec data pose TREE`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from facerec.align.mtcnn import MTCNN
from facerec.align.pose import estimate_pose
from facerec.align.pose_files import PoseRow, PoseTable, detect_crop_landmarks
from facerec.core.files import write_json
from facerec.core.images import decode_image
from facerec.core.plots import pyplot, save_figure
from facerec.data.lfw import LFWLayout, people_of_folds
from facerec.data.pose_augment import Light, rotate_face

TURNS = (15.0, 30.0, 45.0)


def training_faces(tree: Path, lfw: Path, seed: int) -> list[tuple[Path, PoseRow]]:
    """Every crop of a fold 0-8 person with a pose, shuffled."""
    table = PoseTable.read(tree / "pose.tsv")
    people = people_of_folds(LFWLayout.at(lfw).people_file, list(range(9)))
    faces = []
    for name in sorted(people):
        for path in sorted((tree / name).glob("*.jpg")) if (tree / name).is_dir() else []:
            row = table.get(path)
            if row is not None and row.pose is not None and row.pose.residual < 0.15:
                faces.append((path, row))
    np.random.default_rng(seed).shuffle(faces)
    return faces


def away(row: PoseRow) -> float:
    return 1.0 if row.pose.yaw >= 0 else -1.0


def grid(faces: list[tuple[Path, PoseRow]], out: Path) -> Path:
    light = Light((0.6, -0.4, -0.69), 0.6)
    columns = ["as stored", *(f"{t:g} deg away" for t in TURNS), "30 deg + light"]
    plt = pyplot()
    fig, axes = plt.subplots(len(faces), len(columns), figsize=(1.6 * len(columns), 1.7 * len(faces)))
    for r, (path, row) in enumerate(faces):
        image = decode_image(path)
        turns = [rotate_face(image, row.landmarks, away(row) * t, pose=row.pose).image for t in TURNS]
        lit = rotate_face(image, row.landmarks, away(row) * 30.0, pose=row.pose, light=light).image
        for c, shown in enumerate([image, *turns, lit]):
            ax = axes[r, c]
            ax.imshow(shown)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(f"{path.parent.name[:16]}\nyaw {row.pose.yaw:+.0f}", fontsize=7)
    return save_figure(fig, out, dpi=80)


def speed(faces: list[tuple[Path, PoseRow]]) -> dict[str, float]:
    times = []
    for path, row in tqdm(faces, desc="speed", unit="face"):
        image = decode_image(path)
        start = time.process_time()
        rotate_face(image, row.landmarks, away(row) * 30.0, pose=row.pose)
        times.append(time.process_time() - start)
    ms = np.array(times[1:]) * 1000  # the first call builds the generic head
    return {
        "faces": len(ms),
        "mean_ms": float(ms.mean()),
        "median_ms": float(np.median(ms)),
        "p90_ms": float(np.quantile(ms, 0.9)),
    }


def yaw_follow(faces: list[tuple[Path, PoseRow]]) -> dict[str, object]:
    """MTCNN's yaw of the crop as stored and turned; the change, signed away from the camera."""
    detector = MTCNN(min_face_size=40)
    changes: dict[str, list[float]] = {f"{t:g}": [] for t in TURNS}
    missed = {f"{t:g}": 0 for t in TURNS}
    for path, row in tqdm(faces, desc="MTCNN on turned faces", unit="face"):
        image = decode_image(path)
        found = detect_crop_landmarks(detector, image)
        if found is None:
            continue
        before = estimate_pose(found).yaw
        for t in TURNS:
            turned = rotate_face(image, row.landmarks, away(row) * t, pose=row.pose).image
            marks = detect_crop_landmarks(detector, turned)
            if marks is None:
                missed[f"{t:g}"] += 1
                continue
            changes[f"{t:g}"].append(away(row) * (estimate_pose(marks).yaw - before))
    summary = {
        turn: {
            "faces": len(v),
            "not_detected": missed[turn],
            "mean_change": float(np.mean(v)),
            "median_change": float(np.median(v)),
            "std_change": float(np.std(v)),
            "share_turned_away": float(np.mean(np.array(v) > 0)),
        }
        for turn, v in changes.items()
        if v
    }
    return {"per_turn": summary, "changes": changes}


def plot_follow(result: dict[str, object], out: Path) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    changes = result["changes"]
    ax.boxplot([changes[f"{t:g}"] for t in TURNS], positions=list(TURNS), widths=6)
    ax.plot([0, 50], [0, 50], "k--", lw=0.8, label="requested")
    ax.set_xlim(0, 50)
    ax.set_xlabel("requested turn away from the camera (deg)")
    ax.set_ylabel("yaw change seen by MTCNN + pose.py (deg)")
    ax.legend(loc="upper left")
    ax.grid(True, alpha=0.3)
    return save_figure(fig, out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", type=Path, default=Path("data/lfw_mtcnn112"))
    parser.add_argument("--lfw", type=Path, default=Path("../shared/data/lfw"))
    parser.add_argument("--out", type=Path, default=Path("docs/augmentation"))
    parser.add_argument("--people", type=int, default=8)
    parser.add_argument("--measure", type=int, default=60, help="faces for the speed and MTCNN checks")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    faces = training_faces(args.tree, args.lfw, args.seed)
    shown, seen = [], set()
    for path, row in faces:  # one face per person, a spread of yaws
        if path.parent.name not in seen and len(shown) < args.people and abs(row.pose.yaw) < 10 + 5 * len(shown):
            shown.append((path, row))
            seen.add(path.parent.name)
    args.out.mkdir(parents=True, exist_ok=True)
    grid(shown, args.out / "pose3d_grid.png")
    measured = faces[: args.measure]
    follow = yaw_follow(measured)
    plot_follow(follow, args.out / "pose3d_yaw_follow.png")
    report = {
        "tree": str(args.tree),
        "shown": [str(p.relative_to(args.tree)) for p, _ in shown],
        "speed_112": speed(measured),
        "yaw_follow": follow["per_turn"],
        "machine": "2-core VM, torch " + torch.__version__,
    }
    write_json(args.out / "pose3d_report.json", report)
    print(json.dumps({k: v for k, v in report.items() if k != "shown"}, indent=2))


if __name__ == "__main__":
    main()
