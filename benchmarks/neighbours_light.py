"""The neighbours' light on the crowded test scene, before and after the field model.

    python benchmarks/neighbours_light.py [--frames 300] [--out benchmarks/neighbours_light.md]
                                          [--psf-file CHEOPS_IT_PSFwhite_CH_TU2018-01-01.txt]

Simulates tests/data/crowded_scene.yaml (a G = 9 target, two blended pairs, a bright star
just outside the field, a transit 22 px from the target) and runs the pipeline twice, with
archi's FLUX (``decontaminate: false``: the mask's sum, and circles may not reach a
brighter star's centre) and with the field model (``decontaminate: true``: FLUX is the
star's own light and the search scores it). Per star it prints the chosen radius, the true
neighbours' light in that circle over the star's own (rendered with the simulator's PSF at
the true positions, photutils sums), and the scatter of FLUX against the true own light
over the noise floor (photon noise of all the light in the circle, sky, dark, read noise).
Then PSF photometry (``method: psf``, :mod:`archi.psfphot`: every star fitted in every frame
with the field model's PSF) on the same prepared visit: the scatter of its flux against the
true flux over the same floor (the chosen circle's, so that the columns compare the noise
itself), and its median over the true flux.

``--psf-file``: simulate with that PSF instead of the analytic one (the simulator's option
``psf_file``, e.g. the real CHEOPS PSF shipped with pycheops); the truth uses it too.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np

from archi import api
from archi.options import Options
from archi.psfphot import visit_psf_photometry
from archi.simulate import SimulationConfig, simulate_visit
from archi.simulate.neighbours import light_in_circles
from archi.simulate.psf_file import simulation_psf
from archi.simulate.truth import read_truth

SCENE = Path(__file__).resolve().parents[1] / "tests" / "data" / "crowded_scene.yaml"


def evaluate(visit, truth, options: Options, frames: np.ndarray, psf=None) -> dict:
    t0 = time.perf_counter()
    prepared = api.prepare(visit, options)
    result = api.optimize_factors(visit, prepared)
    curves = api.extract(visit, prepared, result.factors, search_result=result)
    seconds = time.perf_counter() - t0
    radius = np.array([result.factors[j] for j in range(curves.n_stars)])
    light = light_in_circles(truth, curves.tracks.x, curves.tracks.y, radius, frames, psf=psf)
    match = np.array([int(np.argmin(np.hypot(truth.x[:, 0] - x, truth.y[:, 0] - y)))
                      for x, y in zip(curves.tracks.x[:, 0], curves.tracks.y[:, 0])])
    own = light[match, np.arange(curves.n_stars)]
    neighbours = light.sum(axis=0) - own
    table = truth.frames
    sky = (np.asarray(table["BACKGROUND"], float) + np.asarray(table["DARK"], float)
           + np.asarray(table["READ_NOISE"], float) ** 2 * truth.nexp)[frames]
    area = np.nanmean(curves.npix[:, None] * np.ones((1, len(frames))), axis=1)
    floor = np.median(np.sqrt(own + neighbours + area[:, None] * sky[None]) / own, axis=1)
    scatter = np.std(curves.flux[:, frames] / own
                     / np.median(curves.flux[:, frames] / own, axis=1, keepdims=True), axis=1)
    return dict(match=match, radius=radius, valid=result.valid, seconds=seconds,
                contamination=np.median(neighbours, axis=1) / np.median(own, axis=1),
                noise=scatter / floor, cdpp=curves.cdpp, floor=floor, prepared=prepared)


def evaluate_psf(visit, truth, after: dict, frames: np.ndarray) -> dict:
    """PSF photometry on the field model of ``after``: scatter of flux / true flux over
    ``after``'s floor, median flux / true flux, and its CPU time."""
    t0 = time.process_time()
    fit = visit_psf_photometry(visit, after["prepared"])
    seconds = time.process_time() - t0
    n = len(after["match"])
    ratio = fit.flux[:n, frames] / truth.flux[after["match"]][:, frames]
    median = np.median(ratio, axis=1)
    return dict(noise=np.std(ratio / median[:, None], axis=1) / after["floor"],
                accuracy=median - 1.0, seconds=seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--psf-file", default="", help="PSF file to simulate with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = dataclasses.replace(SimulationConfig.from_yaml(SCENE), n_frames=args.frames,
                                  psf_file=args.psf_file)
        sim_psf = simulation_psf(cfg)
        sim = simulate_visit(cfg, Path(tmp) / "crowded")
        truth = read_truth(sim.truth_path)
        base = Options(initial_detect="fits", detect_mode="dynam")
        visit = api.load_visit(sim.drp_folder, base)
        frames = np.arange(0, visit.n_frames, 3)
        before = evaluate(visit, truth, base.replace(decontaminate=False), frames, sim_psf)
        after = evaluate(visit, truth, base, frames, sim_psf)
        psf = evaluate_psf(visit, truth, after, frames)
    simulated = f", PSF {Path(args.psf_file).name}" if args.psf_file else ""
    lines = [f"Crowded scene{simulated}, {args.frames} frames; pipeline {before['seconds']:.1f} s without "
             f"the field model, {after['seconds']:.1f} s with it (prepare, search, extraction); "
             f"PSF photometry of every star {psf['seconds']:.1f} s of CPU.",
             "", "| star | G | distance [px] | radius before / after [px] | neighbours' light / "
             "own light, before / after | FLUX scatter / noise floor, before / after | PSF "
             "flux: scatter / the same floor | PSF flux / true flux - 1 |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    stars = truth.stars
    for j, i in enumerate(after["match"]):
        valid = "" if after["valid"][j] else " (no valid circle)"
        lines.append(f"| {j} | {stars['MAG'][i]:.1f} | {stars['DISTANCE'][i]:.0f} | "
                     f"{before['radius'][j]:.1f} / {after['radius'][j]:.1f}{valid} | "
                     f"{before['contamination'][j]:.2f} / {after['contamination'][j]:.2f} | "
                     f"{before['noise'][j]:.1f} / {after['noise'][j]:.2f} | "
                     f"{psf['noise'][j]:.2f} | {100 * psf['accuracy'][j]:+.2f} % |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
