"""The `facerec benchmark` command (see its handler)."""

from __future__ import annotations
