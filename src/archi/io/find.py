"""Find the products of one visit in a folder, by their CHEOPS names.

Two layouts are understood:

* ``drp``: a DACE/archive download, flat product files in the folder itself or in one
  sub-folder (e.g. ``PR300024_TG000301_V0300/``).
* ``cheopsim``: a CHEOPSim job folder, ``CHEOPSim_job<N>/`` with the DRP run on its output in
  ``*eduction*/COR`` (subarray) and ``*eduction*/PHE`` (light curves) and the star catalogue in
  ``CH_PR*_TG*/data``.

Products are matched on the full name pattern, never on loose globs, so ``SCI_RAW_SubArray``,
``SCI_CAL_SubArray`` and ``SCI_RAW_HkCe-SubArray`` are never taken for ``SCI_COR_SubArray``.
When several processing versions exist the highest one wins.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from archi.errors import ProductNotFoundError
from archi.io import products as P
from archi.io.archive import visit_folder

LAYOUTS = ("auto", "drp", "cheopsim")


@dataclass(frozen=True)
class VisitProducts:
    """Paths of the products of one visit."""

    folder: Path
    layout: str
    visit: P.VisitId
    subarray: Path
    lightcurves: dict[str, Path] = field(default_factory=dict)
    star_catalogue: Path | None = None


def detect_layout(folder: Path) -> str:
    """``cheopsim`` when the folder holds a ``*eduction*`` sub-folder, else ``drp``."""
    if any(p.is_dir() for p in folder.glob("*eduction*")):
        return "cheopsim"
    return "drp"


def _candidate_files(folder: Path, layout: str) -> list[Path]:
    if layout == "cheopsim":
        patterns = ["*eduction*/COR/*.fits", "*eduction*/PHE/*.fits", "CH_*/data/*.fits"]
    else:
        patterns = ["*.fits", "*/*.fits"]
    files: set[Path] = set()
    for pattern in patterns:
        files.update(p for p in folder.glob(pattern) if p.is_file())
    return sorted(files)


def _pick_highest_version(folder: Path, what: str, names: list[P.ProductName]) -> P.ProductName:
    best = max(n.version for n in names)
    top = [n for n in names if n.version == best]
    if len(top) > 1:
        listed = ", ".join(str(n.path.relative_to(folder)) for n in top)
        raise ProductNotFoundError(f"{folder}: {len(top)} {what} products of version "
                                   f"V{best:04d} (ambiguous): {listed}")
    return top[0]


def find_visit_products(folder: str | Path, layout: str = "auto") -> VisitProducts:
    """Locate the COR subarray, the light curves and the star catalogue of a visit.

    Raises :class:`ProductNotFoundError` with one line naming the folder and what is
    missing or ambiguous. The star catalogue is optional (None when absent). ``folder`` may
    be a DACE ``.tgz``: it is unpacked once beside it (:mod:`archi.io.archive`).
    """
    folder = visit_folder(folder)
    if layout not in LAYOUTS:
        raise ProductNotFoundError(f"{folder}: unknown layout {layout!r} (expected one of "
                                   f"{', '.join(LAYOUTS)})")
    if not folder.is_dir():
        raise ProductNotFoundError(f"{folder}: visit folder does not exist")
    if layout == "auto":
        layout = detect_layout(folder)

    parsed = [n for n in map(P.parse_product_name, _candidate_files(folder, layout)) if n]

    subarrays = [n for n in parsed if n.product == P.SUBARRAY and n.dataname is None]
    if not subarrays:
        others = sorted({n.product for n in parsed if n.product.endswith("_SubArray")})
        hint = f" (found only {', '.join(others)}; the pipeline needs the calibrated " \
               f"and corrected COR cube)" if others else ""
        where = " under *eduction*/COR" if layout == "cheopsim" else ""
        raise ProductNotFoundError(f"{folder}: no SCI_COR_SubArray product{where}{hint}")
    visit_keys = sorted({n.visit.visit_key for n in subarrays})
    if len(visit_keys) > 1:
        raise ProductNotFoundError(f"{folder}: subarrays of {len(visit_keys)} visits "
                                   f"({', '.join(visit_keys)}); give one visit per folder")
    subarray = _pick_highest_version(folder, P.SUBARRAY, subarrays)
    key = subarray.visit.visit_key

    by_aperture: dict[str, list[P.ProductName]] = {}
    for n in parsed:
        if n.product == P.LIGHTCURVE and n.dataname and n.visit.visit_key == key:
            by_aperture.setdefault(n.dataname, []).append(n)
    if not by_aperture:
        where = " under *eduction*/PHE" if layout == "cheopsim" else ""
        raise ProductNotFoundError(f"{folder}: no SCI_COR_Lightcurve product of visit {key}"
                                   f"{where}; its roll angles and centroids are needed")
    lightcurves = {ap: _pick_highest_version(folder, f"{P.LIGHTCURVE}-{ap}", names).path
                   for ap, names in sorted(by_aperture.items())}

    catalogues = [n for n in parsed if n.product == P.STAR_CATALOGUE
                  and n.visit.visit_key == key]
    catalogue = (_pick_highest_version(folder, P.STAR_CATALOGUE, catalogues).path
                 if catalogues else None)

    versions = {subarray.version} | {P.parse_product_name(p).version
                                     for p in lightcurves.values()}
    if len(versions) > 1:
        warnings.warn(f"{folder}: products of different processing versions "
                      f"{sorted(versions)} are combined", stacklevel=2)

    return VisitProducts(folder=folder, layout=layout, visit=subarray.visit,
                         subarray=subarray.path, lightcurves=lightcurves,
                         star_catalogue=catalogue)


def products_fingerprint(products: VisitProducts) -> str:
    """One line per product file of a visit: path, size [bytes] and modification time [ns],
    tab-separated. A product replaced in place (even by an older or same-sized file, whose
    time or size differs) changes it: the workflow reruns a visit whose fingerprint changed."""
    paths = [products.subarray, *products.lightcurves.values()]
    if products.star_catalogue is not None:
        paths.append(products.star_catalogue)
    lines = []
    for path in sorted(Path(p).absolute() for p in paths):
        stat = path.stat()
        lines.append(f"{path}\t{stat.st_size}\t{stat.st_mtime_ns}")
    return "\n".join(lines) + "\n"
