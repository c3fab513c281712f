"""Home of the header keywords of ``lightcurves.fits`` (layout: :mod:`archi.io.lightcurves`):
the run options, the FLAG bits, the time reference of the ``TIME`` column, the DRP's
identity keywords and the visit's CCD geometry; and the visit context read back from them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from astropy.io import fits
from numpy.typing import NDArray

from archi.io.fitswrite import set_card
from archi.io.lightcurve_values import option_text
from archi.io.products import IDENTITY_KEYWORDS
from archi.stars import FLAG_NAMES
from archi.visit import VisitContext

__all__ = ["OPTION_KEYWORDS", "FLAG_COMMENTS", "TIME_OFFSET", "TIME_KEYWORDS", "card",
           "option_cards", "flag_cards", "time_cards", "context_cards", "read_context"]

OPTION_KEYWORDS: tuple[tuple[str, str, str], ...] = (
    ("METHOD", "method", "mask method"),
    ("INITIAL", "initial_detect", "initial detection mode"),
    ("DETECT", "detect_mode", "star tracking mode"),
    ("GRID", "grid_bg", "background grid size (0 = none)"),
    ("CDPPTYPE", "CDPP_type", "noise metric"), ("DECONTAM", "decontaminate", "FLUX is own light"),
)
"""Primary-header keywords of the run options: (FITS keyword, ``lc.options`` key, comment)."""

FLAG_COMMENTS = {
    "out_of_bounds": "mask touches pixels outside the field",
    "bad_frame": "frame lost/empty/half-read: FLUX NaN",
    "not_measured": "position predicted, not measured",
    "flux_outlier": "frame's total flux an outlier",
    "cosmic": "cosmic ray patched in the mask",
    "saa": "DRP EVENT: South Atlantic Anomaly",
    "temperature": "DRP EVENT: temperature",
    "earth": "DRP EVENT: Earth occultation/stray light",
    "moon": "DRP EVENT: Moon", "sun": "DRP EVENT: Sun"}
"""The comment of each primary ``FLAGB<i>`` keyword (FLAG bit names: archi.stars)."""

TIME_OFFSET = 2457000
"""``TIME = BJD_TDB - TIME_OFFSET`` [d] (the TESS convention: lightkurve's ``btjd``)."""

TIME_KEYWORDS: tuple[tuple[str, Any, str], ...] = (
    ("TIMESYS", "TDB", "time scale of TIME"),
    ("TIMEREF", "SOLARSYSTEM", "TIME is barycentric (OGIP)"),
    ("TREFPOS", "BARYCENTER", "TIME is barycentric (FITS standard)"),
    ("TIMEUNIT", "d", "unit of TIME"),
    ("BJDREFI", TIME_OFFSET, "[d] integer part of BJD_TDB - TIME"),
    ("BJDREFF", 0.0, "[d] fraction of BJD_TDB - TIME"),
    ("MJDREF", TIME_OFFSET - 2400000.5, "[d] the same reference as an MJD (astropy)"),
)
"""Keywords of every ``STAR_<n>`` header saying what ``TIME`` is, read by astropy
(``astropy_native=True``: TREFPOS, MJDREF) and lightkurve (BJDREFI: ``btjd``)."""

_CARD_VALUE_CHARS = 68  # longest string value of a single fixed-format card (quotes excluded)


def _header_value(value: Any) -> str | int | float | bool:
    """A value that fits one FITS card: numbers as they are, anything else as short text."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)  # a non-finite one is left out by set_card
    text = option_text(value)
    # a quote is written doubled inside a FITS string: count it twice. A callable's name is
    # at its end (module:qualname), so it keeps its end; other texts keep their start.
    keep_end = callable(value)
    if len(text) + text.count("'") > _CARD_VALUE_CHARS:
        while len(text) + text.count("'") > _CARD_VALUE_CHARS - 3:
            text = text[1:] if keep_end else text[:-1]
        text = "..." + text if keep_end else text + "..."
    return text


def card(header: fits.Header, key: str, value: Any, comment: str) -> None:
    """Set ``key`` to ``value`` made to fit one card; None and NaN are left out."""
    set_card(header, key, None if value is None else _header_value(value), comment)


def option_cards(header: fits.Header, options: Mapping) -> None:
    """The run options found in ``options`` (OPTION_KEYWORDS)."""
    for key, option, comment in OPTION_KEYWORDS:
        if option in options:
            card(header, key, options[option], comment)


def flag_cards(header: fits.Header) -> None:
    """``FLAGB<i>``: the name of FLAG bit 2**i, its meaning in the comment."""
    for bit, name in FLAG_NAMES.items():
        card(header, f"FLAGB{bit.bit_length() - 1}", name, FLAG_COMMENTS[name])


def time_cards(header: fits.Header) -> None:
    """What the ``TIME`` column is (TIME_KEYWORDS)."""
    for key, value, comment in TIME_KEYWORDS:
        card(header, key, value, comment)


def context_cards(header: fits.Header, context: VisitContext | None) -> None:
    """The DRP's identity keywords (IDENTITY_KEYWORDS, as the visit's DRP light curve has
    them) and the CCD geometry of the visit; nothing without a context."""
    if context is None:
        return
    for key, comment in IDENTITY_KEYWORDS.items():
        if key in context.keywords:
            card(header, key, context.keywords[key], f"DRP: {comment}")
    card(header, "X_WINOFF", context.window_offset[0], "[pixel] subarray x origin on the CCD")
    card(header, "Y_WINOFF", context.window_offset[1], "[pixel] subarray y origin on the CCD")
    card(header, "X_LOCATN", context.location[0], "[pixel] DRP LOCATION_X (target on CCD)")
    card(header, "Y_LOCATN", context.location[1], "[pixel] DRP LOCATION_Y (target on CCD)")
    card(header, "DRP_AP", context.drp_aperture or None, "DRP light curve of BACKGROUND")


def read_context(primary: fits.Header, background: NDArray,
                 therm_front_2: NDArray | None) -> VisitContext | None:
    """The visit context written by :func:`context_cards` (None when the file has none:
    layouts before 4, or light curves written without one)."""
    if "X_WINOFF" not in primary:
        return None

    def number(key: str) -> float:
        value = primary.get(key)
        return math.nan if value is None else float(value)

    return VisitContext(
        keywords={k: primary[k] for k in IDENTITY_KEYWORDS if k in primary},
        background=np.asarray(background, float),
        window_offset=(number("X_WINOFF"), number("Y_WINOFF")),
        location=(number("X_LOCATN"), number("Y_LOCATN")),
        therm_front_2=None if therm_front_2 is None else np.asarray(therm_front_2, float),
        drp_aperture=str(primary.get("DRP_AP", "")))
