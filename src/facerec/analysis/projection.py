"""2-D and 3-D pictures of an embedding space: PCA or t-SNE, points colored by identity or by
group; embeddings that are 3-dimensional already are drawn on the unit sphere they live on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facerec.errors import DataError

METHODS = ("pca", "tsne")


def pca(emb: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates on the first `dims` principal axes and the variance share of each."""
    centered = emb - emb.mean(0)
    u, s, _ = np.linalg.svd(centered, full_matrices=False)
    return u[:, :dims] * s[:dims], (s[:dims] ** 2) / (s**2).sum()


def tsne(emb: np.ndarray, dims: int, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    try:
        from sklearn.manifold import TSNE
    except ImportError as exc:  # scikit-learn is optional
        raise DataError("t-SNE needs scikit-learn: pip install scikit-learn") from exc
    perplexity = min(perplexity, max(2.0, (len(emb) - 1) / 3))
    return TSNE(dims, perplexity=perplexity, init="pca", random_state=seed, metric="cosine").fit_transform(emb)


def project(emb: np.ndarray, method: str, dims: int, seed: int = 0) -> np.ndarray:
    if method == "pca":
        return pca(emb, dims)[0]
    if method == "tsne":
        return tsne(emb, dims, seed)
    raise DataError(f"unknown projection '{method}': use one of {METHODS}")


def top_identities(identities: np.ndarray, count: int) -> np.ndarray:
    """The `count` identities with the most images (ties by name), as a mask over images."""
    names, sizes = np.unique(identities, return_counts=True)
    keep = names[np.lexsort((names, -sizes))][:count]
    return np.isin(identities, keep)


def plot(
    emb: np.ndarray, color: np.ndarray, path: Path, method: str = "pca", dims: int = 2, title: str = "", seed: int = 0
) -> dict[str, Any]:
    """Scatter of the projection (or the sphere itself for 3-d embeddings with dims = 3)."""
    from facerec.core.plots import pyplot, save_figure

    plt = pyplot()
    on_sphere = emb.shape[1] == 3 and dims == 3
    coords = emb / np.linalg.norm(emb, axis=1, keepdims=True) if on_sphere else project(emb, method, dims, seed)
    labels = list(dict.fromkeys(color.tolist()))
    cmap = plt.get_cmap("tab20" if len(labels) > 10 else "tab10")
    fig = plt.figure(figsize=(6, 5))
    ax = fig.add_subplot(111, projection="3d" if dims == 3 else None)
    if on_sphere:
        u, v = np.mgrid[0 : 2 * np.pi : 30j, 0 : np.pi : 15j]
        ax.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85", lw=0.4)
    for i, label in enumerate(labels):
        sel = color == label
        ax.scatter(*coords[sel].T, s=8, color=cmap(i % cmap.N), label=str(label))
    if len(labels) <= 20:
        ax.legend(fontsize=6, markerscale=1.5, loc="best")
    what = "unit sphere" if on_sphere else f"{method.upper()} {dims}-D"
    ax.set_title(f"{title} {what}, {len(emb)} embeddings".strip(), fontsize=9)
    save_figure(fig, path, dpi=100)
    return {"points": len(emb), "labels": len(labels), "method": "sphere" if on_sphere else method, "dims": dims}
