"""High- against low-resolution faces in one embedding space, and how well a transform of the
space brings them together (the seeds' "High Resolution Face Recognition" study).

Faces are degraded after alignment: the aligned crop is shrunk to the size it would have at
`size` pixels on the 112x112 template (36 -> about 12 px between the eyes) and scaled back up.
Pairs are verified HR-HR, LR-LR and HR-LR (left image high, right low). The LR embeddings are
then moved onto the HR ones by transforms fitted on other images: orthogonal Procrustes (uses
the HR/LR correspondence of each image) and Coherent Point Drift, rigid and affine
(Myronenko & Song 2010; correspondence-free: it registers the two point clouds).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facerec.analysis.common import normalize
from facerec.analysis.linear_map import verification
from facerec.eval.pairs import Pairs

# ---- transforms between point sets ---------------------------------------------------------------


@dataclass
class Transform:
    """y -> scale * y @ rotation.T + shift (rigid), or y @ matrix.T + shift (affine)."""

    matrix: np.ndarray
    shift: np.ndarray
    sigma2: float = 0.0
    iterations: int = 0
    history: list[float] = field(default_factory=list)

    def __call__(self, y: np.ndarray) -> np.ndarray:
        return y @ self.matrix.T + self.shift


def procrustes(source: np.ndarray, target: np.ndarray) -> Transform:
    """The rotation R (orthogonal, det may be -1) minimizing ||source R^T - target||_F for
    corresponding rows (no scale, no shift: embeddings live on the unit sphere)."""
    u, _, vt = np.linalg.svd(np.asarray(target, np.float64).T @ np.asarray(source, np.float64))
    return Transform(u @ vt, np.zeros(source.shape[1]))


def _posterior(x: np.ndarray, ty: np.ndarray, sigma2: float, w: float) -> np.ndarray:
    """P[m, n]: posterior of GMM centroid m (moved point) for data point n, with a uniform outlier
    term of weight w; computed in the log domain (in high dimension the Gaussians underflow)."""
    n, d = x.shape
    m = len(ty)
    dist = (ty**2).sum(1)[:, None] - 2 * ty @ x.T + (x**2).sum(1)[None, :]
    logp = -np.maximum(dist, 0) / (2 * sigma2)
    log_c = d / 2 * np.log(2 * np.pi * sigma2) + np.log(w / (1 - w)) + np.log(m / n) if w > 0 else -np.inf
    top = np.maximum(logp.max(0), log_c)
    p = np.exp(logp - top)
    return p / (p.sum(0) + np.exp(log_c - top))


def cpd(
    target: np.ndarray,
    moving: np.ndarray,
    kind: str = "rigid",
    w: float = 0.0,
    max_iter: int = 150,
    tol: float = 1e-8,
    scale: bool = True,
) -> Transform:
    """Coherent Point Drift registering `moving` (M, D) onto `target` (N, D), no correspondences.
    kind 'rigid': s R y + t (R a proper rotation); 'affine': B y + t. EM until sigma^2 settles."""
    x, y = np.asarray(target, np.float64), np.asarray(moving, np.float64)
    (n, d), m = x.shape, len(y)
    matrix, shift = np.eye(d), np.zeros(d)
    # mean squared distance over all (target, moving) pairs, without forming them
    sigma2 = float((m * (x**2).sum() + n * (y**2).sum() - 2 * x.sum(0) @ y.sum(0)) / (d * n * m))
    history = [sigma2]
    for _ in range(max_iter):
        p = _posterior(x, y @ matrix.T + shift, sigma2, w)
        p1, pt1 = p.sum(1), p.sum(0)
        np_ = p1.sum()
        mu_x, mu_y = x.T @ pt1 / np_, y.T @ p1 / np_
        xh, yh = x - mu_x, y - mu_y
        a = xh.T @ p.T @ yh  # (D, D)
        if kind == "rigid":
            u, _, vt = np.linalg.svd(a)
            c = np.eye(d)
            c[-1, -1] = np.linalg.det(u @ vt)
            rot = u @ c @ vt
            yy = (p1 * (yh**2).sum(1)).sum()
            s = np.trace(a.T @ rot) / yy if scale else 1.0
            matrix = s * rot
            new_sigma2 = ((pt1 * (xh**2).sum(1)).sum() - s * np.trace(a.T @ rot)) / (np_ * d)
        elif kind == "affine":
            matrix = a @ np.linalg.inv((yh * p1[:, None]).T @ yh)
            new_sigma2 = ((pt1 * (xh**2).sum(1)).sum() - np.trace(a @ matrix.T)) / (np_ * d)
        else:
            raise ValueError(f"unknown CPD kind '{kind}': rigid or affine")
        shift = mu_x - matrix @ mu_y
        new_sigma2 = max(float(new_sigma2), 1e-12)
        history.append(new_sigma2)
        if abs(sigma2 - new_sigma2) < tol * max(sigma2, 1e-12):
            sigma2 = new_sigma2
            break
        sigma2 = new_sigma2
    return Transform(matrix, shift, sigma2, len(history) - 1, history)


ALIGNERS: dict[str, Callable[[np.ndarray, np.ndarray], Transform]] = {
    "procrustes": lambda lr, hr: procrustes(lr, hr),
    "cpd-rigid": lambda lr, hr: cpd(hr, lr, "rigid"),
    "cpd-affine": lambda lr, hr: cpd(hr, lr, "affine"),
}


# ---- the analysis ------------------------------------------------------------------------------


def distances(a: np.ndarray, b: np.ndarray, pairs: Pairs) -> tuple[np.ndarray, np.ndarray]:
    """Cosine distances of genuine and impostor pairs."""
    d = 1 - pairs.scores(a, b)
    return d[pairs.same], d[~pairs.same]


def settings(hr: np.ndarray, lr: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return {"HR-HR": (hr, hr), "LR-LR": (lr, lr), "HR-LR": (hr, lr)}


def describe(hr: np.ndarray, lr: np.ndarray, pairs: Pairs) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, (a, b) in settings(hr, lr).items():
        genuine, impostor = distances(a, b, pairs)
        out[name] = {
            **verification(pairs.scores(a, b), pairs).as_dict(),
            "genuine_distance_mean": float(genuine.mean()),
            "impostor_distance_mean": float(impostor.mean()),
        }
    shift = 1 - (hr * lr).sum(1)
    out["hr_to_lr_distance"] = {"mean": float(shift.mean()), "median": float(np.median(shift))}
    return out


def analyze(
    hr: np.ndarray, lr: np.ndarray, pairs: Pairs, fit: np.ndarray, out_dir: str | Path, size: int, title: str = ""
) -> dict[str, Any]:
    """hr, lr: embeddings of the same images; pairs index them; `fit`: images (not in any pair)
    the transforms are fitted on."""
    from facerec.core.files import write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"size": size, "pairs": len(pairs.same), "fit_images": len(fit)}
    report["before"] = describe(hr, lr, pairs)
    moved = {"before": lr}
    for name, fit_transform in ALIGNERS.items():
        transform = fit_transform(lr[fit], hr[fit])
        moved[name] = normalize(transform(lr))
        report[name] = describe(hr, moved[name], pairs)
        report[name]["iterations"] = transform.iterations
    plot_histograms(hr, moved, pairs, out / "distance_histograms.png", f"{title} {size}px".strip())
    write_json(out / "report.json", report)
    return report


def plot_histograms(hr: np.ndarray, moved: dict[str, np.ndarray], pairs: Pairs, path: Path, title: str) -> None:
    from facerec.core.plots import pyplot, save_figure

    plt = pyplot()
    rows = list(moved)
    fig, axes = plt.subplots(len(rows), 3, figsize=(10, 2.1 * len(rows)), sharex=True)
    spread = [1 - pairs.scores(a, b) for m in moved.values() for a, b in settings(hr, m).values()]
    bins = np.linspace(0, float(np.quantile(np.concatenate(spread), 0.999)), 50)  # models differ in scale
    for r, name in enumerate(rows):
        for c, (setting, (a, b)) in enumerate(settings(hr, moved[name]).items()):
            ax = axes[r, c]
            if setting == "HR-HR" and r > 0:
                ax.axis("off")
                continue
            genuine, impostor = distances(a, b, pairs)
            ax.hist(genuine, bins=bins, alpha=0.6, density=True, label="same identity")
            ax.hist(impostor, bins=bins, alpha=0.6, density=True, label="different")
            ax.set_title(f"{setting}, {name}", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7)
    axes[-1, 1].set_xlabel("cosine distance")
    fig.suptitle(title, fontsize=9)
    save_figure(fig, path, dpi=90)
