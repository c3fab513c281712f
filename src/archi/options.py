"""Options of the photometry, with archi's key names and meanings, validated on creation.

Combined values ``P+S`` give one choice for the target (star 0, P) and another for every
other star (S), as in archi: ``method: circle+shape``, ``initial_detect: fits+dynam``,
``detect_mode: offsets+dynam``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from archi.errors import ConfigError, reject_unknown_keys

METHODS = ("circle", "shape")
INITIAL_DETECTS = ("fits", "dynam")
DETECT_MODES = ("static", "dynam", "offsets")
OFFICIAL_CURVES = ("DEFAULT", "OPTIMAL", "RINF", "RSUP")
APERTURE_MODES = ("exact", "binary", "archi")
SHAPE_SHIFTS = ("bilinear", "integer")


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
class Options:
    """Every photometry option. Units in brackets; archi's names where archi has the key."""

    method: str = "circle"  # mask kind: circle | shape | P+S
    initial_detect: str = "fits"  # first-frame positions: fits (catalogue) | dynam (image) | P+S
    detect_mode: str = "offsets"  # tracking: static | dynam | offsets | P+S
    official_curve: str = "DEFAULT"  # DRP light curve giving roll, centroids, background, dark
    uncertainties: bool = True  # per-frame flux errors (photon, background, dark, read noise)
    grid_bg: int = 0  # 0, or an odd multiple of 200: sub-pixel grid of the masks
    repeat_removal: int = 1  # refinement passes of image detection (remove each star, re-measure)
    optimization_extensions: int = 3  # at most this many range extensions
    fine_tune_circle: bool = True  # circles: best +/- 1 px in 0.1-px steps
    val_range: tuple[float, float] = (8.0, 30.0)  # factor grid [pixel radius, or layers]
    step: float = 2.0
    CDPP_type: str = "K2"  # "K2", "module:function" or "path/file.py:function"
    magnitude_limit: float = 13.0  # catalogue stars fainter than this are ignored [Gaia G]
    aperture_mode: str = "exact"  # circles: exact pixel overlap, binary, or archi's own
    shape_shift: str = "bilinear"  # shape masks follow the star by sub-pixel or integer shifts
    detection_snr: float = 10.0  # dynam detection threshold (matched-filter S/N)
    track_tolerance: float = 3.0  # dynam: largest measured - predicted distance accepted [pixel]
    clean_cosmics: bool = True  # replace cosmic-ray hits (found once per visit) in photometry
    low_memory: bool = False  # smaller frame chunks
    chunk_frames: int = 64  # frames read from the cube at once

    def __post_init__(self) -> None:
        split_choice(self.method, METHODS, "method")
        split_choice(self.initial_detect, INITIAL_DETECTS, "initial_detect")
        split_choice(self.detect_mode, DETECT_MODES, "detect_mode")
        problems = []
        if self.official_curve not in OFFICIAL_CURVES:
            problems.append(f"official_curve {self.official_curve!r} is not one of "
                            f"{', '.join(OFFICIAL_CURVES)}")
        if self.grid_bg != 0 and (self.grid_bg < 0 or self.grid_bg % 200
                                  or (self.grid_bg // 200) % 2 != 1):
            problems.append(f"grid_bg must be 0 or an odd multiple of 200 (200, 600, 1000, "
                            f"...), got {self.grid_bg}")
        if not 0 <= self.repeat_removal <= 10:
            problems.append(f"repeat_removal must be within 0-10, got {self.repeat_removal}")
        if self.optimization_extensions < 0:
            problems.append("optimization_extensions must be >= 0")
        low, high = self.val_range
        if not 0 < low <= high:
            problems.append(f"val_range must be [low, high] with 0 < low <= high, got "
                            f"{list(self.val_range)}")
        if self.step <= 0:
            problems.append(f"step must be > 0, got {self.step}")
        if self.aperture_mode not in APERTURE_MODES:
            problems.append(f"aperture_mode must be one of {', '.join(APERTURE_MODES)}")
        if self.shape_shift not in SHAPE_SHIFTS:
            problems.append(f"shape_shift must be one of {', '.join(SHAPE_SHIFTS)}")
        if self.detection_snr <= 0 or self.track_tolerance <= 0:
            problems.append("detection_snr and track_tolerance must be > 0")
        if self.chunk_frames < 1:
            problems.append("chunk_frames must be >= 1")
        if "shape" in self.method and self.step != int(self.step):
            problems.append("shape masks grow by whole pixel layers: step must be an integer")
        if problems:
            raise ConfigError("; ".join(problems))

    # -- per-star choices ----------------------------------------------------------------
    def star_method(self, star: int) -> str:
        primary, secondary = split_choice(self.method, METHODS, "method")
        return primary if star == 0 else secondary

    def star_tracking(self, star: int) -> str:
        primary, secondary = split_choice(self.detect_mode, DETECT_MODES, "detect_mode")
        return primary if star == 0 else secondary

    @property
    def detection(self) -> tuple[str, str]:
        return split_choice(self.initial_detect, INITIAL_DETECTS, "initial_detect")

    @property
    def grid(self) -> int:
        """Sub-pixel grid factor s = grid_bg / 200 (1 when grid_bg = 0)."""
        return self.grid_bg // 200 if self.grid_bg else 1

    @property
    def effective_chunk(self) -> int:
        return min(self.chunk_frames, 8) if self.low_memory else self.chunk_frames

    # -- construction --------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, values: dict[str, Any], source: str = "options") -> Options:
        """Build from a mapping (YAML); unknown keys are a ConfigError naming them."""
        reject_unknown_keys(values, cls, f"{source}: unknown option(s)")
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
        out = dataclasses.asdict(self)
        out["val_range"] = list(self.val_range)
        return out

    def replace(self, **changes: Any) -> Options:
        return dataclasses.replace(self, **changes)
