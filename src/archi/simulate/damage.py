"""Home of damaged copies of a simulated visit: frames of its SubArray cube made all NaN,
all zero or mostly NaN, as lost or half-read images arrive in real downloads (the tests of
:mod:`archi.framequality` and of the pipeline's handling of bad frames use them)."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits

from archi.io import products as P

DAMAGES = ("nan", "zero", "mostly_nan", "scaled")
"""``nan``: every pixel NaN; ``zero``: every pixel 0; ``mostly_nan``: all but a 40-pixel
band NaN; ``scaled``: the image times 0.5 (an outlier in total flux)."""


def damaged_copy(folder: str | Path, dest: str | Path, frames: Sequence[int],
                 damage: str) -> Path:
    """A copy of the visit ``folder`` (DRP layout) at ``dest`` whose SubArray cube has
    ``frames`` damaged as ``damage`` says (:data:`DAMAGES`). Returns ``dest``."""
    if damage not in DAMAGES:
        raise ValueError(f"damage must be one of {DAMAGES}, got {damage!r}")
    dest = Path(dest)
    shutil.copytree(folder, dest)
    (cube_path,) = dest.glob(f"*_{P.SUBARRAY}_*.fits")
    with fits.open(cube_path, mode="update", memmap=False) as hdul:
        data = np.array(hdul[P.SUBARRAY].data)
        index = np.asarray(frames, int)
        if damage == "nan":
            data[index] = np.nan
        elif damage == "zero":
            data[index] = 0.0
        elif damage == "mostly_nan":
            band = data[index, 80:120].copy()
            data[index] = np.nan
            data[index, 80:120] = band
        else:
            data[index] *= 0.5
        hdul[P.SUBARRAY].data = data
    return dest
