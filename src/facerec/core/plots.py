"""Matplotlib set up in one place: the non-interactive Agg backend (plots are only written to
files, also on machines without a display), and figures saved atomically and closed."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from facerec.core.files import atomic_path


def pyplot() -> ModuleType:
    """matplotlib.pyplot on the Agg backend (imported on first use: it is slow to import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | Path, dpi: int = 100, tight: bool = True) -> Path:
    """Write `fig` to `path` (format from its extension) and close it, freeing its memory."""
    path = Path(path)
    if tight:
        fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    pyplot().close(fig)
    return path
