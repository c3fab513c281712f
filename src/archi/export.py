"""Facade kept for callers not moved yet: the light-curve files now live in :mod:`archi.io`.

``lightcurves.fits``: :mod:`archi.io.lightcurves`; ``lightcurves.txt`` and ``star_<n>.txt``:
:mod:`archi.io.lightcurves_text`; ``run_info.yaml``: :mod:`archi.io.run_info`. New code
imports from those modules.
"""

from archi.io.lightcurves import read_lightcurves_fits, write_lightcurves_fits
from archi.io.lightcurves_text import (
    read_lightcurves_text,
    read_star_text,
    write_lightcurves_text,
    write_star_texts,
)
from archi.io.run_info import write_run_info

__all__ = ["read_lightcurves_fits", "write_lightcurves_fits", "read_lightcurves_text",
           "write_lightcurves_text", "read_star_text", "write_star_texts", "write_run_info"]
