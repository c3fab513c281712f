"""Home of ``run_info.yaml``: what one photometry run read, the options it used, and a line
per star (archi's ``photo_info.txt``, extended).

The file is written to a temporary name beside its destination and renamed when complete
(:func:`archi.io.atomic.atomic_path`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import yaml

import archi
from archi.errors import ProductNotFoundError, one_line
from archi.io.atomic import write_text_atomically
from archi.io.lightcurve_values import (
    check_lightcurves,
    finite_or_none,
    fraction,
    is_matched,
    option_text,
    utc_now,
)
from archi.stars import FLAG_OUT_OF_BOUNDS, FLAG_REJECT, StarLightCurves

__all__ = ["RUN_INFO_FORMAT", "write_run_info"]

RUN_INFO_FORMAT = "archi-run-info"
"""Value of the ``format`` key of a run-info file."""


def _plain(value: Any) -> Any:
    """``value`` as plain YAML types: numbers, strings, lists, dicts (callables as names)."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [_plain(v) for v in items]
    if callable(value):
        return option_text(value)
    return str(value)


def _products(visit_folder: Path) -> tuple[dict[str, Any], str | None]:
    """Products of the visit found in ``visit_folder`` (relative paths where possible)."""
    from archi.io.find import find_visit_products

    try:
        found = find_visit_products(visit_folder)
    except ProductNotFoundError as exc:
        return {}, one_line(exc)

    def rel(p: Path) -> str:
        try:
            return str(Path(p).relative_to(visit_folder))
        except ValueError:
            return str(p)

    return {
        "layout": found.layout,
        "subarray": rel(found.subarray),
        "lightcurves": {ap: rel(p) for ap, p in sorted(found.lightcurves.items())},
        "star_catalogue": rel(found.star_catalogue) if found.star_catalogue else None,
    }, None


def _star_entry(lc: StarLightCurves, k: int) -> dict[str, Any]:
    """The ``stars`` entry of star ``k`` (layout: :func:`write_run_info`)."""
    stars = lc.stars
    catalogue = None
    if is_matched(stars, k):
        catalogue = {"id": str(stars.source_id[k]) or None,
                     "row": int(stars.catalogue_row[k]),
                     "ra": finite_or_none(stars.ra[k]),
                     "dec": finite_or_none(stars.dec[k]),
                     "mag": finite_or_none(stars.mag[k])}
    flag = np.asarray(lc.flag[k])
    flagged = (flag & FLAG_REJECT) != 0  # a predicted position or a patched hit only inform
    return {
        "number": k,
        "catalogue": catalogue,
        "x0": finite_or_none(stars.x0[k]),
        "y0": finite_or_none(stars.y0[k]),
        "distance": finite_or_none(stars.distance[k]),
        "method": str(lc.methods[k]),
        "factor": finite_or_none(lc.factors[k]),
        "cdpp": finite_or_none(lc.cdpp[k]),
        "npix": finite_or_none(lc.npix[k]),
        "flagged_fraction": fraction(flagged),
        "out_of_bounds_fraction": fraction((flag & FLAG_OUT_OF_BOUNDS) != 0),
    }


def write_run_info(path: str | Path, *, visit_folder: str | Path, options: dict,
                   lc: StarLightCurves, extra: dict | None = None,
                   astrometry: dict | None = None, input_warnings: tuple[str, ...] = (),
                   warnings: list[str] | None = None) -> Path:
    """Write a YAML description of one photometry run (archi's ``photo_info.txt``, extended).

    Layout (keys in this order)::

        format: archi-run-info
        format_version: 1
        software: {name: archi, version: 0.1.0}
        created: 2024-05-01T12:00:00Z         # UTC
        inputs:
          visit_folder: /abs/path/of/the/visit
          visit: CH_PR..._V0300                 # lc.visit_key
          n_frames: 1234
          products:                              # found in visit_folder, paths relative to it
            layout: drp
            subarray: ..._SCI_COR_SubArray_V0300.fits
            lightcurves: {DEFAULT: ..., OPTIMAL: ...}
            star_catalogue: ... or null
          products_error: <why no products were found>   # only when none were found
          warnings: [...]                        # what reading repaired or replaced
                                                 # (Visit.input_warnings); only when any
        options: {...}                           # every option; callables as module:qualname
        astrometry: {...}                        # the catalogue-to-pixel transform measured
                                                 # (AstrometryFit.to_dict: used, plate_scale,
                                                 # rotation_deg, sense, rms_px, warnings, ...);
                                                 # only when given
        stars:
          - number: 0
            catalogue: {id: '...', row: 0, ra: .., dec: .., mag: ..}   # null when unmatched
            x0: ..  y0: ..  distance: ..          # [pixel]
            method: circle
            factor: 5.5                           # radius [pixel] or layers
            cdpp: 123.4                           # [ppm]; null when undefined
            npix: 95.0                            # [pixel] mean mask area
            flagged_fraction: 0.05                # frames with a FLAG_REJECT bit (README)
            out_of_bounds_fraction: 0.0           # frames with the out-of-bounds bit
        warnings: [one line each, ...]           # lost frames, fallback factors (only
                                                 # when there are some)
        extra: {...}                             # only when given

    NaN numbers are written as null. Returns the path written.
    """
    check_lightcurves(lc)
    path = Path(path)
    folder = Path(visit_folder).absolute()
    products, products_error = _products(folder)
    inputs: dict[str, Any] = {"visit_folder": str(folder), "visit": lc.visit_key,
                              "n_frames": lc.n_frames, "products": products}
    if products_error:
        inputs["products_error"] = products_error
    if input_warnings:
        inputs["warnings"] = [str(w) for w in input_warnings]
    doc: dict[str, Any] = {
        "format": RUN_INFO_FORMAT,
        "format_version": 1,
        "software": {"name": "archi", "version": archi.__version__},
        "created": utc_now() + "Z",
        "inputs": inputs,
        "options": _plain(options),
        **({} if astrometry is None else {"astrometry": _plain(astrometry)}),
        "stars": [_star_entry(lc, k) for k in range(lc.n_stars)],
    }
    if warnings:
        doc["warnings"] = [str(line) for line in warnings]
    if extra:
        doc["extra"] = _plain(extra)
    text = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, allow_unicode=False,
                          width=100)
    write_text_atomically(path, lambda fh: fh.write(text))
    return path
