"""FaceLeaks' open question on our data: a model trained on people A and then fine-tuned on other
people B - does it still tell who was in A, to an attacker with embeddings, and to one who only
sees similarity scores?

Five models from one recipe, every one trained by the one training loop (`facerec.train`):
model_A on A from scratch; three fine-tunings of model_A on B (every weight; the backbone's
output layer and the new head; the new head alone) and a control trained on B alone, which
never saw A. Each is attacked with the same member (A) and non-member (N, people no model
trained on) images: intra-identity compactness from embeddings and from queried pair scores
(`facerec.analysis.membership`), AUC with bootstrap intervals over people.
"""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from facerec.analysis import membership
from facerec.analysis.common import ImageSet, embed, folder_images
from facerec.config import Config, from_dict, load_config
from facerec.core.files import write_json, write_text
from facerec.core.images import images_in, require_folder
from facerec.data.lfw import link_people, people_of_folds
from facerec.errors import ConfigError, DataError, TrainingError
from facerec.models.io import read_model_file
from facerec.pipeline import RecognitionPipeline
from facerec.train import Trainer
from facerec.train.logger import read_metrics

log = logging.getLogger(__name__)

RECIPE = "transfer_leakage_irse8"
# Fine-tuning as transfer learning does it: a tenth of the rate for what was trained, the new
# head (random, for B's classes) at the full rate, no warm-up; about a quarter of model_A's epochs.
FINETUNE_DEFAULTS = ("train.epochs=4", "optim.lr=0.01", "optim.head_lr_scale=10", "schedule.warmup_steps=0")


@dataclass(frozen=True)
class FineTuning:
    """Which parameters of model_A + a new head train on B (`train.freeze` / `train.unfreeze`)."""

    trains: str
    freeze: tuple[str, ...] = ()
    unfreeze: tuple[str, ...] = ()


FINE_TUNINGS: dict[str, FineTuning] = {
    "full": FineTuning("every weight"),
    "output": FineTuning(
        "backbone.output.* (BN, FC, BN to the embedding) and the new head", ("backbone",), ("backbone.output",)
    ),
    "head": FineTuning("the new head only (backbone frozen: model_A's embeddings)", ("backbone",)),
}


@dataclass(frozen=True)
class PeopleSets:
    """Three disjoint sets of people: A (model_A's training people, the attack's members), B
    (the fine-tuning and control people) and N (the attack's non-members, never trained on)."""

    members: frozenset[str]
    finetune: frozenset[str]
    non_members: frozenset[str]
    source: str = ""  # how they were chosen, for the report

    def __post_init__(self) -> None:
        sets = {"members (A)": self.members, "fine-tuning (B)": self.finetune, "non-members (N)": self.non_members}
        for name, people in sets.items():
            if not people:
                raise DataError(f"the {name} set of people is empty")
        names = list(sets)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                shared = sets[a] & sets[b]
                if shared:
                    raise DataError(f"{a} and {b} share {len(shared)} people (e.g. {sorted(shared)[0]})")

    @classmethod
    def from_lfw_folds(
        cls, people_file: Path, members: list[int], finetune: list[int], non_members: list[int]
    ) -> PeopleSets:
        """The people of LFW View 2 people folds (identity-disjoint by construction)."""
        folds = {"members": members, "fine-tuning": finetune, "non-members": non_members}
        for i, (a, fa) in enumerate(folds.items()):
            for b, fb in list(folds.items())[i + 1 :]:
                if set(fa) & set(fb):
                    raise DataError(f"LFW people folds of {a} {fa} and {b} {fb} overlap")
        chosen = {k: frozenset(people_of_folds(people_file, v)) for k, v in folds.items()}
        words = f"LFW people folds: A {members}, B {finetune}, N {non_members}"
        return cls(chosen["members"], chosen["fine-tuning"], chosen["non-members"], words)


@dataclass
class TransferLeakagePlan:
    images: Path  # aligned identity tree holding every person's crops
    people: PeopleSets
    work: Path  # training trees (links), runs, embedding cache
    out: Path  # report.json, table.md, transfer_leakage.png
    recipe: str = RECIPE  # the training config of every model
    overrides: list[str] = field(default_factory=list)  # `--set` for every run
    finetune_overrides: list[str] = field(default_factory=list)  # after FINETUNE_DEFAULTS, fine-tunings only
    kinds: tuple[str, ...] = tuple(FINE_TUNINGS)
    min_images: int = 2  # per person, in every set (compactness needs two)
    budgets: tuple[int, ...] = (1, 3)  # pairs per person the scores-only attacker asks
    n_boot: int = 1000
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in FINE_TUNINGS]
        if unknown:
            raise ConfigError(f"unknown fine-tuning {unknown[0]!r}: choose among {', '.join(FINE_TUNINGS)}")
        if self.min_images < 2:
            raise ConfigError(f"min_images must be at least 2 (compactness needs two images), got {self.min_images}")
        if any(b < 1 for b in self.budgets):
            raise ConfigError(f"pairs per person must be positive, got {list(self.budgets)}")


# ---- the people as trees of links ---------------------------------------------------------------
def people_tree(images: Path, people: frozenset[str], tree: Path, min_images: int) -> list[str]:
    """tree/<person> links to images/<person> for the people with `min_images` crops; an existing
    tree must hold exactly those people (a work folder of another split is refused)."""
    wanted = sorted(p for p in people if (images / p).is_dir() and len(images_in(images / p)) >= min_images)
    if not wanted:
        raise DataError(f"none of {len(people)} people has {min_images}+ images under {images}")
    if tree.exists():
        present = sorted(p.name for p in tree.iterdir())
        if present != wanted:
            raise DataError(f"{tree} holds another set of people: remove it or give another work folder")
        return wanted
    link_people(images, tree, dict.fromkeys(wanted, 0), min_images)
    return wanted


# ---- training --------------------------------------------------------------------------------------
@dataclass
class TrainedModel:
    path: Path  # model.pt
    steps: int
    fit_accuracy: float | None  # top-1 of its own clean training images against its head's centers
    trained: list[str]  # names of the parameters that trained
    seconds: float
    images: int  # training images
    classes: int


def run_config(plan: TransferLeakagePlan, name: str, root: Path, extra: list[str]) -> Config:
    """The recipe, the user's overrides, `extra`, then what the study fixes: the data (every
    person of the tree trains: no held-out identities, no extra trees) and the run folder."""
    fixed = [
        "data.source=folder",
        f"data.root={root}",
        "data.val_identities=0",
        "data.extra_roots=[]",
        f"train.output_dir={plan.work / 'runs' / name}",
        f"train.device={plan.device}",
    ]
    return load_config(plan.recipe, [*plan.overrides, *extra, *fixed])


def finetune_extra(plan: TransferLeakagePlan, kind: str, model_a: Path) -> list[str]:
    tuning = FINE_TUNINGS[kind]
    return [
        *FINETUNE_DEFAULTS,
        *plan.finetune_overrides,
        f"train.init_from={model_a}",
        "train.init_head=false",  # B's classes get a new head
        f"train.freeze=[{', '.join(tuning.freeze)}]",
        f"train.unfreeze=[{', '.join(tuning.unfreeze)}]",
    ]


def train_model(cfg: Config) -> TrainedModel:
    """Train (or finish, or take the finished run of the same config from its folder)."""
    out = Path(cfg.train.output_dir)
    trainer = Trainer(cfg)
    results = trainer.fit(resume=same_run(out, cfg))
    trained = [n for n, p in trainer.net.named_parameters() if p.requires_grad]
    data = trainer.train_set
    seconds = training_seconds(out / "metrics.jsonl", cfg.data.batch_size)
    return TrainedModel(
        out / "model.pt", results["step"], fit_accuracy(trainer), trained, seconds, len(data), data.num_classes
    )


def training_seconds(metrics: Path, batch_size: int) -> float:
    """The time the steps took, from the run's log (each record: the images/s of the steps since
    the record before), so a finished run taken again still reports its training time."""
    seconds, last = 0.0, 0
    for record in read_metrics(metrics):
        if record.get("images_per_s"):
            seconds += (record["step"] - last) * batch_size / record["images_per_s"]
            last = record["step"]
    return seconds


def same_run(out: Path, cfg: Config) -> bool:
    """True when `out` holds a run of this very config (resume it); an error when another one."""
    saved = out / "config.yaml"
    if not saved.is_file():
        return False
    if from_dict(yaml.safe_load(saved.read_text()), stored=True).to_dict() != cfg.to_dict():
        raise TrainingError(f"{out} holds a run of another config: remove it or give another work folder")
    return True


def fit_accuracy(trainer: Trainer) -> float | None:
    """How well the model fits its training people: the share of its training images (plain,
    not augmented) whose nearest class center of the head (cosine) is their own person."""
    weight = getattr(trainer.net["head"], "weight", None)
    if weight is None:  # a head without class centers (metric losses)
        return None
    data = trainer.train_set.base  # the images without augmentation
    backbone = trainer.cfg.backbone
    pipeline = RecognitionPipeline.for_network(
        trainer.net["backbone"], backbone.input_size, device=trainer.device, flip=False, framing=backbone.template
    )
    emb = pipeline.embed_dataset(data)
    centers = torch.nn.functional.normalize(weight.detach().float().cpu(), dim=1).numpy()
    return float(np.mean((emb @ centers.T).argmax(1) == np.asarray(data.labels)))


def changed_tensors(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> list[str]:
    """Names of the state tensors (parameters and buffers) that differ between two state dicts."""
    return sorted(k for k in before if not torch.equal(before[k], after[k]))


def check_frozen(kind: str, model_a: Path, tuned: TrainedModel) -> list[str]:
    """The backbone tensors the fine-tuning changed; an error when one belongs to a frozen module
    (a frozen BatchNorm must keep its statistics too), or when a part meant to train does not."""
    trained_modules = {
        n.removeprefix("backbone.").rpartition(".")[0] for n in tuned.trained if n.startswith("backbone.")
    }
    changed = changed_tensors(read_model_file(model_a).backbone, read_model_file(tuned.path).backbone)
    leaked = [k for k in changed if k.rpartition(".")[0] not in trained_modules]
    if leaked:
        raise TrainingError(f"fine-tuning '{kind}' changed frozen tensors, e.g. {leaked[0]}")
    if FINE_TUNINGS[kind].unfreeze and not trained_modules:
        raise ConfigError(f"fine-tuning '{kind}': the backbone has no part {FINE_TUNINGS[kind].unfreeze} to train")
    return changed


# ---- the attacks -----------------------------------------------------------------------------------
def pair_oracle(emb: np.ndarray) -> membership.PairScores:
    """The black box of the scores-only attacker: the similarity of each pair he submits."""
    return lambda left, right: (emb[left] * emb[right]).sum(1)


def attack_kinds(budgets: tuple[int, ...]) -> list[str]:
    return ["embeddings", *(f"scores only, {b} pair{'s' if b > 1 else ''} per person" for b in budgets)]


def identity_scores(emb: np.ndarray, identities: np.ndarray, plan: TransferLeakagePlan) -> dict[str, dict[str, float]]:
    """Each attack's score of every person: the compactness of their images, from the embeddings
    or from the pairs the scores-only attacker asks (the same pair draws for every model)."""
    kinds = attack_kinds(plan.budgets)
    scores = {kinds[0]: membership.compactness(emb, identities)}
    for kind, budget in zip(kinds[1:], plan.budgets, strict=True):
        scores[kind] = membership.scores_only_compactness(pair_oracle(emb), identities, budget, plan.seed)
    return scores


def attacks(scores: dict[str, dict[str, float]], members: set[str], plan: TransferLeakagePlan) -> dict[str, Any]:
    """Members against non-members, per attack: AUC with its bootstrap interval over people."""
    found = {kind: membership.attack_on_scores(s, members, plan.n_boot, plan.seed) for kind, s in scores.items()}
    return {kind: {k: v for k, v in r.items() if k != "scores"} for kind, r in found.items()}


def paired_auc_difference(
    a: dict[str, float], b: dict[str, float], members: set[str], n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, Any]:
    """AUC(a) - AUC(b) for the same people scored by two models, with a paired bootstrap interval:
    each resample draws the people (members and non-members apart) once, for both models."""
    if a.keys() != b.keys():
        raise DataError("a paired comparison needs the same people scored by both models")
    pos = sorted(k for k in a if k in members)
    neg = sorted(k for k in a if k not in members)
    pa, na, pb, nb = (np.array([s[k] for k in people]) for s, people in ((a, pos), (a, neg), (b, pos), (b, neg)))
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        i, j = rng.integers(len(pos), size=len(pos)), rng.integers(len(neg), size=len(neg))
        diffs.append(membership.auc(pa[i], na[j]) - membership.auc(pb[i], nb[j]))
    q = (1 - level) / 2
    value = membership.auc(pa, na) - membership.auc(pb, nb)
    return {"difference": value, "ci": [float(np.quantile(diffs, q)), float(np.quantile(diffs, 1 - q))]}


REFERENCES = ("model_A", "control")  # what each model's AUC is compared with


def differences(
    scores: dict[str, dict[str, dict[str, float]]], members: set[str], plan: TransferLeakagePlan
) -> dict[str, dict[str, dict[str, Any]]]:
    """{model: {'vs model_A' / 'vs control': {attack: difference}}} for the fine-tunings and the
    references against each other."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for name, by_kind in scores.items():
        for ref in REFERENCES:
            # the references once against each other (model_A minus control), not back again
            if ref not in scores or (name in REFERENCES and REFERENCES.index(ref) <= REFERENCES.index(name)):
                continue
            out.setdefault(name, {})[f"vs {ref}"] = {
                kind: paired_auc_difference(s, scores[ref][kind], members, plan.n_boot, plan.seed)
                for kind, s in by_kind.items()
            }
    return out


# ---- the study -------------------------------------------------------------------------------------
MODEL_TITLES = {
    "model_A": "model_A (A, from scratch)",
    "full": "A, then B: full",
    "output": "A, then B: output layer + head",
    "head": "A, then B: head only",
    "control": "control (B only)",
}


def run_study(plan: TransferLeakagePlan) -> dict[str, Any]:
    """Train the five models, attack each, and write report.json, table.md and the plot."""
    start = time.perf_counter()
    require_folder(plan.images, "aligned identity tree")
    trees = plan.work / "trees"
    members = people_tree(plan.images, plan.people.members, trees / "members", plan.min_images)
    finetune = people_tree(plan.images, plan.people.finetune, trees / "finetune", plan.min_images)
    non_members = people_tree(plan.images, plan.people.non_members, trees / "non_members", plan.min_images)
    models = train_models(plan, trees)
    images = attack_images(trees)
    report = {
        "question": "membership of A after fine-tuning on B, from embeddings and from pair scores only",
        "people": {
            "source": plan.people.source,
            "min_images": plan.min_images,
            "members_A": len(members),
            "finetune_B": len(finetune),
            "non_members_N": len(non_members),
            "attack_images": len(images),
        },
        "recipe": plan.recipe,
        "overrides": plan.overrides,
        "finetune_overrides": [*FINETUNE_DEFAULTS, *plan.finetune_overrides],
        "fine_tunings": {k: FINE_TUNINGS[k].trains for k in plan.kinds},
        "bootstrap": {"resamples": plan.n_boot, "level": 0.95, "over": "people, within members and non-members"},
        "models": {},
    }
    scores = {}
    for name, entry in models.items():
        log.info("membership attacks on %s", name)
        emb = embed(images, str(entry["model"]), "none", plan.work / "embeddings", device=plan.device)
        scores[name] = identity_scores(emb, images.identities, plan)
        entry["attacks"] = attacks(scores[name], set(members), plan)
        report["models"][name] = entry
    for name, found in differences(scores, set(members), plan).items():
        report["models"][name]["auc_difference"] = found
    report["seconds"] = round(time.perf_counter() - start, 1)  # this invocation's (finished runs are taken again)
    report["train_seconds"] = round(sum(m["train_seconds"] for m in report["models"].values()), 1)
    report["torch"] = torch.__version__
    report["command"] = "facerec " + " ".join(sys.argv[1:]) if sys.argv and "facerec" in sys.argv[0] else None
    plan.out.mkdir(parents=True, exist_ok=True)
    plot(report, plan.out / "transfer_leakage.png")
    write_text(plan.out / "table.md", table(report))
    write_json(plan.out / "report.json", report)
    return report


def attack_images(trees: Path) -> ImageSet:
    """Every image of the members and of the non-members: the same for every model."""
    a, b = folder_images(trees / "members"), folder_images(trees / "non_members")
    return ImageSet([*a.paths, *b.paths], np.concatenate([a.identities, b.identities]))


def train_models(plan: TransferLeakagePlan, trees: Path) -> dict[str, dict[str, Any]]:
    """model_A, its fine-tunings on B, the control: each one's file, fit and trained parts."""
    entries = {}
    model_a = train_model(run_config(plan, "model_A", trees / "members", []))
    entries["model_A"] = describe(model_a, "A", "every weight, from scratch")
    for kind in plan.kinds:
        cfg = run_config(plan, f"finetune_{kind}", trees / "finetune", finetune_extra(plan, kind, model_a.path))
        log.info("fine-tuning model_A on B: %s", FINE_TUNINGS[kind].trains)
        tuned = train_model(cfg)
        entries[kind] = describe(tuned, "A, then B", FINE_TUNINGS[kind].trains)
        changed = check_frozen(kind, model_a.path, tuned)
        entries[kind]["changed_backbone_tensors"] = len(changed)
        if kind != "full":
            entries[kind]["trained_parameters"] = tuned.trained
    control = train_model(run_config(plan, "control", trees / "finetune", []))
    entries["control"] = describe(control, "B", "every weight, from scratch (never saw A)")
    return entries


def describe(model: TrainedModel, trained_on: str, trains: str) -> dict[str, Any]:
    return {
        "trained_on": trained_on,
        "trains": trains,
        "model": str(model.path),
        "steps": model.steps,
        "training_images": model.images,
        "classes": model.classes,
        "fit_accuracy": model.fit_accuracy,
        "train_seconds": model.seconds,  # unrounded: a tiny run takes milliseconds
    }


# ---- what the study shows --------------------------------------------------------------------------
def _auc(r: dict[str, Any]) -> str:
    return f"{r['auc']:.3f} [{r['auc_ci'][0]:.3f}, {r['auc_ci'][1]:.3f}]"


def table(report: dict[str, Any]) -> str:
    """Markdown: per model, what it trained on, its fit, the compactness of members and
    non-members, and the AUC (95% interval) of each attack."""
    kinds = list(next(iter(report["models"].values()))["attacks"])
    aucs = " | ".join(f"AUC, {k}" for k in kinds)
    lines = [
        f"| model | trained on | fit (top-1, last training set) | compactness A / N | {aucs} |",
        "|---" * (4 + len(kinds)) + "|",
    ]
    for name, m in report["models"].items():
        emb = m["attacks"]["embeddings"]
        fit = "n/a" if m["fit_accuracy"] is None else f"{100 * m['fit_accuracy']:.1f}%"
        compact = f"{emb['member_compactness_mean']:.3f} / {emb['non_member_compactness_mean']:.3f}"
        aucs = " | ".join(_auc(m["attacks"][k]) for k in kinds)
        lines.append(f"| {MODEL_TITLES.get(name, name)} | {m['trained_on']} | {fit} | {compact} | {aucs} |")
    return "\n".join(lines) + "\n\n" + difference_table(report, kinds)


def difference_table(report: dict[str, Any], kinds: list[str]) -> str:
    """Markdown: each model's AUC minus model_A's and minus the control's, paired over people."""
    lines = [
        "| AUC difference (paired bootstrap over people) | " + " | ".join(kinds) + " |",
        "|---" * (1 + len(kinds)) + "|",
    ]
    for name, m in report["models"].items():
        for ref, by_kind in m.get("auc_difference", {}).items():
            cells = " | ".join(
                f"{d['difference']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]" for d in by_kind.values()
            )
            ref_title = MODEL_TITLES.get(ref.removeprefix("vs "), ref)
            lines.append(f"| {MODEL_TITLES.get(name, name)} minus {ref_title} | {cells} |")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    """Membership AUC with its 95% interval, per model (x) and attack (marker)."""
    from facerec.core.plots import pyplot, save_figure

    plt = pyplot()
    names = list(report["models"])
    kinds = list(report["models"][names[0]]["attacks"])
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 2, 3.8))
    width = 0.6 / len(kinds)
    for i, kind in enumerate(kinds):
        rows = [report["models"][n]["attacks"][kind] for n in names]
        x = np.arange(len(names)) + (i - (len(kinds) - 1) / 2) * width
        auc = np.array([r["auc"] for r in rows])
        err = np.abs(np.array([r["auc_ci"] for r in rows]).T - auc)
        ax.errorbar(x, auc, yerr=err, fmt="os^Dv"[i % 5], capsize=3, label=kind)
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(np.arange(len(names)), [MODEL_TITLES.get(n, n).replace(": ", ":\n") for n in names], fontsize=7)
    ax.set_ylabel("membership AUC, A vs N (95% CI)")
    ax.set_title("Membership of A after fine-tuning on B (FaceLeaks)", fontsize=9)
    ax.legend(fontsize=7, loc="best")
    save_figure(fig, path, dpi=110)
