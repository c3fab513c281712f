"""Modules imported at their first use, so job scripts that never use them skip the import.

A per-factor job of the workflow measures for ~0.2 s; importing pandas would add ~0.15 s to
each of them, yet only the selection and bookkeeping steps need DataFrames.
"""

from __future__ import annotations

import importlib
from typing import Any


class LazyModule:
    """Stands for the module ``name``; imports it at the first attribute access."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self) -> str:
        return f"LazyModule({self._name!r})"
