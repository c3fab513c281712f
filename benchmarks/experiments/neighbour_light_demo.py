"""How much of each demo star's aperture is its neighbours' light, and does the field model
measure it? Truth from the simulator's own PSF at the true positions.

    python benchmarks/experiments/neighbour_light_demo.py RESOURCES/demo RESULTS/demo
"""
from __future__ import annotations

import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from archi import api
from archi.contamination import decontaminate, field_model
from archi.fieldmodel import EmpiricalPsf
from archi.optimize import read_optimized_factors
from archi.photometry import aperture_photometry
from archi.prepared import read_prepared
from archi.simulate.psf import PixelPsf
from archi.simulate.render import render_stars
from archi.simulate.truth import read_truth
from archi.stars import Tracks


def true_light_per_star(truth, tracks: Tracks, apertures, frames: slice):
    """A_j(image of star i alone), (n_true, n_stars, n) with the simulator's PSF."""
    psf = PixelPsf()
    f = truth.frames
    roll = np.asarray(f["ROLL_ANGLE"], float)[frames]
    tx, ty = np.asarray(f["TARGET_X"], float)[frames], np.asarray(f["TARGET_Y"], float)[frames]
    s = truth.stars
    droll = -360.0 / 98.77 * truth.texptime / 60.0
    n_true = len(s)
    sub = Tracks(tracks.x[:, frames], tracks.y[:, frames], tracks.measured[:, frames])
    out = np.zeros((n_true, tracks.n_stars, len(roll)))
    for i in range(n_true):
        scene = SimpleNamespace(dx=np.asarray(s["DX0"][i:i + 1], float),
                                dy=np.asarray(s["DY0"][i:i + 1], float), n_stars=1)
        images, _ = render_stars(psf, scene, roll, tx, ty, truth.flux[i:i + 1, frames], droll, True)
        out[i] = np.nan_to_num(aperture_photometry(images, sub, apertures).flux)
    return out


def main(resources: str, results: str, radius: str | None = None) -> None:
    resources, results = Path(resources), Path(results)
    prepared = read_prepared(results / "prepared.fits")
    options = prepared.options
    visit = api.load_visit(next(resources.glob("PR*")), options)
    factors_doc = next(iter(read_optimized_factors(results / "optimization/optimized_factors.yaml").values()))
    factors = {j: s.factor for j, s in factors_doc.stars.items()}
    if radius is not None:
        factors = {j: float(radius) for j in factors}
    apertures = api.build_apertures(visit, prepared, factors)
    t0 = time.perf_counter()
    psf = EmpiricalPsf.from_visit(visit)
    model = field_model(visit, prepared.stars, prepared.tracks, psf)
    t1 = time.perf_counter()
    dec = decontaminate(visit.cube, model, prepared.tracks, apertures)
    t2 = time.perf_counter()
    print(f"field model {t1 - t0:.2f} s, decontamination {t2 - t1:.2f} s")
    truth = read_truth(resources / "truth.fits")
    frames = slice(0, visit.n_frames, 10)
    per = true_light_per_star(truth, prepared.tracks, apertures, frames)
    # match pipeline stars to true stars by first-frame position
    tx0, ty0 = truth.x[:, 0], truth.y[:, 0]
    x0, y0 = prepared.tracks.x[:, 0], prepared.tracks.y[:, 0]
    match = [int(np.argmin(np.hypot(tx0 - a, ty0 - b))) for a, b in zip(x0, y0)]
    print(" j  G     r   own_true  conta_true conta_model  ratio  flux/own  raw/own  fitted/true")
    for j in range(prepared.stars.n_stars):
        i = match[j]
        own = per[i, j]
        conta_true = per[:, j].sum(axis=0) - own
        cm = dec.conta[j, frames]
        fl = dec.flux[j, frames]
        raw = dec.flux_raw[j, frames]
        print(f"{j:2d} {truth.stars['MAG'][i]:5.1f} {factors[j]:5.1f} {np.median(own):10.4g} "
              f"{np.median(conta_true):10.4g} {np.median(cm):10.4g} "
              f"{np.median(cm) / np.median(conta_true):6.3f} {np.median(fl / own):8.4f} "
              f"{np.median(raw / own):8.3f} {model.flux[j] / np.median(truth.flux[i]):8.4f}")
        good = np.isfinite(fl)
        resid = fl / own - 1
        print(f"     scatter of flux/own: {np.std(resid[good]) * 1e6:8.0f} ppm; "
              f"raw/(own+conta_true)-1 scatter {np.std((raw / (own + conta_true) - 1)[good]) * 1e6:8.0f} ppm")


if __name__ == "__main__":
    main(*sys.argv[1:4])


def diagnose(resources: str, results: str) -> None:
    resources, results = Path(resources), Path(results)
    prepared = read_prepared(results / "prepared.fits")
    truth = read_truth(resources / "truth.fits")
    x0, y0 = prepared.tracks.x[:, 0], prepared.tracks.y[:, 0]
    for j in range(prepared.stars.n_stars):
        i = int(np.argmin(np.hypot(truth.x[:, 0] - x0[j], truth.y[:, 0] - y0[j])))
        dx = prepared.tracks.x[j] - truth.x[i]
        dy = prepared.tracks.y[j] - truth.y[i]
        print(f"star {j} (true {i}): dx mean {np.nanmean(dx):+.3f} rms {np.nanstd(dx):.3f}, "
              f"dy mean {np.nanmean(dy):+.3f} rms {np.nanstd(dy):.3f}")
