"""The stars of a simulated field: where they are, how bright, and what their flux does."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from archi.geometry import sky_from_offsets
from archi.simulate.config import SimulationConfig, StarSpec
from archi.simulate.timeline import count_rate


@dataclass(frozen=True)
class Scene:
    """Target (index 0) and field stars, as arrays over stars."""

    specs: tuple[StarSpec | None, ...]  # None for the target
    dx: NDArray[np.float64]  # offset from the target at roll 0 [pixel]
    dy: NDArray[np.float64]
    mag: NDArray[np.float64]  # Gaia G [mag]
    rate: NDArray[np.float64]  # [e/s]
    ra: NDArray[np.float64]  # [deg]
    dec: NDArray[np.float64]
    in_catalogue: NDArray[np.bool_]

    @property
    def n_stars(self) -> int:
        return len(self.dx)

    def relative_flux(self, days_since_start: NDArray) -> NDArray[np.float64]:
        """Injected signals, shape (n_stars, n_frames), 1 = constant."""
        t = np.asarray(days_since_start, dtype=float)
        out = np.ones((self.n_stars, len(t)))
        for i, spec in enumerate(self.specs):
            if spec is None or spec.signal == "none":
                continue
            if spec.signal == "transit":
                out[i] = 1.0 - spec.depth * transit_shape(t - spec.t0, spec.duration)
            elif spec.signal == "sinusoid":
                out[i] = 1.0 + spec.depth * np.sin(2 * np.pi * t / spec.period)
        return out


def transit_shape(dt: NDArray, duration: float, ingress_fraction: float = 0.15) -> NDArray:
    """Trapezoid: 1 in full transit, 0 outside, linear ingress/egress; ``dt`` from mid-transit."""
    half = duration / 2.0
    ingress = ingress_fraction * duration
    return np.clip((half - np.abs(dt)) / ingress, 0.0, 1.0)


def build_scene(cfg: SimulationConfig) -> Scene:
    specs: list[StarSpec | None] = [None, *cfg.field]
    pa = np.radians([0.0] + [s.position_angle for s in cfg.field])
    dist = np.array([0.0] + [s.distance for s in cfg.field])
    dx, dy = dist * np.cos(pa), dist * np.sin(pa)
    mag = cfg.target_mag + np.array([0.0] + [s.dmag for s in cfg.field])
    ra, dec = sky_from_offsets(dx, dy, cfg.ra, cfg.dec, scale=cfg.plate_scale)
    in_cat = np.array([True] + [s.in_catalogue for s in cfg.field])
    return Scene(tuple(specs), dx, dy, mag, np.asarray(count_rate(mag)), ra, dec, in_cat)
