"""The simulator's PSF from a file (option ``psf_file``): the real CHEOPS PSF instead of the
analytic model of :mod:`archi.simulate.psf`.

Two formats: pycheops' PSF reference (``CHEOPS_IT_PSFwhite_CH_TU2018-01-01.txt`` in
``pycheops/data/instrument/`` of the pycheops package on PyPI: a whitespace-separated text
table, 200 rows of 200 values, one per detector pixel), or a 2-D FITS image (the first HDU
holding one). Rows run along the detector's y, columns along its x, as the PSF lies on the
detector; ``psf_oversample`` samples per detector pixel along each axis (1 for pycheops'
file). Any normalisation: the stamps are scaled to unit flux. The file is not shipped with
archi (pycheops is GPL-3); point ``psf_file`` at a copy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

from archi.errors import ConfigError, CorruptProductError
from archi.simulate.config import SimulationConfig
from archi.simulate.psf import PixelPsf

FITS_SUFFIXES = (".fits", ".fit", ".fts", ".fits.gz", ".fit.gz")
MIN_PIXELS = 5
"""A PSF image must span at least this many detector pixels along each axis."""


def read_psf_image(path: str | Path, samples_per_pixel: int = 1) -> NDArray[np.float64]:
    """The PSF image in ``path`` (pycheops text table or FITS), checked: 2-D, finite, at
    least :data:`MIN_PIXELS` detector pixels wide, positive total, no negative value below
    -0.1 % of the peak (tiny negative noise is set to 0). Errors are one line naming the
    file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: PSF file (psf_file) not found")
    image = _load(path)
    if image.ndim != 2:
        raise CorruptProductError(path, f"PSF image must be 2-D, got shape {image.shape}")
    if min(image.shape) < MIN_PIXELS * samples_per_pixel:
        raise CorruptProductError(path, f"PSF image {image.shape[0]} x {image.shape[1]} "
                                        f"samples is smaller than {MIN_PIXELS} pixels a side")
    if not np.all(np.isfinite(image)):
        raise CorruptProductError(path, "PSF image has NaN or infinite values")
    peak = float(image.max())
    if peak <= 0 or image.sum() <= 0:
        raise CorruptProductError(path, "PSF image has no positive light")
    if image.min() < -1e-3 * peak:
        raise CorruptProductError(path, f"PSF image has negative values down to "
                                        f"{image.min():.3g} (peak {peak:.3g})")
    return np.clip(image, 0.0, None)


def _load(path: Path) -> NDArray[np.float64]:
    """The raw array of a FITS or text PSF file; CorruptProductError if unreadable."""
    try:
        if path.name.lower().endswith(FITS_SUFFIXES):
            with fits.open(path) as hdul:
                for hdu in hdul:
                    if hdu.data is not None and getattr(hdu.data, "ndim", 0) >= 2:
                        return np.asarray(hdu.data, dtype=float)
            raise CorruptProductError(path, "no image HDU holds a PSF")
        return np.loadtxt(path, dtype=float, ndmin=2)
    except (OSError, ValueError, TypeError) as exc:
        detail = " ".join(str(exc).split())
        raise CorruptProductError(path, f"cannot read the PSF image ({detail})") from None


def simulation_psf(cfg: SimulationConfig) -> PixelPsf:
    """The PSF a simulated visit is drawn with: the file ``cfg.psf_file`` if set, else the
    analytic CHEOPS-like model."""
    if not cfg.psf_file:
        return PixelPsf()
    image = read_psf_image(cfg.psf_file, cfg.psf_oversample)
    return PixelPsf.from_image(image, samples_per_pixel=cfg.psf_oversample)
