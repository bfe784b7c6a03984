"""Demographic differentials of a face recognition model.

Following "Quantifying the extent to which race and gender features determine identity in
commercial face recognition algorithms" (Howard et al.) as reviewed in the seeds:

- a subject-by-subject similarity matrix ordered by group, with the non-mated (off-diagonal)
  scores normalized to mean 0 and std 1, whose block-diagonal structure shows scores being
  higher within a group than across groups;
- PCA of that matrix (each subject is the row of its scores against all subjects) and, per
  principal component k, the clustering index. The seed defines
      W_k = sum_D sum_{j in D} (x_j - mean_D)^2 / sum_j (x_j - mean)^2,
  the within-group share of the variance of the component's coordinates x_j, and says that
  "1 indicates no variance among individuals in each group", which holds for 1 - W_k. We
  report C_k = 1 - W_k, the share of the component's variance that lies *between* the group
  means (the correlation ratio eta^2): 1 = the component only separates groups, 0 = the groups
  have identical means on it. W_k is reported too, as `within_fraction`.
- FMR and FNMR per group, and the cross-group FMR matrix, at one global threshold set at a
  target overall FMR, with bootstrap confidence intervals (subjects resampled within each
  group, each ordered pair weighted by its first subject's draw count).
- per-group operating points: the threshold each group would need for the same FMR on its own
  (within-group) impostor pairs, and the FNMR each group gets at the global threshold and at
  its own: what one threshold for everyone costs each group.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from facerec.errors import DataError
from facerec.eval.metrics import too_few

# ---- group labels ----------------------------------------------------------------------------


def lfw_gender(meta_dir: str | Path) -> dict[str, str]:
    """Image file name -> 'male' / 'female' from LFW's gender lists; the images listed in both
    are left out."""
    meta = Path(meta_dir) / "gender"
    labels: dict[str, str] = {}
    ambiguous = set()
    for group in ("male", "female"):
        for line in (meta / f"{group}_names.txt").read_text().split():
            if line in labels and labels[line] != group:
                ambiguous.add(line)
            labels[line] = group
    return {k: v for k, v in labels.items() if k not in ambiguous}


def lfw_race(meta_dir: str | Path) -> dict[str, str]:
    """Identity -> race label (866 LFW identities); identities given several labels form the
    group 'multiple'."""
    table = json.loads((Path(meta_dir) / "race" / "lfw_race_dict.json").read_text())
    return {name: (label if "," not in label else "multiple") for name, label in table.items()}


def read_group_csv(path: str | Path) -> dict[str, str]:
    """A CSV whose first column is an image path, an image file name or an identity, and
    whose second column is the group (a header line is allowed)."""
    if not Path(path).is_file():
        raise DataError(f"group labels not found: {path} (give gender, race or a CSV of key,group rows)")
    table: dict[str, str] = {}
    with open(path, newline="") as f:
        for row in csv.reader(f):
            if len(row) < 2 or row[0].strip().lower() in ("image", "path", "identity", "name", "file"):
                continue
            table[row[0].strip()] = row[1].strip()
    if not table:
        raise DataError(f"{path}: no 'key,group' rows")
    return table


def groups_of(paths: list[Path], identities: np.ndarray, table: dict[str, str]) -> np.ndarray:
    """The group of each image, looked up by full path, file name, or identity; '' if none."""
    out = []
    for path, identity in zip(paths, identities, strict=True):
        p = Path(path)
        out.append(table.get(str(p)) or table.get(p.name) or table.get(str(identity)) or "")
    return np.array(out, dtype=object)


def subject_groups(identities: np.ndarray, groups: np.ndarray) -> dict[str, str]:
    """One group per subject: the most common label of its images."""
    out = {}
    for identity in np.unique(identities):
        labels, counts = np.unique(groups[identities == identity].astype(str), return_counts=True)
        out[str(identity)] = str(labels[np.argmax(counts)])
    return out


# ---- the similarity matrix and its PCA ---------------------------------------------------------


@dataclass
class SubjectMatrix:
    scores: np.ndarray  # (m, m): mean cosine between subjects; diagonal = mean mated score
    subjects: np.ndarray  # subject names, ordered by group
    groups: np.ndarray  # group of each subject


def subject_similarity(emb: np.ndarray, identities: np.ndarray, groups: dict[str, str]) -> SubjectMatrix:
    """Subjects with at least two images, ordered by group then name. Entry (i, j) is the mean
    cosine over all image pairs of subjects i and j (i = j: over pairs of distinct images), which
    for unit embeddings is the dot product of the subjects' mean embeddings."""
    names, counts = np.unique(identities, return_counts=True)
    names = [n for n, c in zip(names, counts, strict=True) if c >= 2]
    if len(names) < 2:
        raise DataError("the similarity matrix needs at least two subjects with two images each")
    names.sort(key=lambda n: (groups[str(n)], str(n)))
    sums = np.stack([emb[identities == n].sum(0) for n in names]).astype(np.float64)
    sizes = np.array([(identities == n).sum() for n in names], dtype=np.float64)
    scores = (sums @ sums.T) / np.outer(sizes, sizes)
    mated = ((sums * sums).sum(1) - sizes) / (sizes * (sizes - 1))  # drop each image with itself
    np.fill_diagonal(scores, mated)
    return SubjectMatrix(scores, np.array(names), np.array([groups[str(n)] for n in names]))


def normalize_nonmated(scores: np.ndarray) -> np.ndarray:
    """Scores shifted and scaled so that the off-diagonal (non-mated) ones have mean 0, std 1."""
    off = ~np.eye(len(scores), dtype=bool)
    mu, sd = scores[off].mean(), scores[off].std()
    return (scores - mu) / sd


def principal_components(matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of each row on the first k principal components, and the share of variance
    each explains."""
    centered = matrix - matrix.mean(0)
    u, s, _ = np.linalg.svd(centered, full_matrices=False)
    k = min(k, len(s))
    return u[:, :k] * s[:k], (s[:k] ** 2) / (s**2).sum()


def clustering_index(coords: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(C_k, W_k) for each column: C_k = between-group share of the variance, W_k = 1 - C_k."""
    coords = np.asarray(coords, dtype=np.float64).reshape(len(groups), -1)
    total = ((coords - coords.mean(0)) ** 2).sum(0)
    within = np.zeros(coords.shape[1])
    for g in np.unique(groups):
        part = coords[groups == g]
        within += ((part - part.mean(0)) ** 2).sum(0)
    within_fraction = within / np.maximum(total, 1e-300)
    return 1.0 - within_fraction, within_fraction


# ---- error rates per group -----------------------------------------------------------------


@dataclass
class PairCounts:
    """Ordered image-pair counts per subject, split by the group of the other image."""

    subjects: np.ndarray  # names
    subject_group: np.ndarray  # group index of each subject
    false_match: np.ndarray  # (subjects, groups): impostor pairs scoring >= threshold
    impostor: np.ndarray  # (subjects, groups)
    false_non_match: np.ndarray  # (subjects,): mated pairs scoring < threshold
    mated: np.ndarray  # (subjects,)
    group_names: list[str]
    threshold: float


def impostor_scores(emb: np.ndarray, codes: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """The score of every unordered pair of images of two different subjects, by row blocks."""
    kept: list[np.ndarray] = []
    n = len(emb)
    for start in range(0, n, chunk):
        block = emb[start : start + chunk] @ emb.T
        rows = np.arange(start, min(start + chunk, n))
        upper = np.arange(n)[None, :] > rows[:, None]
        kept.append(block[upper & (codes[rows][:, None] != codes[None, :])])
    return np.concatenate(kept) if kept else np.zeros(0)


def threshold_from_scores(scores: np.ndarray, target_fmr: float) -> float:
    """The k-th highest impostor score, k = round(target * count) (at least 1): accepting
    score >= it makes the FMR over these pairs `target_fmr`."""
    k = max(1, round(target_fmr * len(scores)))
    if k > len(scores):
        raise DataError("not enough impostor pairs for this FMR")
    return float(np.partition(scores, len(scores) - k)[len(scores) - k])


def impostor_threshold(emb: np.ndarray, codes: np.ndarray, target_fmr: float, chunk: int = 1024) -> float:
    """The threshold t (accept: score >= t) at which the overall FMR over all unordered impostor
    image pairs is `target_fmr` (the k-th highest impostor score, k = round(target * count))."""
    return threshold_from_scores(impostor_scores(emb, codes, chunk), target_fmr)


def count_pairs(
    emb: np.ndarray, identities: np.ndarray, groups: np.ndarray, threshold: float, chunk: int = 1024
) -> PairCounts:
    names, codes = np.unique(identities, return_inverse=True)
    group_names = sorted({str(g) for g in groups})
    gcode = np.array([group_names.index(str(g)) for g in groups])
    n, ng, ns = len(emb), len(group_names), len(names)
    fm, imp = np.zeros((ns, ng)), np.zeros((ns, ng))
    fnm, mated = np.zeros(ns), np.zeros(ns)
    onehot = np.eye(ng)[gcode]  # (n, groups)
    for start in range(0, n, chunk):
        rows = np.arange(start, min(start + chunk, n))
        block = emb[rows] @ emb.T
        same = codes[rows][:, None] == codes[None, :]
        accept = block >= threshold
        diff = ~same
        np.add.at(fm, codes[rows], (accept & diff) @ onehot)
        np.add.at(imp, codes[rows], diff @ onehot)
        not_self = np.arange(n)[None, :] != rows[:, None]
        np.add.at(fnm, codes[rows], (~accept & same & not_self).sum(1))
        np.add.at(mated, codes[rows], (same & not_self).sum(1))
    subject_group = np.array([gcode[codes == i][0] for i in range(ns)])
    return PairCounts(names, subject_group, fm, imp, fnm, mated, group_names, threshold)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.where(den > 0, num / np.maximum(den, 1e-300), np.nan)


def group_rates(
    counts: PairCounts,
    target_fmr: float,
    min_mated: int = 20,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """FMR, FNMR per group and the cross-group FMR matrix, each with a bootstrap interval. A
    rate is given only where there are enough pairs for it to mean something: at least
    1/target_fmr unordered impostor pairs (one false match expected at the target) for an FMR,
    at least `min_mated` mated pairs for an FNMR; otherwise the reason is given instead."""
    rng = np.random.default_rng(seed)
    ng = len(counts.group_names)
    members = [np.flatnonzero(counts.subject_group == g) for g in range(ng)]
    # bootstrap weights: subjects resampled with replacement within their own group
    weights = np.zeros((n_boot, len(counts.subjects)))
    for idx in members:
        if len(idx):
            draws = rng.integers(0, len(idx), (n_boot, len(idx)))
            np.add.at(weights, (np.arange(n_boot)[:, None], idx[draws]), 1.0)
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    min_impostor = math.ceil(1.0 / target_fmr)

    def interval(num: np.ndarray, den: np.ndarray) -> list[float]:
        boot = _ratio(weights @ num, weights @ den)
        return [float(np.nanquantile(boot, lo_q)), float(np.nanquantile(boot, hi_q))]

    def fmr_cell(a: int, b: int) -> dict[str, Any]:
        rows = np.zeros(len(counts.subjects))
        rows[members[a]] = 1.0
        num, den = rows * counts.false_match[:, b], rows * counts.impostor[:, b]
        both_ways = 2 if a == b else 1  # within a group every unordered pair is counted from both ends
        pairs = den.sum() / both_ways
        cell: dict[str, Any] = {"impostor_pairs": int(pairs), "false_matches": int(num.sum() / both_ways)}
        if pairs < min_impostor:
            cell["fmr"] = too_few(int(pairs), min_impostor, "impostor pairs") + f" for FMR at {target_fmr:g}"
        else:
            cell["fmr"] = float(num.sum() / den.sum())
            cell["ci"] = interval(num, den)
        return cell

    per_group: dict[str, Any] = {}
    for g, name in enumerate(counts.group_names):
        rows = np.zeros(len(counts.subjects))
        rows[members[g]] = 1.0
        fnm_num, fnm_den = rows * counts.false_non_match, rows * counts.mated
        mated_pairs = int(fnm_den.sum() / 2)
        entry: dict[str, Any] = {"subjects": len(members[g]), "mated_pairs": mated_pairs, **fmr_cell(g, g)}
        if mated_pairs < min_mated:
            entry["fnmr"] = too_few(mated_pairs, min_mated, "mated pairs") + " for an FNMR"
        else:
            entry["fnmr"] = float(fnm_num.sum() / fnm_den.sum())
            entry["fnmr_ci"] = interval(fnm_num, fnm_den)
        per_group[name] = entry
    cross = [[fmr_cell(a, b) for b in range(ng)] for a in range(ng)]
    return {"threshold": counts.threshold, "target_fmr": target_fmr, "groups": per_group, "cross_fmr": cross}


# ---- per-group operating points ---------------------------------------------------------------


def mated_scores(emb: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Score and subject of every unordered pair of two distinct images of one subject."""
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.r_[True, codes[order][1:] != codes[order][:-1], True])
    scores, subjects = [], []
    for start, stop in itertools.pairwise(bounds):
        rows = order[start:stop]
        i, j = np.triu_indices(len(rows), 1)
        scores.append((emb[rows[i]] * emb[rows[j]]).sum(1))
        subjects.append(np.full(len(i), codes[rows[0]]))
    return np.concatenate(scores), np.concatenate(subjects)


def operating_points(
    emb: np.ndarray,
    codes: np.ndarray,
    groups: np.ndarray,
    global_threshold: float,
    target_fmr: float,
    min_mated: int = 20,
    chunk: int = 1024,
) -> dict[str, Any]:
    """Per group, next to the one global threshold: the threshold the group would need for the
    same FMR on its own impostor pairs (both subjects in the group; same rule as the global
    one), and the group's FMR and FNMR at the global threshold and at its own. The difference
    in FNMR is what the group pays for sharing one threshold. Same count rules as the rates:
    an own threshold needs >= 1/target impostor pairs, an FNMR >= `min_mated` mated pairs.
    `groups`: the group of each image (one per subject)."""
    genuine, genuine_subject = mated_scores(emb, codes)
    min_impostor = math.ceil(1.0 / target_fmr)
    out: dict[str, Any] = {}
    for name in sorted({str(g) for g in groups}):
        members = np.asarray(groups).astype(str) == name
        impostor = impostor_scores(emb[members], codes[members], chunk)
        mated = genuine[np.isin(genuine_subject, np.unique(codes[members]))]
        entry: dict[str, Any] = {
            "impostor_pairs": len(impostor),
            "mated_pairs": len(mated),
            "fmr_at_global": float((impostor >= global_threshold).mean()) if len(impostor) else None,
        }
        if len(impostor) < min_impostor:
            entry["threshold"] = too_few(len(impostor), min_impostor, "impostor pairs") + f" for FMR {target_fmr:g}"
        else:
            own = threshold_from_scores(impostor, target_fmr)
            entry.update(threshold=own, fmr_at_own=float((impostor >= own).mean()))
        if len(mated) < min_mated:
            entry["fnmr_at_global"] = too_few(len(mated), min_mated, "mated pairs") + " for an FNMR"
        else:
            entry["fnmr_at_global"] = float((mated < global_threshold).mean())
            if isinstance(entry["threshold"], float):
                entry["fnmr_at_own"] = float((mated < entry["threshold"]).mean())
        out[name] = entry
    return {
        "rule": "threshold = k-th highest impostor score, k = round(target FMR x impostor pairs), accept: score >= it",
        "global_threshold": global_threshold,
        "target_fmr": target_fmr,
        "groups": out,
    }


def operating_points_table(points: dict[str, Any]) -> str:
    """The operating points as a Markdown table."""

    def cell(value: Any, fmt: str) -> str:
        return format(value, fmt) if isinstance(value, float) else "-" if value is None else str(value)

    t, far = points["global_threshold"], points["target_fmr"]
    lines = [
        f"| group | impostor pairs | own threshold (FMR {far:g}) | FMR at global t = {t:.4f} | mated pairs "
        "| FNMR at global | FNMR at own |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, g in points["groups"].items():
        lines.append(
            f"| {name} | {g['impostor_pairs']:,} | {cell(g['threshold'], '.4f')} | {cell(g['fmr_at_global'], '.2e')} "
            f"| {g['mated_pairs']:,} | {cell(g['fnmr_at_global'], '.2%')} | {cell(g.get('fnmr_at_own'), '.2%')} |"
        )
    return "\n".join(lines)


# ---- the whole analysis ------------------------------------------------------------------------


def analyze(
    emb: np.ndarray,
    identities: np.ndarray,
    groups: np.ndarray,
    out_dir: str | Path,
    target_fmr: float = 1e-3,
    components: int = 10,
    n_boot: int = 1000,
    min_mated: int = 20,
    title: str = "",
) -> dict[str, Any]:
    """Everything above on the labelled images; report.json and PNGs in out_dir."""
    from facerec.core.files import write_json, write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labelled = groups != ""
    if labelled.sum() < 2:
        raise DataError("no image has a group label: check the group table's keys (path, file name or identity)")
    emb, identities, groups = emb[labelled].astype(np.float64), identities[labelled], groups[labelled]
    by_subject = subject_groups(identities, groups)
    codes = np.unique(identities, return_inverse=True)[1]
    threshold = impostor_threshold(emb, codes, target_fmr)
    subject_group = np.array([by_subject[str(i)] for i in identities])
    rates = group_rates(count_pairs(emb, identities, subject_group, threshold), target_fmr, min_mated, n_boot)
    points = operating_points(emb, codes, subject_group, threshold, target_fmr, min_mated)
    report = {
        "images": len(emb),
        "subjects": len(np.unique(identities)),
        **matrix_analysis(emb, identities, by_subject, components, out, title),
        **rates,
        "operating_points": points,
    }
    plot_cross_fmr(rates, out / "cross_group_fmr.png", title)
    write_json(out / "report.json", report)
    write_text(out / "operating_points.md", operating_points_table(points) + "\n")
    return report


def matrix_analysis(
    emb: np.ndarray, identities: np.ndarray, by_subject: dict[str, str], components: int, out: Path, title: str
) -> dict[str, Any]:
    """The subject similarity matrix, its PCA and clustering index (report entries and PNGs).
    They need subjects with two images or more; a face set without identity labels (each face
    its own subject, e.g. UTKFace) has none, and only its false-match rates are measurable:
    the report then says so in `matrix_subjects`."""
    counts = np.unique(identities, return_counts=True)[1]
    if (counts >= 2).sum() < 3:  # two subjects give one non-mated score: nothing to normalize by
        return {"matrix_subjects": "not computed: fewer than three subjects have two images or more"}
    matrix = subject_similarity(emb, identities, by_subject)
    normalized = normalize_nonmated(matrix.scores)
    coords, explained = principal_components(normalized, components)
    index, within = clustering_index(coords, matrix.groups)
    plot_matrix(normalized, matrix.groups, out / "similarity_matrix.png", title)
    plot_components(coords, matrix.groups, index, explained, out / "pca.png", title)
    return {
        "matrix_subjects": {str(g): int((matrix.groups == g).sum()) for g in np.unique(matrix.groups)},
        "clustering_index": {
            "definition": "C_k = 1 - sum_D sum_(j in D) (x_j - mean_D)^2 / sum_j (x_j - mean)^2: 1 = all variance "
            "of component k lies between the group means",
            "C_k": index.tolist(),
            "within_fraction": within.tolist(),
            "explained_variance": explained.tolist(),
        },
        "block_means": block_means(normalized, matrix.groups),
    }


def block_means(normalized: np.ndarray, groups: np.ndarray) -> dict[str, dict[str, float]]:
    """Mean normalized non-mated score between each pair of groups."""
    off = ~np.eye(len(groups), dtype=bool)
    names = list(dict.fromkeys(groups.tolist()))
    return {
        a: {
            b: float(normalized[np.ix_(groups == a, groups == b)][off[np.ix_(groups == a, groups == b)]].mean())
            for b in names
        }
        for a in names
    }


def pooled(matrix: np.ndarray, step: int) -> np.ndarray:
    """Mean over step x step blocks (the last ones smaller): a picture of a large matrix."""
    edges = np.arange(0, len(matrix), step)
    rows = np.add.reduceat(matrix, edges, axis=0) / np.diff(np.r_[edges, len(matrix)])[:, None]
    return np.add.reduceat(rows, edges, axis=1) / np.diff(np.r_[edges, len(matrix)])[None, :]


def plot_matrix(normalized: np.ndarray, groups: np.ndarray, path: Path, title: str, pixels: int = 150) -> None:
    """Heatmap of the matrix, averaged over blocks of subjects when there are more than `pixels`."""
    from facerec.core.plots import pyplot, save_figure

    plt = pyplot()
    step = max(1, int(np.ceil(len(groups) / pixels)))
    shown = pooled(normalized, step)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    limit = np.quantile(np.abs(shown), 0.99)
    im = ax.imshow(shown, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    edges = np.flatnonzero(groups[1:] != groups[:-1]) + 1  # first subject of each next group
    for e in edges / step - 0.5:
        ax.axhline(e, color="k", lw=0.6)
        ax.axvline(e, color="k", lw=0.6)
    starts, ends = np.r_[0, edges], np.r_[edges, len(groups)]
    centers = (starts + ends) / 2 / step - 0.5
    ax.set_xticks(centers, [groups[s] for s in starts], rotation=45, fontsize=7, ha="right")
    ax.set_yticks(centers, [groups[s] for s in starts], fontsize=7)
    fig.colorbar(im, ax=ax, fraction=0.046, label="non-mated-normalized score")
    pooled_note = f", means of {step}x{step} blocks" if step > 1 else ""
    ax.set_title(f"{title} subject similarity ({len(groups)} subjects{pooled_note})".strip(), fontsize=8)
    save_figure(fig, path, dpi=90)


def plot_cross_fmr(rates: dict[str, Any], path: Path, title: str) -> None:
    from facerec.core.plots import pyplot, save_figure

    plt = pyplot()
    names = list(rates["groups"])
    values = np.array(
        [[c["fmr"] if isinstance(c["fmr"], float) else np.nan for c in row] for row in rates["cross_fmr"]]
    )
    fig, ax = plt.subplots(figsize=(1.2 + 0.7 * len(names), 1.0 + 0.6 * len(names)))
    shown = np.log10(np.where(values > 0, values, np.nan))
    im = ax.imshow(shown, cmap="viridis", interpolation="nearest")
    for (i, j), v in np.ndenumerate(values):
        text = "n/a" if np.isnan(v) else f"{v:.1e}"
        ax.text(j, i, text, ha="center", va="center", fontsize=6, color="0.4" if np.isnan(v) else "k")
    ax.set_facecolor("0.9")  # cells without a measurable rate
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    fig.colorbar(im, ax=ax, label="log10 FMR")
    ax.set_title(
        f"{title} cross-group FMR at t={rates['threshold']:.3f} (FMR {rates['target_fmr']:g})".strip(), fontsize=8
    )
    save_figure(fig, path, dpi=100)


def plot_components(
    coords: np.ndarray, groups: np.ndarray, index: np.ndarray, explained: np.ndarray, path: Path, title: str
) -> None:
    from facerec.core.plots import pyplot, save_figure

    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.8))
    for g in dict.fromkeys(groups.tolist()):
        sel = groups == g
        a.scatter(coords[sel, 0], coords[sel, 1] if coords.shape[1] > 1 else np.zeros(sel.sum()), s=6, label=g)
    a.set_xlabel("component 1")
    a.set_ylabel("component 2")
    a.legend(fontsize=6, markerscale=2)
    a.set_title(f"{title} PCA of the similarity matrix".strip(), fontsize=9)
    k = np.arange(1, len(index) + 1)
    b.bar(k - 0.2, index, width=0.4, label="clustering index C_k")
    b.bar(k + 0.2, explained, width=0.4, label="explained variance")
    b.set_xlabel("principal component")
    b.set_ylim(0, 1)
    b.legend(fontsize=7)
    save_figure(fig, path, dpi=100)
