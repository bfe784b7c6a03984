"""A gallery of enrolled embeddings in one .npz file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facerec.errors import FacerecError


@dataclass
class Gallery:
    model: str
    embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    names: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)

    def add(self, name: str, embedding: np.ndarray, source: str) -> None:
        embedding = np.asarray(embedding, dtype=np.float32)[None]
        if len(self.names) and embedding.shape[1] != self.embeddings.shape[1]:
            raise FacerecError(
                f"embedding size {embedding.shape[1]} differs from the gallery's {self.embeddings.shape[1]}"
            )
        self.embeddings = embedding if not len(self.names) else np.vstack([self.embeddings, embedding])
        self.names.append(name)
        self.sources.append(source)

    def search(self, query: np.ndarray, top: int = 5) -> list[tuple[str, float]]:
        """Identities ranked by their best-matching enrolled image (cosine)."""
        if not self.names:
            raise FacerecError("the gallery is empty: enroll someone first (`facerec enroll`)")
        sims = self.embeddings @ np.asarray(query, dtype=np.float32)
        best: dict[str, float] = {}
        for name, s in zip(self.names, sims.tolist(), strict=True):
            best[name] = max(best.get(name, -1.0), s)
        return sorted(best.items(), key=lambda kv: -kv[1])[:top]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(
            tmp,
            model=self.model,
            embeddings=self.embeddings,
            names=np.array(self.names),
            sources=np.array(self.sources),
        )
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Gallery:
        path = Path(path)
        if not path.is_file():
            raise FacerecError(f"gallery not found: {path} (create it with `facerec enroll`)")
        try:
            data = np.load(path, allow_pickle=False)
            return cls(str(data["model"]), data["embeddings"], data["names"].tolist(), data["sources"].tolist())
        except (KeyError, ValueError, OSError) as exc:
            raise FacerecError(f"{path} is not a facerec gallery: {exc}") from exc
