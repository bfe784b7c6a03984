"""Membership inference against the shipped default model, with embeddings and with scores only.

The default model was distilled on the people of LFW people folds 0-8 (docs/model_card.md); the
people of fold 9 never reached it. Members: the people of the View 2 pair images of folds 0-8,
non-members: those of fold 9 (both: people with two or more pair images). The embedding attack
scores each person by the compactness of their images; the black-box attacker sees only the
similarity of the pairs he submits, with a budget of 1, 3 or every pair per person. The control
is the reference model, which saw none of them. AUC with 95% bootstrap intervals; report.json
and membership.png in --out.

    OMP_NUM_THREADS=1 python benchmarks/membership_scores_only.py --lfw ../shared/data/lfw \
        --aligned data/lfw_mtcnn112 --reuse dlib=EMB.npz --out docs/analysis/membership_default
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from facerec.analysis import membership
from facerec.analysis.migration_study import rerooted
from facerec.analysis.options import parse_reuse
from facerec.analysis.studies import DEFAULT_CACHE, Source
from facerec.core.files import write_json

BUDGETS = (1, 3, None)  # pairs per person; None: every pair


def budget_words(budget: int | None) -> str:
    return "every pair" if budget is None else f"{budget} pair{'s' if budget > 1 else ''}"


def pair_scores(emb: np.ndarray):
    """The black box: the similarity of each submitted pair, nothing else."""
    return lambda left, right: (emb[left] * emb[right]).sum(1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lfw", required=True)
    p.add_argument("--aligned", required=True, help="MTCNN-aligned copy of LFW (the default model's input)")
    p.add_argument("--reuse", nargs="*", default=[], help="MODEL=NPZ embeddings to take rows from")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    source = Source(lfw=Path(args.lfw), cache=DEFAULT_CACHE, reuse=parse_reuse(args.reuse))
    images = source.image_set()
    members = set(images.identities[images.folds != 9].tolist())
    models = {
        "default (trained on folds 0-8)": source.embed(rerooted(images, Path(args.aligned)), "default", "none"),
        "dlib (control: saw none)": source.embed(images, "dlib", "mtcnn"),
    }
    report = {"members_from_folds": list(range(9)), "non_members_from_fold": 9, "results": {}}
    for name, emb in models.items():
        rows = {"embeddings": membership.attack(emb, images.identities, members)}
        for budget in BUDGETS:
            rows[f"scores only, {budget_words(budget)} per person"] = membership.scores_only_attack(
                pair_scores(emb), images.identities, members, pairs_per_identity=budget
            )
        report["results"][name] = rows
        for kind, r in rows.items():
            print(f"{name:32s} {kind:34s} AUC {r['auc']:.3f} [{r['auc_ci'][0]:.3f}, {r['auc_ci'][1]:.3f}]")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    panels = {
        f"{name}, {kind}": r
        for name, rows in report["results"].items()
        for kind, r in rows.items()
        if "1 pair " in kind or kind == "embeddings"
    }
    membership.plot(panels, out / "membership.png", "members (folds 0-8) vs non-members (fold 9)")
    for rows in report["results"].values():
        for r in rows.values():
            r.pop("scores")
    write_json(out / "report.json", report)
    print(json.dumps({k: {kk: round(vv["auc"], 3) for kk, vv in v.items()} for k, v in report["results"].items()}))


if __name__ == "__main__":
    main()
