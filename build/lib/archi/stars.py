"""The stars of a field and their tracks: the data passed between detection, tracking,
photometry and export. Pixel conventions: ``archi.__doc__``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

FLAG_OUT_OF_BOUNDS = 1
"""FLAG bit: the mask overlaps pixels outside the field of view (NaN) in this frame."""
FLAG_DRP_STATUS = 2
"""FLAG bit: the DRP flagged this frame (STATUS != 0: cosmic ray, Earth, SAA, ...)."""
FLAG_NOT_MEASURED = 4
"""FLAG bit: the tracker found no measurement and used the predicted position."""


@dataclass(frozen=True)
class StarList:
    """Stars found in a visit, in pipeline order: 0 = target, then by distance from it.

    Catalogue columns are NaN (``catalogue_row`` -1, ``source_id`` "") for stars found only
    in the image.
    """

    x0: NDArray[np.float64]  # first-frame position [pixel]
    y0: NDArray[np.float64]
    catalogue_row: NDArray[np.int64]  # row in the DRP star catalogue, -1 if unmatched
    source_id: NDArray[np.str_]  # catalogue ID (Gaia source id), "" if unmatched
    ra: NDArray[np.float64]  # [deg]
    dec: NDArray[np.float64]  # [deg]
    mag: NDArray[np.float64]  # Gaia G [mag]
    brightness: NDArray[np.float64]  # relative flux estimate used for ordering/blending [e]

    def __post_init__(self) -> None:
        n = len(self.x0)
        for name in ("y0", "catalogue_row", "source_id", "ra", "dec", "mag", "brightness"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"StarList.{name} has {len(getattr(self, name))} entries, "
                                 f"expected {n}")

    @property
    def n_stars(self) -> int:
        return len(self.x0)

    @property
    def distance(self) -> NDArray[np.float64]:
        """Distance from the target (star 0) in the first frame [pixel]."""
        return np.hypot(self.x0 - self.x0[0], self.y0 - self.y0[0])


@dataclass(frozen=True)
class Tracks:
    """Position of every star in every frame, shape (n_stars, n_frames) [pixel]."""

    x: NDArray[np.float64]
    y: NDArray[np.float64]
    measured: NDArray[np.bool_]  # False where the tracker fell back to a prediction

    @property
    def n_stars(self) -> int:
        return self.x.shape[0]

    @property
    def n_frames(self) -> int:
        return self.x.shape[1]


@dataclass(frozen=True)
class StarLightCurves:
    """Light curves of every star of a visit with the masks chosen for them.

    Per star-frame arrays have shape (n_stars, n_frames).
    """

    visit_key: str  # file key of the visit, e.g. CH_PR140063_TG002401_V0300
    mjd_time: NDArray[np.float64]  # [day, TT]
    bjd_time: NDArray[np.float64]  # [day, BJD_TDB]
    roll_angle: NDArray[np.float64]  # [deg]
    stars: StarList
    tracks: Tracks
    flux: NDArray[np.float64]  # [electrons per stacked image]
    flux_err: NDArray[np.float64]  # [electrons]
    flag: NDArray[np.int32]  # FLAG_* bits, 0 = good
    methods: tuple[str, ...]  # mask method per star: "circle" or "shape"
    factors: NDArray[np.float64]  # mask factor per star (radius [pixel] or layers)
    npix: NDArray[np.float64]  # mean mask area per star [pixel]
    cdpp: NDArray[np.float64]  # noise metric per star [ppm]
    options: dict  # run options recorded in headers (METHOD, INITIAL, DETECT, GRID, ...)
    # with a field model (None without): the mask's sum, and the neighbours' modelled light
    # in it [electrons]; flux is then the star's own light
    flux_raw: NDArray[np.float64] | None = None
    conta: NDArray[np.float64] | None = None

    @property
    def contamination(self) -> NDArray[np.float64]:
        """Per star: median neighbours' light / median own light on good frames (NaN
        without a field model)."""
        out = np.full(self.n_stars, np.nan)
        if self.conta is None:
            return out
        for j in range(self.n_stars):
            good = (self.flag[j] == 0) & np.isfinite(self.flux[j]) & np.isfinite(self.conta[j])
            if good.any():
                own = np.median(self.flux[j, good])
                out[j] = np.median(self.conta[j, good]) / own if own > 0 else np.nan
        return out

    @property
    def n_stars(self) -> int:
        """Number of stars, the target first (the tracks' first axis)."""
        return self.tracks.x.shape[0]

    @property
    def n_frames(self) -> int:
        """Number of frames (the tracks' second axis)."""
        return self.tracks.x.shape[1]
