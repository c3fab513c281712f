"""Home of reading a visit's DRP products (DRP or CHEOPSim layout) into a
:class:`archi.visit.Visit`."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
from astropy.io import fits

from archi.errors import CorruptProductError, InputWarning, ProductNotFoundError, one_line
from archi.geometry import SUBARRAY_SIZE, fill_roll_angles
from archi.io import products as P
from archi.io.find import VisitProducts, find_visit_products
from archi.visit import DrpLightCurve, StarCatalogue, Visit

APERTURE_PREFERENCE = ("DEFAULT", "OPTIMAL", "RINF", "RSUP")
THERM_FRONT_2 = "thermFront_2"  # the tube thermistor of the PSF's "ramp" (read when present)


def _open(path: Path) -> fits.HDUList:
    """Open a FITS file and check it is complete; one-line errors naming the file."""
    try:
        with warnings.catch_warnings():  # a truncated file gets our own error below
            warnings.filterwarnings("ignore", message="File may have been truncated")
            hdul = fits.open(path, memmap=True, lazy_load_hdus=False)
    except (OSError, ValueError, TypeError, IndexError) as exc:
        # astropy's first sentence only: its tip (ignore_missing_simple) is not for users
        reason = one_line(exc).split(". If this is really")[0].rstrip(".")
        raise CorruptProductError(path, f"not a readable FITS file ({reason})") from None
    size = os.path.getsize(path)
    for index, hdu in enumerate(hdul):
        info = hdu.fileinfo()
        if info and info["datLoc"] + info["datSpan"] > size:
            hdul.close()
            raise CorruptProductError(path, f"truncated: HDU {index} needs "
                                      f"{info['datLoc'] + info['datSpan']} bytes, file has {size}")
    return hdul


def _extension(hdul: fits.HDUList, path: Path, extname: str):
    try:
        return hdul[extname]
    except KeyError:
        names = ", ".join(h.name for h in hdul[1:]) or "none"
        raise CorruptProductError(path, f"no {extname} extension (extensions: {names})") from None


def _columns(table, path: Path, extname: str, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    present = {n.upper() for n in table.columns.names}
    missing = [n for n in names if n.upper() not in present]
    if missing:
        raise CorruptProductError(path, f"{extname} lacks column(s) {', '.join(missing)}")
    return {n: np.asarray(table.data[n]) for n in names}


def read_lightcurve(path: str | Path) -> tuple[DrpLightCurve, dict[str, np.ndarray], fits.Header]:
    """Read one ``SCI_COR_Lightcurve`` file: the light curve, its time/pointing columns, header."""
    path = Path(path)
    with _open(path) as hdul:
        hdu = _extension(hdul, path, P.LIGHTCURVE)
        header = hdu.header.copy()
        names = tuple(name for name, _, _ in P.LIGHTCURVE_COLUMNS)
        cols = _columns(hdu, path, P.LIGHTCURVE, names)
    if "AP_RADI" not in header:
        raise CorruptProductError(path, "header lacks AP_RADI (aperture radius)")
    aperture = str(header.get("DATANAME", "")).strip() or "UNKNOWN"
    lc = DrpLightCurve(
        aperture=aperture, radius=float(header["AP_RADI"]), path=path,
        flux=cols["FLUX"].astype(float), flux_err=cols["FLUXERR"].astype(float),
        background=cols["BACKGROUND"].astype(float), dark=cols["DARK"].astype(float),
        conta_lc=cols["CONTA_LC"].astype(float),
        status=cols["STATUS"].astype(np.int32), event=cols["EVENT"].astype(np.int32))
    return lc, cols, header


def read_star_catalogue(path: str | Path, allow_empty: bool = False) -> StarCatalogue | None:
    """Read an ``EXT_PRE_StarCatalogue`` (MAG_GAIA, or MAG_CHEOPS in pre-13 products).
    An empty one is an error, or None with ``allow_empty`` (a visit without catalogue stars)."""
    path = Path(path)
    with _open(path) as hdul:
        hdu = _extension(hdul, path, P.STAR_CATALOGUE)
        header = hdu.header
        names = {n.upper() for n in hdu.columns.names}
        mag_col = next((c for c in ("MAG_GAIA", "MAG_CHEOPS") if c in names), None)
        if mag_col is None:
            raise CorruptProductError(path, "star catalogue has neither MAG_GAIA nor MAG_CHEOPS")
        cols = _columns(hdu, path, P.STAR_CATALOGUE, ("ID", "RA", "DEC", mag_col))
        n = len(cols["RA"])
        if n == 0 and allow_empty:
            return None
        if n == 0:
            raise CorruptProductError(path, "star catalogue is empty (row 0 must be the target)")
        for key in ("CENT_RA", "CENT_DEC"):
            if key not in header:
                raise CorruptProductError(path, f"star catalogue header lacks {key}")
        t_eff = (np.asarray(hdu.data["T_EFF"], float) if "T_EFF" in names
                 else np.full(n, np.nan))
        is_target = (np.asarray(hdu.data["TARGET"], bool) if "TARGET" in names
                     else np.arange(n) == 0)
        return StarCatalogue(
            path=path, ids=np.char.strip(cols["ID"].astype(str)),
            ra=cols["RA"].astype(float), dec=cols["DEC"].astype(float),
            mag=cols[mag_col].astype(float), t_eff=t_eff, is_target=is_target,
            centre_ra=float(header["CENT_RA"]), centre_dec=float(header["CENT_DEC"]),
            magnitude_column=mag_col)


def _choose_reference(lightcurves: dict[str, DrpLightCurve], wanted: str, folder: Path) -> str:
    if wanted in lightcurves:
        return wanted
    fallback = next((a for a in APERTURE_PREFERENCE if a in lightcurves), sorted(lightcurves)[0])
    warnings.warn(f"{folder}: no {wanted} light curve (V0300 visits have no OPTIMAL); "
                  f"using {fallback}", InputWarning, stacklevel=4)  # the caller of read_visit
    return fallback


def read_visit(folder: str | Path, layout: str = "auto", aperture: str = "DEFAULT",
               products: VisitProducts | None = None) -> Visit:
    """Read one visit.

    Parameters
    ----------
    folder : visit folder (DRP download or CHEOPSim job folder).
    layout : ``auto``, ``drp`` or ``cheopsim`` (see :mod:`archi.io.find`).
    aperture : DRP light curve whose roll angles, centroids, background and dark are used
        (``official_curve`` in archi). A missing one falls back to DEFAULT with a warning.

    Repairs and fallbacks warn (:class:`~archi.errors.InputWarning`) and are kept in
    ``Visit.input_warnings``.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InputWarning)
        visit = _read_visit(folder, layout, aperture, products)
    for w in caught:  # said as they would have been, and kept
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    visit.input_warnings = tuple(str(w.message) for w in caught
                                 if issubclass(w.category, InputWarning))
    return visit


def _read_visit(folder: str | Path, layout: str, aperture: str,
                products: VisitProducts | None) -> Visit:
    prods = products or find_visit_products(folder, layout)
    folder = prods.folder
    lightcurves, reference, cols, lc_header = _read_lightcurves(prods, aperture)
    lc_path = prods.lightcurves[reference]
    path = prods.subarray
    cube, cube_header, meta, smearing = _read_subarray(path)
    _check_frames(cube.shape[0], path, lightcurves, cols, lc_path, meta)
    roll, estimated = _roll_angles(cols, lc_path)

    location_x = float(cols["LOCATION_X"][0])
    location_y = float(cols["LOCATION_Y"][0])
    # Without WINOFF keywords, assume the intended target position is the subarray centre.
    x_winoff = float(cube_header.get("X_WINOFF", location_x - SUBARRAY_SIZE / 2))
    y_winoff = float(cube_header.get("Y_WINOFF", location_y - SUBARRAY_SIZE / 2))
    for key in ("EXPTIME", "NEXP"):
        if key not in lc_header:
            raise CorruptProductError(lc_path, f"header lacks {key}")

    catalogue = None
    if prods.star_catalogue:
        catalogue = read_star_catalogue(prods.star_catalogue, allow_empty=True)
        if catalogue is None:
            warnings.warn(f"{prods.star_catalogue.name}: star catalogue is empty: no "
                          f"catalogue star (initial_detect 'fits' cannot be used)",
                          InputWarning, stacklevel=2)
    ref_lc = lightcurves[reference]
    return Visit(
        visit_id=P.VisitId(prods.visit.progtype, prods.visit.prog_id, prods.visit.req_id,
                           prods.visit.visitctr, prods.visit.version,
                           int(lc_header.get("OBSID", 0))),
        folder=folder, subarray_path=path, cube=cube,
        mjd_time=cols["MJD_TIME"].astype(float), bjd_time=cols["BJD_TIME"].astype(float),
        utc_time=np.char.strip(cols["UTC_TIME"].astype(str)),
        roll_angle=roll, roll_estimated=estimated,
        centroid_x=cols["CENTROID_X"].astype(float), centroid_y=cols["CENTROID_Y"].astype(float),
        location_x=location_x, location_y=location_y, x_winoff=x_winoff, y_winoff=y_winoff,
        exptime=float(lc_header["EXPTIME"]), nexp=int(lc_header["NEXP"]),
        ron=meta["RON"].astype(float), lightcurves=lightcurves, reference_aperture=reference,
        status=ref_lc.status, event=ref_lc.event, catalogue=catalogue,
        target_name=str(lc_header.get("TARGNAME", "")).strip(),
        ra_target=float(lc_header.get("RA_TARG", np.nan)),
        dec_target=float(lc_header.get("DEC_TARG", np.nan)),
        mag_target=float(lc_header.get("MAG_G", np.nan)),
        smearing_row=smearing,
        header={k: lc_header[k] for k in P.IDENTITY_KEYWORDS if k in lc_header},
        therm_front_2=meta.get("thermFront_2"))


def check_visit_products(folder: str | Path, layout: str = "auto",
                         needs_catalogue: bool = False) -> VisitProducts:
    """The products of a visit, each opened once without reading its data: every file FITS
    and complete, the expected extension present, the SubArray a cube of 200x200 frames.
    Cheap (headers only): the workflow runs it on every visit before any job.
    ``needs_catalogue`` (``initial_detect`` with ``fits``): a missing or empty star
    catalogue is an error too. Raises ProductNotFoundError or CorruptProductError (one line
    naming the file)."""
    prods = find_visit_products(folder, layout)
    if needs_catalogue and prods.star_catalogue is None:
        raise ProductNotFoundError(f"{prods.folder}: initial_detect 'fits' needs the star "
                                   f"catalogue ({P.STAR_CATALOGUE}), which this visit lacks")
    n_frames = _cube_frames(prods.subarray)
    for lc in prods.lightcurves.values():
        rows = _header(lc, P.LIGHTCURVE).get("NAXIS2")
        if rows != n_frames:
            raise CorruptProductError(lc, f"light curve has {rows} rows but the subarray "
                                      f"{prods.subarray.name} has {n_frames} frames")
    if prods.star_catalogue is not None:
        rows = _header(prods.star_catalogue, P.STAR_CATALOGUE).get("NAXIS2")
        if needs_catalogue and not rows:
            raise CorruptProductError(prods.star_catalogue, "star catalogue is empty: "
                                      "initial_detect 'fits' needs its stars (use dynam)")
    return prods


def visit_frames(folder: str | Path, layout: str = "auto") -> int:
    """The number of frames of a visit's SubArray, from its header (no data read)."""
    return _cube_frames(find_visit_products(folder, layout).subarray)


def _header(path: Path, extname: str) -> fits.Header:
    """The header of extension ``extname`` of a complete FITS file (no data read)."""
    with _open(path) as hdul:
        return _extension(hdul, path, extname).header.copy()


def _cube_frames(path: Path) -> int:
    """The number of frames of a SubArray file, from its header; CorruptProductError unless
    its frames are 200x200 pixels."""
    header = _header(path, P.SUBARRAY)
    shape = tuple(header.get(f"NAXIS{i}") for i in (1, 2))
    if header.get("NAXIS") != 3 or shape != (SUBARRAY_SIZE, SUBARRAY_SIZE):
        raise CorruptProductError(path, f"{P.SUBARRAY} is not a cube of {SUBARRAY_SIZE}x"
                                  f"{SUBARRAY_SIZE} frames (NAXIS = {header.get('NAXIS')}, "
                                  f"frames {shape[0]}x{shape[1]})")
    return int(header["NAXIS3"])


def _read_lightcurves(prods: VisitProducts, aperture: str
                      ) -> tuple[dict[str, DrpLightCurve], str, dict[str, np.ndarray],
                                 fits.Header]:
    """(every DRP light curve, the reference aperture, its columns, its header)."""
    lightcurves: dict[str, DrpLightCurve] = {}
    tables: dict[str, dict[str, np.ndarray]] = {}
    headers: dict[str, fits.Header] = {}
    for name, path in prods.lightcurves.items():
        lc, cols, header = read_lightcurve(path)
        lightcurves[name], tables[name], headers[name] = lc, cols, header
    reference = _choose_reference(lightcurves, aperture, prods.folder)
    _roll_from_other_curves(tables, reference, prods.lightcurves[reference])
    return lightcurves, reference, tables[reference], headers[reference]


def _roll_from_other_curves(tables: dict[str, dict[str, np.ndarray]], reference: str,
                            path: Path) -> None:
    """NaN roll angles [deg] of the reference curve taken from the other DRP curves of the
    same frames (same MJD_TIME), in APERTURE_PREFERENCE order, with a warning."""
    cols = tables[reference]
    roll = np.asarray(cols["ROLL_ANGLE"], dtype=float).copy()
    taken: list[str] = []
    order = [a for a in APERTURE_PREFERENCE if a in tables] + sorted(
        set(tables) - set(APERTURE_PREFERENCE))
    for name in order:
        other = tables[name]
        missing = ~np.isfinite(roll)
        if name == reference or not missing.any() or len(other["MJD_TIME"]) != len(roll):
            continue
        same = np.abs(np.asarray(other["MJD_TIME"], float) - cols["MJD_TIME"]) < 1.0 / 86400
        usable = missing & same & np.isfinite(np.asarray(other["ROLL_ANGLE"], float))
        if usable.any():
            roll[usable] = np.asarray(other["ROLL_ANGLE"], float)[usable]
            taken.append(f"{int(usable.sum())} from {name}")
    if taken:
        warnings.warn(f"{path.name}: NaN roll angle(s) taken from the other DRP light "
                      f"curves ({', '.join(taken)})", InputWarning, stacklevel=4)
        cols["ROLL_ANGLE"] = roll


def _read_subarray(path: Path) -> tuple[np.ndarray, fits.Header, dict[str, np.ndarray],
                                        np.ndarray | None]:
    """(cube (memory-mapped), its header, COR metadata columns, smearing rows or None)."""
    hdul = _open(path)
    cube_hdu = _extension(hdul, path, P.SUBARRAY)
    if cube_hdu.header.get("NAXIS") != 3:
        raise CorruptProductError(path, f"{P.SUBARRAY} is not a 3-D cube "
                                  f"(NAXIS = {cube_hdu.header.get('NAXIS')})")
    cube = cube_hdu.data
    if cube.shape[1:] != (SUBARRAY_SIZE, SUBARRAY_SIZE):
        raise CorruptProductError(path, f"frames are {cube.shape[2]}x{cube.shape[1]} pixels, "
                                  f"expected {SUBARRAY_SIZE}x{SUBARRAY_SIZE}")
    # read-only: prepare drops the memory map's pages after reading them
    # (framequality.MaskedCube), so a write into the cube would silently revert
    cube.flags.writeable = False
    n_frames = cube.shape[0]
    meta_hdu = _extension(hdul, path, P.COR_METADATA)
    meta = _columns(meta_hdu, path, P.COR_METADATA, ("MJD_TIME", "RON"))
    if THERM_FRONT_2.upper() in {n.upper() for n in meta_hdu.columns.names}:
        meta[THERM_FRONT_2] = np.asarray(meta_hdu.data[THERM_FRONT_2], float)
    if len(meta["RON"]) != n_frames:
        raise CorruptProductError(path, f"{P.COR_METADATA} has {len(meta['RON'])} rows for "
                                  f"{n_frames} frames")
    smearing = None
    if P.SMEARING_ROW in [h.name for h in hdul]:
        smear = np.asarray(hdul[P.SMEARING_ROW].data, dtype=float)
        smearing = smear.reshape(smear.shape[0], -1) if smear.ndim >= 2 else None
    cube_header = cube_hdu.header
    # astropy keeps the memory map open for as long as ``cube`` is referenced
    hdul.close()
    return cube, cube_header, meta, smearing


def _check_frames(n_frames: int, subarray: Path, lightcurves: dict[str, DrpLightCurve],
                  cols: dict[str, np.ndarray], lc_path: Path,
                  meta: dict[str, np.ndarray]) -> None:
    """Raise CorruptProductError unless every light curve has the cube's frames."""
    n_rows = len(cols["MJD_TIME"])
    if n_rows != n_frames:
        raise CorruptProductError(lc_path, f"light curve has {n_rows} rows but the subarray "
                                  f"{subarray.name} has {n_frames} frames")
    for lc in lightcurves.values():
        if len(lc.flux) != n_frames:
            raise CorruptProductError(lc.path, f"light curve has {len(lc.flux)} rows but the "
                                      f"subarray has {n_frames} frames")
    if not np.allclose(meta["MJD_TIME"], cols["MJD_TIME"], rtol=0, atol=1.0 / 86400):
        raise CorruptProductError(lc_path, "MJD_TIME differs from the subarray metadata by "
                                  "more than 1 s: the light curve is not of this cube")


def _roll_angles(cols: dict[str, np.ndarray], lc_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(roll angles [deg], which were NaN and estimated from time), warning when any was."""
    try:
        roll, estimated = fill_roll_angles(cols["MJD_TIME"], cols["ROLL_ANGLE"])
    except ValueError as exc:
        raise CorruptProductError(lc_path, str(exc)) from None
    if estimated.any():
        warnings.warn(f"{lc_path.name}: {int(estimated.sum())} NaN roll angle(s) estimated "
                      f"from time", InputWarning, stacklevel=3)  # the caller of read_visit
    return roll, estimated
