"""A Markdown table of `facerec eval` reports (report.json in each given folder), one row each.

python benchmarks/lfw_table.py runs/resolution_*/lfw_36 runs/resolution_*/lfw_hr
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def row(folder: Path) -> str:
    report = json.loads((folder / "report.json").read_text())
    r = report["flip"]
    tar = r["tar_at_far"].get("0.01")
    tar_text = f"{100 * tar:.1f}%" if isinstance(tar, float) else "-"
    return (
        f"| {folder.parent.name} | {folder.name} | {report['pipeline']} | {r['pairs']} | "
        f"{100 * r['kfold_accuracy']:.2f}% +- {100 * r['kfold_std']:.2f}% | {r['auc']:.4f} | "
        f"{100 * r['eer']:.2f}% | {tar_text} |"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", type=Path, help="eval output folders holding report.json")
    args = p.parse_args()
    print("| run | eval | pipeline | pairs | accuracy (flip, k-fold) | AUC | EER | TAR@FAR=1% |")
    print("|---|---|---|---|---|---|---|---|")
    for folder in args.folders:
        print(row(folder))


if __name__ == "__main__":
    main()
