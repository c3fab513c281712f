"""Options of the photometry: their home, with archi's key names, allowed values and meanings.

The allowed values of every choice are listed here once (``METHODS`` ... ``SHAPE_SHIFTS``);
``workflow/schemas/config.schema.yaml`` and ``config/config.yaml`` must offer the same
(tests/test_options.py checks it).

Options are grouped by concern, each group a small frozen dataclass read by the module that
uses it: ``detection`` (:mod:`archi.detect`), ``tracking`` (:mod:`archi.track`),
``apertures`` (:mod:`archi.masks`), ``search`` (the factor search), ``outputs`` (the light
curves written) and ``reading`` (how the cube is read). :class:`Options` is built from, and
written as, archi's flat keys (``Options(method="circle", ...)``, the YAML configuration) and
reads them flat too (``options.method`` is ``options.apertures.method``).

Combined values ``P+S`` give one choice for the target (star 0, P) and another for every
other star (S), as in archi: ``method: circle+shape``, ``initial_detect: fits+dynam``,
``detect_mode: offsets+dynam``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from archi.errors import ConfigError

METHODS = ("circle", "shape", "psf")
INITIAL_DETECTS = ("fits", "dynam")
DETECT_MODES = ("static", "dynam", "offsets")
OFFICIAL_CURVES = ("DEFAULT", "OPTIMAL", "RINF", "RSUP")
APERTURE_MODES = ("exact", "binary", "archi")
SHAPE_SHIFTS = ("bilinear", "integer")

CHOICES = {"method": METHODS, "initial_detect": INITIAL_DETECTS, "detect_mode": DETECT_MODES,
           "official_curve": OFFICIAL_CURVES, "aperture_mode": APERTURE_MODES,
           "shape_shift": SHAPE_SHIFTS}
"""Allowed values of every option that is a choice among names."""

PAIRED_CHOICES = ("method", "initial_detect", "detect_mode")
"""Choices that also accept a ``primary+secondary`` pair (target, other stars)."""


def split_choice(value: str, allowed: tuple[str, ...], key: str) -> tuple[str, str]:
    """``"a"`` -> ("a", "a"); ``"a+b"`` -> ("a", "b"); anything else is a ConfigError."""
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a string, got {value!r}")
    parts = value.split("+")
    if len(parts) > 2 or any(p not in allowed for p in parts):
        raise ConfigError(f"{key} {value!r} is not one of {', '.join(allowed)} or a "
                          f"'primary+secondary' pair of them")
    return parts[0], parts[-1]


@dataclass(frozen=True)
class DetectionOptions:
    """The stars of a visit and their first-frame positions (:mod:`archi.detect`)."""

    initial_detect: str = "fits"  # first-frame positions: fits (catalogue) | dynam (image) | P+S
    magnitude_limit: float = 13.0  # catalogue stars fainter than this are ignored [Gaia G]
    detection_snr: float = 10.0  # dynam detection threshold (matched-filter S/N)
    repeat_removal: int = 1  # refinement passes of image detection (remove each star, re-measure)

    @property
    def methods(self) -> tuple[str, str]:
        """(target's, other stars') detection method."""
        return split_choice(self.initial_detect, INITIAL_DETECTS, "initial_detect")


@dataclass(frozen=True)
class TrackingOptions:
    """The position of every star in every frame (:mod:`archi.track`)."""

    detect_mode: str = "offsets"  # tracking: static | dynam | offsets | P+S
    track_tolerance: float = 3.0  # dynam: largest measured - predicted distance accepted [pixel]

    def star_tracking(self, star: int) -> str:
        """Tracking mode of star ``star`` (0 = target)."""
        primary, secondary = split_choice(self.detect_mode, DETECT_MODES, "detect_mode")
        return primary if star == 0 else secondary


@dataclass(frozen=True)
class ApertureOptions:
    """The masks measured (:mod:`archi.masks`)."""

    method: str = "circle"  # mask kind: circle | shape | psf (no mask: PSF fits) | P+S
    grid_bg: int = 0  # 0, or an odd multiple of 200: sub-pixel grid of the masks
    aperture_mode: str = "exact"  # circles: exact pixel overlap, binary, or archi's own
    shape_shift: str = "bilinear"  # shape masks follow the star by sub-pixel or integer shifts

    def star_method(self, star: int) -> str:
        """Mask kind of star ``star`` (0 = target)."""
        primary, secondary = split_choice(self.method, METHODS, "method")
        return primary if star == 0 else secondary

    @property
    def grid(self) -> int:
        """Sub-pixel grid factor s = grid_bg / 200 (1 when grid_bg = 0)."""
        return self.grid_bg // 200 if self.grid_bg else 1

    @property
    def uses_masks(self) -> bool:
        """Whether some star (the target or the others) is measured through a mask, so
        that the factor search has work (not with ``method: psf``)."""
        return any(m != "psf" for m in split_choice(self.method, METHODS, "method"))


@dataclass(frozen=True)
class SearchOptions:
    """The search of each star's mask factor."""

    val_range: tuple[float, float] = (8.0, 30.0)  # factor grid [pixel radius, or layers]
    step: float = 2.0
    optimization_extensions: int = 3  # at most this many range extensions
    fine_tune_circle: bool = True  # circles: best +/- 1 px in 0.1-px steps
    CDPP_type: str = "K2"  # "K2", "module:function" or "path/file.py:function"


@dataclass(frozen=True)
class NeighbourOptions:
    """The neighbours' light (:mod:`archi.contamination`)."""

    decontaminate: bool = True  # FLUX = the star's own light: the neighbours' modelled light removed
    max_contamination: float = 1.0  # masks with more neighbours' light than this x the star's are invalid


@dataclass(frozen=True)
class OutputOptions:
    """What the light curves carry besides the fluxes."""

    official_curve: str = "DEFAULT"  # DRP light curve giving roll, centroids, background, dark
    uncertainties: bool = True  # per-frame flux errors (photon, background, dark, read noise)


@dataclass(frozen=True)
class ReadingOptions:
    """How the cube is read: frames per chunk, cosmic-ray hits replaced as chunks are read."""

    clean_cosmics: bool = True  # replace cosmic-ray hits (found once per visit) in photometry
    low_memory: bool = False  # smaller frame chunks
    chunk_frames: int = 64  # frames read from the cube at once

    @property
    def effective_chunk(self) -> int:
        """Frames per chunk [frames] (at most 8 with ``low_memory``)."""
        return min(self.chunk_frames, 8) if self.low_memory else self.chunk_frames


GROUPS = {"detection": DetectionOptions, "tracking": TrackingOptions,
          "apertures": ApertureOptions, "search": SearchOptions,
          "neighbours": NeighbourOptions, "outputs": OutputOptions, "reading": ReadingOptions}
"""Attribute of :class:`Options` -> the dataclass of that group of options."""

KEYS = ("method", "initial_detect", "detect_mode", "official_curve", "uncertainties",
        "grid_bg", "repeat_removal", "optimization_extensions", "fine_tune_circle",
        "val_range", "step", "CDPP_type", "magnitude_limit", "aperture_mode", "shape_shift",
        "detection_snr", "track_tolerance", "clean_cosmics", "decontaminate",
        "max_contamination", "low_memory", "chunk_frames")
"""archi's flat option keys, in the order of config/config.yaml (and of :meth:`to_dict`)."""

_GROUP_OF = {f.name: group for group, cls in GROUPS.items() for f in dataclasses.fields(cls)}
assert set(_GROUP_OF) == set(KEYS) and len(_GROUP_OF) == len(KEYS)


def _problems(v: dict[str, Any]) -> list[str]:
    """What is wrong with the flat option values ``v`` (every key present)."""
    for key in PAIRED_CHOICES:
        split_choice(v[key], CHOICES[key], key)
    problems = []
    if v["official_curve"] not in OFFICIAL_CURVES:
        problems.append(f"official_curve {v['official_curve']!r} is not one of "
                        f"{', '.join(OFFICIAL_CURVES)}")
    grid_bg = v["grid_bg"]
    if grid_bg != 0 and (grid_bg < 0 or grid_bg % 200 or (grid_bg // 200) % 2 != 1):
        problems.append(f"grid_bg must be 0 or an odd multiple of 200 (200, 600, 1000, "
                        f"...), got {grid_bg}")
    if not 0 <= v["repeat_removal"] <= 10:
        problems.append(f"repeat_removal must be within 0-10, got {v['repeat_removal']}")
    if v["optimization_extensions"] < 0:
        problems.append("optimization_extensions must be >= 0")
    low, high = v["val_range"]
    if not 0 < low <= high:
        problems.append(f"val_range must be [low, high] with 0 < low <= high, got "
                        f"{list(v['val_range'])}")
    if v["step"] <= 0:
        problems.append(f"step must be > 0, got {v['step']}")
    elif 0 < low < high < low + v["step"]:  # one factor: the search could not compare
        problems.append(f"step {v['step']:g} is larger than val_range {list(v['val_range'])}: "
                        f"the first round needs two factors or more")
    if v["aperture_mode"] not in APERTURE_MODES:
        problems.append(f"aperture_mode must be one of {', '.join(APERTURE_MODES)}")
    if v["shape_shift"] not in SHAPE_SHIFTS:
        problems.append(f"shape_shift must be one of {', '.join(SHAPE_SHIFTS)}")
    if v["detection_snr"] <= 0 or v["track_tolerance"] <= 0:
        problems.append("detection_snr and track_tolerance must be > 0")
    if not v["max_contamination"] > 0:
        problems.append(f"max_contamination must be > 0, got {v['max_contamination']}")
    if v["chunk_frames"] < 1:
        problems.append("chunk_frames must be >= 1")
    if "psf" in v["method"] and not v["decontaminate"]:
        problems.append(f"method {v['method']!r} fits the field model's PSF: it needs "
                        f"decontaminate: true")
    if "shape" in v["method"] and v["step"] != int(v["step"]):
        problems.append("shape masks grow by whole pixel layers: step must be an integer")
    return problems


@dataclass(frozen=True, init=False, repr=False)
class Options:
    """Every photometry option, by group; built from and read as archi's flat keys (units
    and meanings: the group dataclasses), validated on creation (ConfigError)."""

    detection: DetectionOptions = field(default_factory=DetectionOptions)
    tracking: TrackingOptions = field(default_factory=TrackingOptions)
    apertures: ApertureOptions = field(default_factory=ApertureOptions)
    search: SearchOptions = field(default_factory=SearchOptions)
    neighbours: NeighbourOptions = field(default_factory=NeighbourOptions)
    outputs: OutputOptions = field(default_factory=OutputOptions)
    reading: ReadingOptions = field(default_factory=ReadingOptions)

    def __init__(self, **values: Any) -> None:
        """Options from archi's flat keys (``method="circle"``, ...) and/or whole groups
        (``tracking=TrackingOptions(...)``, as :func:`dataclasses.replace` passes them);
        a flat key wins over its group's value. Missing ones take their defaults."""
        for key in values:
            if key not in _GROUP_OF and key not in GROUPS:
                raise TypeError(f"Options.__init__() got an unexpected keyword argument "
                                f"{key!r}")
        flat = {}
        for group, cls in GROUPS.items():
            base = values.get(group) or cls()
            flat.update({f.name: values.get(f.name, getattr(base, f.name))
                         for f in dataclasses.fields(cls)})
        problems = _problems(flat)
        if problems:
            raise ConfigError("; ".join(problems))
        for group, cls in GROUPS.items():
            object.__setattr__(self, group, cls(**{f.name: flat[f.name]
                                                   for f in dataclasses.fields(cls)}))

    def __repr__(self) -> str:
        return f"Options({', '.join(f'{key}={getattr(self, key)!r}' for key in KEYS)})"

    # -- per-star choices and derived values (flat, as the callers read them) -------------
    def star_method(self, star: int) -> str:
        return self.apertures.star_method(star)

    def star_tracking(self, star: int) -> str:
        return self.tracking.star_tracking(star)

    @property
    def grid(self) -> int:
        return self.apertures.grid

    @property
    def effective_chunk(self) -> int:
        return self.reading.effective_chunk

    # -- construction --------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, values: dict[str, Any], source: str = "options") -> Options:
        """Build from a mapping of flat keys (YAML); unknown keys are a ConfigError naming
        them."""
        unknown = sorted(set(values) - set(KEYS))
        if unknown:
            raise ConfigError(f"{source}: unknown option(s) {', '.join(unknown)}")
        values = dict(values)
        if "val_range" in values:
            vr = values["val_range"]
            if not (isinstance(vr, (list, tuple)) and len(vr) == 2):
                raise ConfigError(f"{source}: val_range must be a [low, high] pair, got {vr!r}")
            values["val_range"] = (float(vr[0]), float(vr[1]))
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        """The flat keys and values (``val_range`` as a list), in the order of :data:`KEYS`."""
        out = {key: getattr(self, key) for key in KEYS}
        out["val_range"] = list(self.val_range)
        return out

    def replace(self, **changes: Any) -> Options:
        """A copy with some flat keys changed."""
        return Options(**{**{key: getattr(self, key) for key in KEYS}, **changes})


def _flat_key(group: str, key: str) -> property:
    return property(lambda self: getattr(getattr(self, group), key),
                    doc=f"``{group}.{key}`` (archi's flat key).")


for _key, _group in _GROUP_OF.items():
    setattr(Options, _key, _flat_key(_group, _key))
del _key, _group
