"""The `facerec calibrate` command (see its handler)."""

from __future__ import annotations
