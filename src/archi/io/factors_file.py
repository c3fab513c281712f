"""Home of the optimised-factors file: each visit's chosen mask per star (YAML).

Layout (version 1)::

    format: archi-optimized-factors
    version: 1
    visits:
      CH_PR100018_TG027204_V0200:
        settings: {detect_mode: dynam, grid_bg: 0}
        stars:
          0: {method: circle, factor: 10.3, cdpp: 154.2, valid: true}
          1: {method: shape, factor: 3, cdpp: 812.0, valid: true}
          2: {method: shape, factor: null, cdpp: null, valid: false}
          3: {method: psf, factor: null, cdpp: null, valid: true}
          4: {method: circle, factor: 8.0, cdpp: null, valid: false}

A ``psf`` star (PSF photometry, :mod:`archi.psfphot`) has no mask, so no factor. A star
with ``valid: false`` had no valid run (its masks out of the field, or a visit too short
for the metric): its factor, when there is one, is the search's documented fallback
(:func:`archi.optimize.choose`), its CDPP null.

A missing file raises :class:`~archi.errors.ProductNotFoundError`, a file that cannot be read
or has the wrong content :class:`~archi.errors.CorruptProductError` (naming the file and the
entry); a bad argument ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import yaml

from archi.errors import (
    ConfigError,
    CorruptProductError,
    ProductNotFoundError,
    one_line,
)
from archi.factors import check_star_index, round_factor
from archi.io.atomic import write_text_atomically
from archi.options import METHODS, Options

OPTIMIZED_FACTORS_FORMAT = "archi-optimized-factors"
"""Value of the ``format`` key of the optimised-factors file."""

OPTIMIZED_FACTORS_VERSION = 1
"""Layout version of the optimised-factors file written by this module."""

SEARCH_SETTINGS = ("initial_detect", "detect_mode", "grid_bg")
"""The options recorded with the factors of a search (:func:`write_search_factors`)."""


@dataclass(frozen=True)
class StarFactor:
    """Optimised mask of one star."""

    method: str
    """``circle``, ``shape`` or ``psf``."""
    factor: float | None
    """Best factor (radius [px] or layers); ``None`` when no valid factor was found, or for
    ``psf`` (no mask)."""
    cdpp: float | None = None
    """CDPP [ppm] at that factor, if recorded."""
    valid: bool = True
    """False when the star had no valid run (``factor`` is then ``None``, or the
    search's fallback: :func:`archi.optimize.choose`)."""


@dataclass(frozen=True)
class VisitFactors:
    """Optimised masks of every star of one visit."""

    visit_id: str
    stars: dict[int, StarFactor]
    settings: dict[str, Any] = field(default_factory=dict)
    """Free-form settings the factors were optimised with (detect mode, grid_bg, ...)."""

    @property
    def factors(self) -> dict[int, float | None]:
        """``{star: factor}``."""
        return {k: s.factor for k, s in self.stars.items()}

    @property
    def methods(self) -> dict[int, str]:
        """``{star: method}``."""
        return {k: s.method for k, s in self.stars.items()}


def write_search_factors(path: str | Path, options: Options, visit_id: str,
                         factors: Mapping[int, float], cdpp: Mapping[int, float],
                         valid: Mapping[int, bool] | None = None) -> VisitFactors:
    """:func:`write_optimized_factors` of a search's choice (``valid``: False for a
    star's fallback factor), with the options it records."""
    return write_optimized_factors(path, factors,
                                   methods={j: options.star_method(j) for j in factors},
                                   visit_id=visit_id, cdpp=cdpp,
                                   settings={name: getattr(options, name)
                                             for name in SEARCH_SETTINGS}, valid=valid)


def stored_factors(path: str | Path, visit_id: str, n_stars: int) -> dict[int, float]:
    """The factor of every star ``0 .. n_stars - 1`` of ``visit_id`` in the file ``path``
    (NaN for ``psf`` stars: no mask); :class:`~archi.errors.ConfigError` if a star has
    none."""
    stored = optimized_factors_for(path, visit_id)
    methods = stored.methods
    missing = [j for j in range(n_stars)
               if stored.factors.get(j) is None and methods.get(j) != "psf"]
    if missing:
        raise ConfigError(f"{path}: no factor for star(s) {missing} of {visit_id}; "
                          "run the optimisation first")
    return {j: math.nan if methods[j] == "psf" else float(stored.factors[j])
            for j in range(n_stars)}


def write_optimized_factors(path: str | Path, factors: Mapping[int, float | None], *,
                            methods: str | Mapping[int, str], visit_id: str,
                            cdpp: Mapping[int, float] | None = None,
                            settings: Mapping[str, Any] | None = None,
                            valid: Mapping[int, bool] | None = None) -> VisitFactors:
    """Store the optimised factors of one visit in the YAML file ``path``, atomically.
    ``valid`` (star -> bool): False stores a star's factor as a fallback (``valid: false``).

    ``factors`` maps star -> factor (``None`` or NaN: no valid factor, stored as ``null`` with
    ``valid: false``). ``methods`` is the configuration's method string (``"circle+shape"``,
    see :meth:`Options.star_method`) or a per-star mapping. ``cdpp`` optionally maps star ->
    CDPP at the best factor. ``settings`` is a flat mapping of scalars (or lists of scalars)
    recorded with the visit.

    If ``path`` exists, its other visits are kept and this visit's entry is replaced; an
    existing file that cannot be read raises :class:`~archi.errors.CorruptProductError` and is
    left untouched. Shape factors are written as integers. Two jobs writing the same file at
    the same time may lose one visit (read-modify-write); give concurrent jobs different
    files. Returns the stored :class:`VisitFactors`.
    """
    path = Path(path)
    if not isinstance(visit_id, str) or not visit_id:
        raise ValueError(f"visit id {visit_id!r} must be a non-empty string")
    stars = sorted(check_star_index(s) for s in factors)
    if isinstance(methods, str):
        methods = {star: Options(method=methods).star_method(star) for star in stars}
    entries = {star: _star_entry(star, factors[star], methods, cdpp,
                                 True if valid is None else bool(valid.get(star, True)))
               for star in stars}
    visit = VisitFactors(visit_id=visit_id, stars=entries,
                         settings=_check_settings(settings or {}))
    visits = read_optimized_factors(path) if path.exists() else {}
    visits[visit_id] = visit
    document = {
        "format": OPTIMIZED_FACTORS_FORMAT,
        "version": OPTIMIZED_FACTORS_VERSION,
        "visits": {vid: _visit_to_yaml(v) for vid, v in sorted(visits.items())},
    }

    def dump(fh: TextIO) -> None:
        yaml.safe_dump(document, fh, sort_keys=False, default_flow_style=None)

    write_text_atomically(path, dump)
    return visit


def _star_entry(star: int, raw: float | None, methods: Mapping[int, str],
                cdpp: Mapping[int, float] | None, valid: bool = True) -> StarFactor:
    if star not in methods:
        raise ValueError(f"no mask method given for star {star}")
    value = None if raw is None or _is_nan(raw) or methods[star] == "psf" else raw
    metric = None if cdpp is None or cdpp.get(star) is None else float(cdpp[star])
    entry = StarFactor(method=methods[star],
                       factor=None if value is None else round_factor(value),
                       cdpp=None if metric is None or not math.isfinite(metric) else metric,
                       valid=(value is not None and valid) or methods[star] == "psf")
    _check_star_factor(entry, f"star {star}", ValueError)
    return entry


def read_optimized_factors(path: str | Path) -> dict[str, VisitFactors]:
    """Read an optimised-factors file: ``{visit_id: VisitFactors}``.

    A missing file raises :class:`~archi.errors.ProductNotFoundError` (and, unlike archi, no
    empty file is created); bad YAML, another format or version, or any malformed entry raise
    :class:`~archi.errors.CorruptProductError` naming the file and the entry.
    """
    path = Path(path)
    if not path.exists():
        raise ProductNotFoundError(f"{path}: optimised-factors file not found; "
                                   "run the optimisation first")
    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CorruptProductError(path, f"cannot be read as YAML: {one_line(exc)}") from None

    def bad(problem: str) -> CorruptProductError:
        return CorruptProductError(path, problem)

    visits_doc = _visits_of(doc, bad)
    return {vid: _visit_from_yaml(vid, vdoc, bad) for vid, vdoc in visits_doc.items()}


def _visits_of(doc: Any, bad: Callable[[str], Exception]) -> dict:
    """The ``visits`` mapping of a document, its header checked."""
    if not isinstance(doc, dict):
        raise bad("not an optimised-factors file (expected a mapping with format, version, visits)")
    if doc.get("format") != OPTIMIZED_FACTORS_FORMAT:
        raise bad(f"format is {doc.get('format')!r}, expected {OPTIMIZED_FACTORS_FORMAT!r}")
    version = doc.get("version")
    if version != OPTIMIZED_FACTORS_VERSION or isinstance(version, bool):
        raise bad(f"unsupported version {version!r} (this archi reads version "
                  f"{OPTIMIZED_FACTORS_VERSION})")
    unknown = set(doc) - {"format", "version", "visits"}
    if unknown:
        raise bad(f"unknown top-level key(s) {', '.join(map(str, sorted(unknown, key=str)))}")
    visits_doc = doc.get("visits")
    if visits_doc is None:
        visits_doc = {}
    if not isinstance(visits_doc, dict):
        raise bad("'visits' must be a mapping of visit id -> entry")
    return visits_doc


def _visit_from_yaml(vid: Any, vdoc: Any, bad: Callable[[str], Exception]) -> VisitFactors:
    where = f"visits.{vid}"
    if not isinstance(vid, str) or not vid:
        raise bad(f"visit id {vid!r} must be a non-empty string")
    if not isinstance(vdoc, dict) or not isinstance(vdoc.get("stars"), dict):
        raise bad(f"{where} must be a mapping with a 'stars' mapping")
    if set(vdoc) - {"settings", "stars"}:
        raise bad(f"{where} has unknown key(s) "
                  f"{', '.join(map(str, sorted(set(vdoc) - {'settings', 'stars'}, key=str)))}")
    try:
        settings = _check_settings(vdoc.get("settings") or {})
    except ValueError as exc:
        raise bad(f"{where}.settings: {exc}") from None
    stars: dict[int, StarFactor] = {}
    for star, sdoc in vdoc["stars"].items():
        swhere = f"{where}.stars.{star}"
        if isinstance(star, bool) or not isinstance(star, int) or star < 0:
            raise bad(f"{swhere}: star index must be an integer >= 0")
        if not isinstance(sdoc, dict) or set(sdoc) - {"method", "factor", "cdpp", "valid"} \
                or not {"method", "factor", "valid"} <= set(sdoc):
            raise bad(f"{swhere} must be a mapping with method, factor, valid "
                      "(and optionally cdpp)")
        stars[star] = _star_from_yaml(sdoc, lambda p, w=swhere: bad(f"{w}: {p}"))
    return VisitFactors(visit_id=vid, stars=dict(sorted(stars.items())), settings=settings)


def optimized_factors_for(path: str | Path, visit_id: str) -> VisitFactors:
    """The entry of ``visit_id`` in the optimised-factors file ``path``.

    Raises :class:`~archi.errors.ProductNotFoundError` if the file or the visit is missing.
    """
    visits = read_optimized_factors(path)
    if visit_id not in visits:
        known = ", ".join(sorted(visits)) or "none"
        raise ProductNotFoundError(f"{path}: no optimised factors for visit {visit_id!r} "
                                   f"(visits in file: {known}); run the optimisation first")
    return visits[visit_id]


def _check_star_factor(entry: StarFactor, where: str, error: Callable[[str], Exception]) -> None:
    if entry.method not in METHODS:
        raise error(f"{where}: method {entry.method!r} is not one of {', '.join(METHODS)}")
    if entry.method == "psf" and entry.factor is not None:
        raise error(f"{where}: a psf star has no mask, so no factor (null)")
    if entry.valid and entry.factor is None and entry.method != "psf":
        raise error(f"{where}: a valid star needs a factor")
    if entry.factor is not None:
        if entry.method == "shape" and entry.factor != int(entry.factor):
            raise error(f"{where}: shape factor {entry.factor} must be a whole number of layers")
        if entry.method == "circle" and entry.factor <= 0:
            raise error(f"{where}: circle radius {entry.factor} must be > 0")
    if entry.cdpp is not None and not math.isfinite(entry.cdpp):
        raise error(f"{where}: cdpp {entry.cdpp!r} must be finite")


def _star_from_yaml(sdoc: dict, bad: Callable[[str], Exception]) -> StarFactor:
    method, factor, metric, valid = (sdoc.get("method"), sdoc.get("factor"), sdoc.get("cdpp"),
                                     sdoc.get("valid"))
    if not isinstance(valid, bool):
        raise bad(f"valid {valid!r} must be true or false")
    for name, value in (("factor", factor), ("cdpp", metric)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise bad(f"{name} {value!r} must be a number or null")
    if factor is not None:
        try:
            factor = round_factor(factor)
        except ValueError as exc:
            raise bad(str(exc)) from None
    entry = StarFactor(method=method, factor=factor,
                       cdpp=None if metric is None else float(metric), valid=valid)
    _check_star_factor(entry, "entry", lambda p: bad(p.removeprefix("entry: ")))
    return entry


def _visit_to_yaml(visit: VisitFactors) -> dict[str, Any]:
    stars = {}
    for star, s in sorted(visit.stars.items()):
        factor: float | int | None = s.factor
        if factor is not None and s.method == "shape":
            factor = int(factor)
        stars[int(star)] = {"method": s.method, "factor": factor, "cdpp": s.cdpp,
                            "valid": bool(s.valid)}
    return {"settings": dict(visit.settings), "stars": stars}


_SCALARS = (str, int, float, bool, type(None))


def _check_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(settings, Mapping):
        raise ValueError(f"settings must be a mapping, not {type(settings).__name__}")
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if not isinstance(key, str):
            raise ValueError(f"settings key {key!r} must be a string")
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, (list, tuple)):
            value = [v.item() if isinstance(v, np.generic) else v for v in value]
            if not all(isinstance(v, _SCALARS) for v in value):
                raise ValueError(f"settings {key!r} must hold scalars, got {value!r}")
        elif not isinstance(value, _SCALARS):
            raise ValueError(f"settings {key!r} must be a scalar or a list of scalars, "
                             f"got {type(value).__name__}")
        out[key] = value
    return out


def _is_nan(value: Any) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return False
