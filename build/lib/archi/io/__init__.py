"""Reading (and, for the simulator, writing) CHEOPS products and the project's own files.

The readers are imported on first use, so that a job importing one light submodule (say
:mod:`archi.io.atomic`) does not pay for astropy.
"""

from importlib import import_module

_LAZY = {"read_visit": "archi.io.drp", "read_lightcurve": "archi.io.drp",
         "read_star_catalogue": "archi.io.drp", "find_visit_products": "archi.io.find",
         "VisitProducts": "archi.io.find"}

__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'archi.io' has no attribute {name!r}")
