"""A gallery of enrolled embeddings in one .npz file, tied to the model that made them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facerec.core.files import save_npz
from facerec.errors import FacerecError


@dataclass
class Gallery:
    model: str  # the model's name, for messages
    embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))
    names: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    digest: str = ""  # the model's identity (content digest); empty in galleries of older versions
    detector: str = ""

    @classmethod
    def for_pipeline(cls, pipeline: Any) -> Gallery:
        return cls(pipeline.model.name, digest=pipeline.model.digest, detector=pipeline.detector)

    def check_model(self, pipeline: Any, path: str | Path) -> None:
        """Refuse to mix embeddings of two models: their spaces are not comparable."""
        model = pipeline.model
        same = self.digest == model.digest if self.digest else self.model == model.name
        if not same:
            theirs = f"'{self.model}'" + (f" (digest {self.digest[:12]})" if self.digest else "")
            raise FacerecError(
                f"gallery {path} holds embeddings of model {theirs}, not of '{model.name}' "
                f"(digest {model.digest[:12]}): use that model, or enroll into a new gallery"
            )

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

    @property
    def people(self) -> int:
        return len(set(self.names))

    def save(self, path: str | Path) -> Path:
        return save_npz(
            Path(path),
            model=self.model,
            digest=self.digest,
            detector=self.detector,
            embeddings=self.embeddings,
            names=np.array(self.names),
            sources=np.array(self.sources),
        )

    @classmethod
    def load(cls, path: str | Path) -> Gallery:
        path = Path(path)
        if not path.is_file():
            raise FacerecError(f"gallery not found: {path} (create it with `facerec enroll`)")
        try:
            data = np.load(path, allow_pickle=False)
            optional = {k: str(data[k]) for k in ("digest", "detector") if k in data.files}
            return cls(
                str(data["model"]), data["embeddings"], data["names"].tolist(), data["sources"].tolist(), **optional
            )
        except (KeyError, ValueError, OSError) as exc:
            raise FacerecError(f"{path} is not a facerec gallery: {exc}") from exc
