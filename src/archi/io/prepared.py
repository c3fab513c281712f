"""Home of ``prepared.fits``: the result of the prepare step (stars and their tracks), saved
once per visit and read by every later job of the visit.

Layout: primary header VISIT; ``INFO`` table with one YAML text cell holding the visit
folder, layout, visit key, all options and the measured astrometry
(:meth:`archi.astrometry.AstrometryFit.to_dict`, when measured); ``STARS`` table (X0, Y0
[pixel], CATALOGUE_ROW, SOURCE_ID, RA, DEC [deg], MAG, BRIGHTNESS [e]); ``X``, ``Y`` images
(n_stars, n_frames) [pixel]; ``MEASURED`` image (1 where the tracker measured the position);
``COSMICS`` table (FRAME, Y, X, VALUE [e]): the cosmic-ray hits and the values that replace
them; ``FRAME_PROBLEM`` image (n_frames,) uint8: each frame's problem bits
(:mod:`archi.framequality`, 0 = good; absent in older files: every frame good).

With a field model (:class:`archi.contamination.FieldModel`): ``PSF`` image (the visit's PSF
stamp, unit sum; header RADIUS [pixel], OVERSAMP), ``PSF_PHASES`` image
((OVERSAMP + 1)^2, 2 RADIUS + 1, 2 RADIUS + 1) float32: the stamp at every sub-pixel phase
(:meth:`archi.psf.EmpiricalPsf.phase_stamps`; absent in older files: computed when
used), ``MODEL_XY`` image (2, n_model, n_frames)
[pixel] (rows 0..n_stars-1 are the tracked stars), ``MODEL_CENTRE`` image (2, n_frames)
[pixel] (the point the field turns about), ``MODEL_FLUX`` image (n_model,) [e] (header
DROLL [deg]: the roll during one exposure), ``USABLE`` image (1 where the images hold data),
``MODEL_IMAGES`` (n_frames, H, W) float32 [e] when the model was rendered (NaN outside
the field of view), ``RESIDUAL_SKY`` image (n_frames,) [e per pixel]: the background level
the DRP left in each frame (:attr:`archi.prepared.Prepared.residual_sky`)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml
from astropy.io import fits

from archi.astrometry import AstrometryFit
from archi.cosmics import CosmicHits
from archi.errors import CorruptProductError
from archi.fieldimage import FieldModel
from archi.framequality import FrameQuality, paged
from archi.io.atomic import atomic_path
from archi.io.fitswrite import named_table
from archi.options import Options
from archi.prepared import Prepared
from archi.psf import EmpiricalPsf
from archi.stars import StarList, Tracks

__all__ = ["write_prepared", "read_prepared", "read_model_images"]


def write_prepared(path: str | Path, prepared: Prepared) -> None:
    """Write ``prepared`` to ``path`` atomically (layout: module docstring)."""
    s, hits = prepared.stars, prepared.cosmics
    stars = named_table("STARS", [
        ("X0", "D", "pixel", s.x0), ("Y0", "D", "pixel", s.y0),
        ("CATALOGUE_ROW", "K", None, s.catalogue_row), ("SOURCE_ID", "20A", None, s.source_id),
        ("RA", "D", "deg", s.ra), ("DEC", "D", "deg", s.dec), ("MAG", "D", "mag", s.mag),
        ("BRIGHTNESS", "D", "electron", s.brightness)])
    info_text = yaml.safe_dump({"visit_folder": str(prepared.visit_folder),
                                "layout": prepared.layout, "visit_key": prepared.visit_key,
                                "options": prepared.options.to_dict(),
                                **({} if prepared.astrometry is None else
                                   {"astrometry": prepared.astrometry.to_dict()})},
                               sort_keys=False)
    info = named_table("INFO", [("YAML", f"{len(info_text)}A", None, [info_text])])
    primary = fits.PrimaryHDU()
    primary.header["VISIT"] = prepared.visit_key
    hdul = fits.HDUList([
        primary, info, stars,
        fits.ImageHDU(prepared.tracks.x, name="X"), fits.ImageHDU(prepared.tracks.y, name="Y"),
        fits.ImageHDU(prepared.tracks.measured.astype(np.uint8), name="MEASURED"),
        named_table("COSMICS", [("FRAME", "K", None, hits.frame), ("Y", "K", None, hits.y),
                                ("X", "K", None, hits.x),
                                ("VALUE", "D", "electron", hits.value)]),
        fits.ImageHDU(prepared.frame_quality().problem, name="FRAME_PROBLEM")])
    if prepared.model is not None:
        hdul.extend(_model_hdus(prepared.model))
    if prepared.residual_sky is not None:
        hdul.append(fits.ImageHDU(np.asarray(prepared.residual_sky, float),
                                  name="RESIDUAL_SKY"))
    with atomic_path(path) as tmp:
        hdul.writeto(tmp)


def _model_hdus(model: FieldModel) -> list[fits.ImageHDU]:
    psf = fits.ImageHDU(model.psf.stamp, name="PSF")
    psf.header["RADIUS"] = (model.psf.radius, "stamp radius [pixel]")
    psf.header["OVERSAMP"] = (model.psf.oversample, "phase steps per pixel")
    # the PSF at every sub-pixel phase: the later jobs read them instead of computing them
    phases = fits.ImageHDU(model.psf.phase_stamps(), name="PSF_PHASES")
    flux = fits.ImageHDU(np.asarray(model.flux, float), name="MODEL_FLUX")
    flux.header["DROLL"] = (model.droll_deg, "roll change during one exposure [deg]")
    usable = (np.ones(model.shape, bool) if model.usable is None else model.usable)
    return [psf, phases, fits.ImageHDU(np.stack([model.x, model.y]), name="MODEL_XY"),
            fits.ImageHDU(np.stack([model.target_x, model.target_y]), name="MODEL_CENTRE"),
            flux, fits.ImageHDU(usable.astype(np.uint8), name="USABLE")] + (
        [] if model.images is None else [fits.ImageHDU(model.images, name="MODEL_IMAGES")])


def _read_model(hdul: fits.HDUList) -> FieldModel | None:
    if "PSF" not in hdul:
        return None
    psf = EmpiricalPsf(np.asarray(hdul["PSF"].data, float), int(hdul["PSF"].header["RADIUS"]),
                       int(hdul["PSF"].header["OVERSAMP"]))
    if "PSF_PHASES" in hdul:  # absent from files written before it was stored
        psf.adopt_phase_stamps(np.asarray(hdul["PSF_PHASES"].data, np.float32))
    xy = np.asarray(hdul["MODEL_XY"].data, float)
    centre = np.asarray(hdul["MODEL_CENTRE"].data, float)
    usable = np.asarray(hdul["USABLE"].data).astype(bool)
    # read a chunk at a time where used, the file's pages dropped (framequality.paged):
    # not held whole (160 MB for 1000 frames, twice while converted to native float32)
    images = (paged(hdul["MODEL_IMAGES"].data)
              if "MODEL_IMAGES" in hdul else None)
    return FieldModel(psf, xy[0], xy[1], centre[0], centre[1],
                      np.asarray(hdul["MODEL_FLUX"].data, float),
                      float(hdul["MODEL_FLUX"].header["DROLL"]),
                      usable.shape, usable, images)


def read_prepared(path: str | Path) -> Prepared:
    """Read a file written by :func:`write_prepared`.

    Raises :class:`~archi.errors.CorruptProductError` (naming the file) when it is missing or
    not in that layout.
    """
    path = Path(path)
    try:
        with fits.open(path) as hdul:
            s = hdul["STARS"].data
            stars = StarList(
                x0=np.asarray(s["X0"], float), y0=np.asarray(s["Y0"], float),
                catalogue_row=np.asarray(s["CATALOGUE_ROW"], np.int64),
                source_id=np.char.strip(np.asarray(s["SOURCE_ID"]).astype(str)),
                ra=np.asarray(s["RA"], float), dec=np.asarray(s["DEC"], float),
                mag=np.asarray(s["MAG"], float), brightness=np.asarray(s["BRIGHTNESS"], float))
            tracks = Tracks(x=np.asarray(hdul["X"].data, float),
                            y=np.asarray(hdul["Y"].data, float),
                            measured=np.asarray(hdul["MEASURED"].data).astype(bool))
            c = hdul["COSMICS"].data
            cosmics = CosmicHits(np.asarray(c["FRAME"], np.int64), np.asarray(c["Y"], np.int64),
                                 np.asarray(c["X"], np.int64), np.asarray(c["VALUE"], float))
            info = yaml.safe_load(hdul["INFO"].data["YAML"][0])
            options = Options.from_mapping(info["options"], source=str(path))
            model = _read_model(hdul)
            frames = (FrameQuality(np.asarray(hdul["FRAME_PROBLEM"].data, np.uint8))
                      if "FRAME_PROBLEM" in hdul else None)
            astrometry = (AstrometryFit.from_dict(info["astrometry"])
                          if "astrometry" in info else None)
            sky = (np.asarray(hdul["RESIDUAL_SKY"].data, float)
                   if "RESIDUAL_SKY" in hdul else None)
    except (OSError, KeyError, ValueError, TypeError, yaml.YAMLError) as exc:
        raise CorruptProductError(path, f"not a prepared-visit file ({exc})") from None
    return Prepared(Path(info["visit_folder"]), info["layout"], info["visit_key"], options,
                    stars, tracks, cosmics, model, astrometry, frames, sky)


def read_model_images(path: str | Path):
    """The rendered field model of a file written by :func:`write_prepared`, paged
    (:func:`archi.framequality.paged`: read a chunk at a time, not held whole), or None
    when it holds none."""
    with fits.open(path) as hdul:
        return paged(hdul["MODEL_IMAGES"].data) if "MODEL_IMAGES" in hdul else None
