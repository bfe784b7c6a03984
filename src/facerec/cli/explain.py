"""The `facerec explain` command (see its handler)."""

from __future__ import annotations
