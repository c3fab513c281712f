"""archi: aperture photometry of every star in a CHEOPS subarray field.

Pixel convention (used by every module, reader, writer and the simulator)
-------------------------------------------------------------------------
* Subarray images are numpy arrays ``image[y, x]``: ``x`` is the column (numpy axis 1,
  FITS axis 1), ``y`` is the row (numpy axis 0, FITS axis 2).
* Indices are 0-based and pixel *centres* sit at integer coordinates: pixel ``[3, 5]``
  covers ``4.5 <= x < 5.5`` and ``2.5 <= y < 3.5``.
* Positions are always written ``(x, y)`` in that order, in pixels.
* Full-CCD ("SOC") coordinates such as the DRP ``CENTROID_X/Y`` and ``LOCATION_X/Y`` map to
  subarray coordinates by subtracting the window offset ``(X_WINOFF, Y_WINOFF)``.
* The roll angle is the DRP ``ROLL_ANGLE`` in degrees; it decreases with time.
"""

__version__ = "0.1.0"

_LAZY = {"read_lightcurves": "archi.io.lightcurve_tables",
         "to_lightkurve": "archi.io.lightcurve_tables"}


def __getattr__(name: str):
    """``archi.read_lightcurves`` and ``archi.to_lightkurve``, imported when first used
    (``import archi`` stays light)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'archi' has no attribute {name!r}")
