"""The stars of a field and their tracks: the data passed between detection, tracking,
photometry and export. Pixel conventions: ``archi.__doc__``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from archi.visit import VisitContext

# FLAG bits of every star in every frame (0 = nothing to report). The star's own
# conditions first, then the DRP's conditions of the frame decoded from its EVENT code
# (:func:`event_flags`; the EVENT and STATUS columns themselves are exported too).
FLAG_OUT_OF_BOUNDS = 1
"""FLAG bit: the mask overlaps pixels outside the field of view (NaN) in this frame."""
FLAG_BAD_FRAME = 2
"""FLAG bit: the frame cannot be measured (all NaN, all zero or mostly non-finite:
:mod:`archi.framequality`); FLUX and FLUX_ERR are NaN."""
FLAG_NOT_MEASURED = 4
"""FLAG bit: the tracker found no measurement and used the predicted position."""
FLAG_FLUX_OUTLIER = 8
"""FLAG bit: the frame's total flux is an outlier (:mod:`archi.framequality`); measured,
but left out of the factor search, the CDPP and the prepare step's fits."""
FLAG_COSMIC = 16
"""FLAG bit: a cosmic-ray hit was patched inside the star's mask (informational: the
patched value replaces it)."""
FLAG_SAA = 32
"""FLAG bit: the DRP's EVENT says South Atlantic Anomaly (units digit > 0)."""
FLAG_TEMPERATURE = 64
"""FLAG bit: the DRP's EVENT reports a temperature event (tens digit > 0)."""
FLAG_EARTH = 128
"""FLAG bit: the DRP's EVENT reports Earth occultation or stray light (hundreds digit >
0; the digit is a level: pycheops keeps level 1, filter EVENT for that)."""
FLAG_MOON = 256
"""FLAG bit: the DRP's EVENT reports the Moon (thousands digit > 0)."""
FLAG_SUN = 512
"""FLAG bit: the DRP's EVENT reports the Sun (ten-thousands digit > 0)."""

FLAG_NAMES = {FLAG_OUT_OF_BOUNDS: "out_of_bounds", FLAG_BAD_FRAME: "bad_frame",
              FLAG_NOT_MEASURED: "not_measured", FLAG_FLUX_OUTLIER: "flux_outlier",
              FLAG_COSMIC: "cosmic", FLAG_SAA: "saa", FLAG_TEMPERATURE: "temperature",
              FLAG_EARTH: "earth", FLAG_MOON: "moon", FLAG_SUN: "sun"}
"""Every FLAG bit and its name (README: "FLAG bits")."""

FLAG_REJECT = (FLAG_OUT_OF_BOUNDS | FLAG_BAD_FRAME | FLAG_FLUX_OUTLIER | FLAG_SAA
               | FLAG_TEMPERATURE | FLAG_EARTH | FLAG_MOON | FLAG_SUN)
"""The bits of frames to leave out of a star's light curve; the others (a predicted
position, a patched cosmic ray) only inform. ``flag & FLAG_REJECT == 0``: good frames."""

_EVENT_DIGITS = ((1, FLAG_SAA), (10, FLAG_TEMPERATURE), (100, FLAG_EARTH),
                 (1000, FLAG_MOON), (10000, FLAG_SUN))


def event_flags(event: NDArray) -> NDArray[np.int32]:
    """FLAG bits of the DRP's EVENT codes (decimal digits, as pycheops decodes them: units
    SAA, tens temperature, hundreds Earth, thousands Moon, ten-thousands Sun; the cosmic-ray
    count above them concerns the target's aperture only, so it sets no bit: each star's
    own hits set :data:`FLAG_COSMIC`)."""
    event = np.asarray(event, dtype=np.int64)
    flag = np.zeros(event.shape, np.int32)
    for unit, bit in _EVENT_DIGITS:
        flag |= np.where((event // unit) % 10 > 0, bit, 0).astype(np.int32)
    return flag


def flag_text(flag: int) -> str:
    """The names of the bits set in ``flag``, joined by "+" ("" for 0)."""
    return "+".join(name for bit, name in FLAG_NAMES.items() if flag & bit)


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
    flag: NDArray[np.int32]  # FLAG_* bits (FLAG_NAMES), 0 = nothing to report
    methods: tuple[str, ...]  # mask method per star: "circle" or "shape"
    factors: NDArray[np.float64]  # mask factor per star (radius [pixel] or layers)
    npix: NDArray[np.float64]  # mean mask area per star [pixel]
    cdpp: NDArray[np.float64]  # noise metric per star [ppm]
    options: dict  # run options recorded in headers (METHOD, INITIAL, DETECT, GRID, ...)
    # with a field model (None without): the mask's sum, and the neighbours' modelled light
    # in it [electrons]; flux is then the star's own light
    flux_raw: NDArray[np.float64] | None = None
    conta: NDArray[np.float64] | None = None
    # the DRP's per-frame EVENT and STATUS codes of the visit (None: not known)
    event: NDArray[np.int32] | None = None
    status: NDArray[np.int32] | None = None
    # the visit's identity keywords and decorrelation series (None: not known)
    context: VisitContext | None = None

    @property
    def contamination(self) -> NDArray[np.float64]:
        """Per star: median neighbours' light / median own light on good frames (no
        :data:`FLAG_REJECT` bit; NaN
        without a field model)."""
        out = np.full(self.n_stars, np.nan)
        if self.conta is None:
            return out
        for j in range(self.n_stars):
            good = ((self.flag[j] & FLAG_REJECT) == 0) & np.isfinite(self.flux[j]) & np.isfinite(self.conta[j])
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
