"""Home of :class:`Observation`: what every simulated product of one visit is drawn from
(timeline, scene, detector, the target's track, true fluxes and sky), built once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from archi.io import products as P
from archi.simulate import products as SP
from archi.simulate.config import SimulationConfig
from archi.simulate.render import Detector, make_detector
from archi.simulate.scene import Scene, build_scene
from archi.simulate.timeline import Timeline, make_timeline
from archi.visit import VisitId


def visit_id(cfg: SimulationConfig) -> VisitId:
    """The identity of the simulated visit (processing version 300)."""
    return VisitId(cfg.progtype, cfg.prog_id, cfg.req_id, cfg.visitctr, 300, cfg.obsid)


@dataclass(frozen=True)
class Observation:
    """One simulated visit before its images are drawn.

    ``target_x``, ``target_y`` [pixel, subarray] and ``x_winoff``, ``y_winoff`` [pixel,
    subarray corner on the CCD] per frame; ``flux`` (n_stars, n_frames) [electrons per
    stacked image]; ``background`` [electrons per pixel per stacked image]; ``texp`` [s],
    the exposure of one stacked image, copied from the timeline; ``field_turn`` [deg] per
    frame: the angle the images' field is turned by (``cfg.field_turn`` of the roll).
    """

    cfg: SimulationConfig
    rng: np.random.Generator
    timeline: Timeline
    scene: Scene
    detector: Detector
    times: SP.Times
    visit: VisitId
    tu: str  # file-name UTC stamp of the first frame
    base_cards: list
    x_winoff: float
    y_winoff: float
    target_x: np.ndarray
    target_y: np.ndarray
    flux: np.ndarray
    background: np.ndarray
    n_frames: int
    texp: float
    field_turn: np.ndarray


def observe(cfg: SimulationConfig) -> Observation:
    """Draw the timeline and the detector (in this order, from the seed) and place the
    scene on the subarray."""
    rng = np.random.default_rng(cfg.seed)
    timeline = make_timeline(cfg, rng)
    scene = build_scene(cfg)
    detector = make_detector(cfg, rng)
    times = SP.Times.from_mjd_tt(timeline.mjd_tt, cfg.ra, cfg.dec)
    texp = timeline.texptime
    x_winoff = timeline.location[0] - 100.0
    y_winoff = timeline.location[1] - 100.0
    days = timeline.mjd_tt - timeline.mjd_tt[0]
    stray = cfg.stray_light_rate * np.exp(-timeline.minutes_to_gap / cfg.stray_light_minutes)
    return Observation(
        cfg=cfg, rng=rng, timeline=timeline, scene=scene, detector=detector, times=times,
        visit=visit_id(cfg), tu=P.tu_stamp(str(times.utc[0])),
        base_cards=SP.visit_cards(cfg, times, timeline.exptime, timeline.nexp, scene.mag[0]),
        x_winoff=x_winoff, y_winoff=y_winoff,
        target_x=timeline.centroid_x - x_winoff, target_y=timeline.centroid_y - y_winoff,
        flux=scene.rate[:, None] * texp * scene.relative_flux(days),
        background=(cfg.background_rate + stray) * texp,
        n_frames=timeline.n_frames, texp=texp, field_turn=cfg.field_turn(timeline.roll))
