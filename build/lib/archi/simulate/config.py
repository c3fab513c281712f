"""Options of a simulated visit, with realistic CHEOPS defaults, loadable from YAML.

Every physical effect can be switched off (set its amplitude to 0 or its flag to false);
``noise_free: true`` switches off every random term at once (photon noise, read noise,
cosmic rays, hot pixels, jitter), which the tests use to check flux bookkeeping.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from archi.errors import ConfigError, reject_unknown_keys
from archi.geometry import PLATE_SCALE

FIELD_ROTATIONS = ("pipe", "reversed")
"""How the field turns in the images as the roll angle changes: ``pipe`` by -roll (PIPE's
mapping, :func:`archi.geometry.rotate_offsets`), ``reversed`` by +roll."""

@dataclass(frozen=True)
class StarSpec:
    """A star placed relative to the target.

    ``distance`` [pixel] and ``position_angle`` [deg, from +x towards +y at roll 0],
    ``dmag``: magnitude difference to the target. ``signal``: ``none``, ``transit`` or
    ``sinusoid`` with ``depth`` (fractional transit depth or sinusoid semi-amplitude),
    ``period`` [day], ``t0`` [day from the first frame], ``duration`` [day] of a transit.
    ``in_catalogue``: whether the DRP star catalogue lists it.
    """

    distance: float
    position_angle: float
    dmag: float
    signal: str = "none"
    depth: float = 0.0
    period: float = 0.0
    t0: float = 0.0
    duration: float = 0.0
    in_catalogue: bool = True
    note: str = ""

# A demanding but plausible field (real fields are usually sparser): a blended pair 14.6 px
# apart, a star whose centre crosses the field edge during the roll, a transiting and a
# variable background star, faint catalogue entries, and bright stars just outside.
DEFAULT_FIELD: tuple[StarSpec, ...] = (
    StarSpec(28.0, 200.0, 3.0, note="close neighbour of the target"),
    StarSpec(48.0, 30.0, 2.0, note="blended pair, A"),
    StarSpec(50.0, 47.0, 2.5, note="blended pair, B (14.6 px from A)"),
    StarSpec(62.0, 120.0, 1.0, signal="transit", depth=0.008, t0=0.16, duration=0.06,
             note="isolated, transiting"),
    StarSpec(75.0, 260.0, 2.0, signal="sinusoid", depth=0.005, period=0.11,
             note="variable"),
    StarSpec(85.0, 330.0, 4.0, note="faint, target+4"),
    StarSpec(99.5, 170.0, 1.5, note="centre crosses the field edge during the roll"),
    StarSpec(38.0, 300.0, 4.5, note="faint"),
    StarSpec(55.0, 250.0, 6.5, note="barely visible catalogue entry"),
    StarSpec(70.0, 10.0, 7.5, note="invisible catalogue entry"),
    StarSpec(125.0, 80.0, 1.0, note="outside the field, light spills in"),
    StarSpec(140.0, 235.0, 2.0, note="outside the field"),
)

@dataclass(frozen=True)
class SimulationConfig:
    """Everything that defines a simulated visit. Units in brackets."""

    seed: int = 1
    n_frames: int = 300
    # visit identity (file key CH_PRppnnnn_TGttttvv_V0300)
    progtype: int = 14
    prog_id: int = 9001
    req_id: int = 1
    visitctr: int = 1
    obsid: int = 3000001
    cheopsim_job: int = 1
    target_name: str = "SIM-1"
    # target
    ra: float = 311.2897  # [deg]
    dec: float = -31.3409  # [deg]
    target_mag: float = 9.0  # Gaia G [mag]
    t_eff: float = 5500.0  # [K]
    # exposure: "auto" follows the CHEOPS exposure rule and stacking table
    exptime: float | str = "auto"  # [s]
    nexp: int | str = "auto"
    # timeline
    timeline: str = "synthetic"  # "synthetic" or the path of a real DRP light-curve file
    start_utc: str = "2024-03-01T00:00:00"
    roll_start: float = 180.0  # [deg]
    orbit_minutes: float = 98.77
    gap_minutes: float = 40.0  # Earth occultation / SAA per orbit
    # pointing (full-CCD coordinates, as in 2023-24 visits)
    location: tuple[float, float] = (293.0, 831.0)  # [pixel]
    centroid_offset: tuple[float, float] = (0.2, -1.5)  # mean CENTROID - LOCATION [pixel]
    jitter_rms: float = 0.3  # per axis [pixel]
    # sky and detector (rates per pixel)
    background_rate: float = 3.5  # zodiacal + stray light floor [e/px/s]
    stray_light_rate: float = 20.0  # extra background at a gap edge [e/px/s]
    stray_light_minutes: float = 3.0  # its decay time away from gap edges [min]
    dark_rate: float = 0.8  # [e/px/s]
    hot_pixel_fraction: float = 0.01
    hot_pixel_rate: tuple[float, float] = (3.0, 100.0)  # log-uniform range [e/px/s]
    read_noise: float = 14.0  # per readout [e]
    cosmic_rate: float = 10.8  # hits per minute on the 200x200 subarray
    photon_noise: bool = True
    rotational_blur: bool = True
    noise_free: bool = False
    # PSF: empty for the analytic CHEOPS-like model (archi.simulate.psf), or the path of a
    # PSF image: pycheops' CHEOPS_IT_PSFwhite_CH_TU2018-01-01.txt (text, one value per
    # pixel) or a 2-D FITS image, rows along detector y; relative to the working directory
    # (archi.simulate.psf_file)
    psf_file: str = ""
    psf_oversample: int = 1  # samples per detector pixel in psf_file, along each axis
    # stars
    field: tuple[StarSpec, ...] = DEFAULT_FIELD
    # astrometry: the true plate scale the catalogue's RA/DEC are written with [arcsec/px]
    # (the pipeline assumes archi.geometry.PLATE_SCALE), and how the field turns
    plate_scale: float = PLATE_SCALE
    field_rotation: str = "pipe"  # pipe (by -roll) | reversed (by +roll)
    # outputs
    layouts: tuple[str, ...] = ("drp", "cheopsim")
    write_optimal: bool = True  # V0300 DRP visits have no OPTIMAL light curve
    catalogue_magnitude_column: str = "MAG_GAIA"
    chunk_frames: int = 64  # frames simulated at once (bounds memory)

    def __post_init__(self) -> None:
        problems = []
        if self.n_frames < 1:
            problems.append(f"n_frames must be >= 1, got {self.n_frames}")
        if self.exptime != "auto" and not (0.1 <= float(self.exptime) <= 60.0):
            problems.append(f"exptime must be 'auto' or within 0.1-60 s, got {self.exptime}")
        if self.nexp != "auto" and not (1 <= int(self.nexp) <= 60):
            problems.append(f"nexp must be 'auto' or 1-60, got {self.nexp}")
        if not set(self.layouts) <= {"drp", "cheopsim"} or not self.layouts:
            problems.append(f"layouts must be a non-empty subset of [drp, cheopsim], "
                            f"got {list(self.layouts)}")
        if self.catalogue_magnitude_column not in ("MAG_GAIA", "MAG_CHEOPS"):
            problems.append("catalogue_magnitude_column must be MAG_GAIA or MAG_CHEOPS")
        if self.gap_minutes < 0 or self.gap_minutes >= self.orbit_minutes:
            problems.append("gap_minutes must be within [0, orbit_minutes)")
        for name in ("background_rate", "stray_light_rate", "dark_rate", "read_noise",
                     "cosmic_rate", "jitter_rms", "hot_pixel_fraction"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        if not 0.5 <= self.plate_scale <= 2.0:
            problems.append(f"plate_scale must be within 0.5-2 arcsec/px, got {self.plate_scale}")
        if self.field_rotation not in FIELD_ROTATIONS:
            problems.append(f"field_rotation must be pipe or reversed, got "
                            f"{self.field_rotation!r}")
        oversample = self.psf_oversample
        if isinstance(oversample, bool) or not isinstance(oversample, int) or oversample < 1:
            problems.append(f"psf_oversample must be an integer >= 1, got {oversample!r}")
        if not isinstance(self.psf_file, str):
            problems.append(f"psf_file must be a path or empty, got {self.psf_file!r}")
        for spec in self.field:
            if spec.signal not in ("none", "transit", "sinusoid"):
                problems.append(f"star signal must be none, transit or sinusoid, "
                                f"got {spec.signal!r}")
        if problems:
            raise ConfigError("simulation config: " + "; ".join(problems))

    @classmethod
    def from_mapping(cls, options: dict[str, Any], source: str = "config") -> SimulationConfig:
        """Build from a mapping (e.g. parsed YAML); unknown keys are an error."""
        reject_unknown_keys(options, cls, f"{source}: unknown simulation option(s)")
        values = dict(options)
        if "field" in values:
            stars = []
            for i, star in enumerate(values["field"]):
                reject_unknown_keys(star, StarSpec, f"{source}: field star {i}: unknown key(s)")
                try:
                    stars.append(StarSpec(**star))
                except TypeError as exc:
                    raise ConfigError(f"{source}: field star {i}: {exc}") from None
            values["field"] = tuple(stars)
        if values.get("psf_file", "") is None:  # YAML's null: the analytic PSF
            values["psf_file"] = ""
        for key in ("layouts",):
            if key in values:
                values[key] = tuple(values[key])
        for key in ("location", "centroid_offset", "hot_pixel_rate"):
            if key in values:
                values[key] = tuple(float(v) for v in values[key])
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"{source}: {exc}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> SimulationConfig:
        path = Path(path)
        try:
            options = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read simulation config ({exc})") from None
        if not isinstance(options, dict):
            raise ConfigError(f"{path}: simulation config must be a mapping")
        return cls.from_mapping(options, source=str(path))

    def field_turn(self, roll_deg):
        """The angle [deg] the images' field is turned by (:func:`archi.geometry.rotate_offsets`)
        at roll angles ``roll_deg``: the roll itself, or minus it when ``reversed``."""
        return -roll_deg if self.field_rotation == "reversed" else roll_deg

    def replace(self, **changes: Any) -> SimulationConfig:
        return dataclasses.replace(self, **changes)
