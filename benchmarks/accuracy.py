"""Accuracy of the photometry against the truth of a simulated visit (numbers for the README).

    python benchmarks/accuracy.py [--frames 260] [--seed 11]

Simulates the default crowded field, runs catalogue/offsets and image/dynam pipelines, and
prints per star: detection error, tracking RMS, noise against the theoretical floor,
reported error against measured scatter; plus the target's CDPP against the DRP's and the
recovered transit depth. The same quantities are asserted in tests/test_pipeline.py.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from archi import api
from archi.geometry import FIELD_CENTRE, FIELD_RADIUS
from archi.noise import k2_cdpp
from archi.options import Options
from archi.simulate import SimulationConfig, read_truth, simulate_visit
from archi.stars import FLAG_OUT_OF_BOUNDS


def robust_scatter(values: np.ndarray) -> float:
    d = np.diff(values[np.isfinite(values)])
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=260)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = simulate_visit(SimulationConfig(n_frames=args.frames, seed=args.seed,
                                                layouts=("drp",)), Path(tmp) / "visit")
        truth = read_truth(paths.truth_path)
        inside = (np.hypot(truth.x - FIELD_CENTRE[0], truth.y - FIELD_CENTRE[1]) + 20
                  <= FIELD_RADIUS).all(axis=1)
        d0 = np.hypot(truth.x[:, 0][:, None] - truth.x[:, 0][None],
                      truth.y[:, 0][:, None] - truth.y[:, 0][None])
        np.fill_diagonal(d0, np.inf)
        visible = truth.stars["MAG"] <= truth.stars["MAG"][0] + 5
        isolated = ~((d0 < 45) & visible[None]).any(axis=1)
        for name, options in (("fits/offsets", Options(initial_detect="fits")),
                              ("dynam/dynam", Options(initial_detect="dynam",
                                                      detect_mode="dynam"))):
            visit = api.load_visit(paths.drp_folder, options)
            prepared = api.prepare(visit, options)
            result = api.optimize_factors(visit, prepared)
            curves = api.extract(visit, prepared, result.factors)
            print(f"\n{name}: {prepared.stars.n_stars} stars")
            print(" star  G     isol  det_err  track_rms  factor  noise/floor  err/scatter")
            for j in range(prepared.stars.n_stars):
                d = np.hypot(truth.x[:, 0] - prepared.stars.x0[j],
                             truth.y[:, 0] - prepared.stars.y0[j])
                k = int(np.argmin(d))
                rms = np.sqrt(np.mean((prepared.tracks.x[j] - truth.x[k]) ** 2
                                      + (prepared.tracks.y[j] - truth.y[k]) ** 2))
                good = (curves.flag[j] & FLAG_OUT_OF_BOUNDS) == 0
                rel = curves.flux[j] / truth.flux[k] * np.median(truth.flux[k])
                scatter = robust_scatter(rel[good]) if good.any() else np.nan
                f = truth.frames
                # photon noise of the light inside the aperture
                floor = np.sqrt(np.median(np.nanmedian(curves.flux[j]) + curves.npix[j] * (
                    f["BACKGROUND"] + f["DARK"] + truth.nexp * f["READ_NOISE"] ** 2)))
                err = np.median(curves.flux_err[j][good]) if good.any() else np.nan
                print(f" {k:4d}  {truth.stars['MAG'][k]:4.1f}  {str(bool(isolated[k] and inside[k]))[0]}"
                      f"     {d[k]:6.2f}  {rms:9.2f}  {curves.factors[j]:6.1f}"
                      f"  {scatter / floor:11.2f}  {err / scatter:11.2f}")
            drp = k2_cdpp(visit.lightcurves["DEFAULT"].flux, visit.mjd_time)
            print(f" target CDPP {k2_cdpp(curves.flux[0], visit.mjd_time):.1f} ppm, "
                  f"DRP DEFAULT {drp:.1f} ppm")
            k = int(np.flatnonzero(np.char.strip(truth.stars["SIGNAL"]) == "transit")[0])
            j = int(np.argmin(np.hypot(prepared.stars.x0 - truth.x[k, 0],
                                       prepared.stars.y0 - truth.y[k, 0])))
            days = truth.frames["MJD_TIME"] - truth.frames["MJD_TIME"][0]
            t0, dur, depth = (truth.stars[c][k] for c in ("T0", "DURATION", "DEPTH"))
            full, out = np.abs(days - t0) < 0.35 * dur, np.abs(days - t0) > 0.6 * dur
            got = 1 - np.median(curves.flux[j][full]) / np.median(curves.flux[j][out])
            print(f" transit depth {got * 100:.3f} % (injected {depth * 100:.3f} %)")


if __name__ == "__main__":
    main()
