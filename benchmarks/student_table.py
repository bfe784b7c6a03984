"""The tables of issue 19 from the report folders `scripts/eval_students.sh` writes.

    python benchmarks/student_table.py fast=runs/issue19/eval/fast dlib=runs/issue19/eval/dlib ...

Each NAME=DIR holds one folder per set (lfw9, lfw9_xpose, celeba_xpose, cacd, fgnet,
bias_gender, utk_gender, utk_race) with its report.json; a missing set prints as "-". All
accuracies are with flip (the commands' default), 10-fold with thresholds from the other folds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def report(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / name / "report.json"
    return json.loads(path.read_text()) if path.is_file() else None


def pct(value: Any) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, int | float) else "-"


def bucket(rep: dict | None, label: str) -> str:
    """Accuracy of one yaw-difference range, with its genuine + impostor counts."""
    if rep is None or "pose" not in rep:
        return "-"
    for b in rep["pose"]["flip"]["buckets"]:
        if b["range"] == label:
            return f"{pct(b['accuracy'])} ({b['genuine']}+{b['impostor']})"
    return "-"


def largest_bucket(rep: dict | None) -> str:
    if rep is None or "pose" not in rep:
        return "-"
    b = rep["pose"]["flip"]["buckets"][-1]
    return f"{b['range']}: {pct(b['accuracy'])} ({b['genuine']}+{b['impostor']})"


def accuracy_row(name: str, folder: Path) -> str:
    lfw, lfw_x, celeba_x = (report(folder, s) for s in ("lfw9", "lfw9_xpose", "celeba_xpose"))
    cacd, fgnet = report(folder, "cacd"), report(folder, "fgnet")
    cells = [
        name,
        pct(lfw["summary"]["accuracy"]) if lfw else "-",
        bucket(lfw, "30-45"),
        bucket(lfw, ">45") if lfw else "-",
        pct(lfw_x["summary"]["accuracy"]) if lfw_x else "-",
        pct(celeba_x["summary"]["accuracy"]) if celeba_x else "-",
        largest_bucket(celeba_x),
        pct(celeba_x["summary"].get("tar_at_far_0.01")) if celeba_x else "-",
        pct(cacd["summary"]["accuracy"]) if cacd else "-",
        pct(fgnet["flip"]["rank1"]) if fgnet else "-",
    ]
    return "| " + " | ".join(cells) + " |"


def bias_cells(rep: dict | None, groups: list[str]) -> list[str]:
    """FMR of each group at the global threshold, and the largest over the smallest."""
    if rep is None:
        return ["-"] * (len(groups) + 1)
    given = {g: rep["groups"][g]["fmr"] for g in groups if g in rep["groups"]}
    fmr = {g: v for g, v in given.items() if isinstance(v, float)}  # else "too few impostor pairs ..."
    ratio = f"{max(fmr.values()) / max(min(fmr.values()), 1e-12):.1f}x" if len(fmr) > 1 else "-"
    return [f"{fmr[g]:.2e}" if g in fmr else str(given.get(g, "-")) for g in groups] + [ratio]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="+", help="NAME=DIR")
    args = p.parse_args()
    models = [(spec.split("=", 1)[0], Path(spec.split("=", 1)[1])) for spec in args.models]
    print(
        "| model | LFW fold 9 | LFW 9, yaw diff 30-45 | LFW 9, >45 | LFW 9 cross-pose | CelebA held-out cross-pose "
        "| its largest yaw-diff range | CelebA cross-pose TAR@FAR 1e-2 | CACD-VS | FG-NET rank-1 |"
    )
    print("|" + "---|" * 10)
    for name, folder in models:
        print(accuracy_row(name, folder))
    races = ["white", "black", "asian", "indian", "others"]
    print("\nFalse-match rate of each group at the global threshold (FMR 1e-3 over all impostor pairs):\n")
    header = ["model", "LFW 9 female", "LFW 9 male", "LFW 9 ratio", "UTK female", "UTK male", "UTK ratio"]
    print("| " + " | ".join(header + [f"UTK {r}" for r in races] + ["UTK race ratio"]) + " |")
    print("|" + "---|" * (len(header) + len(races) + 1))
    for name, folder in models:
        cells = [name, *bias_cells(report(folder, "bias_gender"), ["female", "male"])]
        cells += bias_cells(report(folder, "utk_gender"), ["female", "male"])
        cells += bias_cells(report(folder, "utk_race"), races)
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
