"""Experiment (not part of the library): why ``aperture_mode: archi`` gives noisier curves
than archi itself although it uses archi's masks. Run it from the project's environment
after ``python benchmarks/performance.py`` has run archi on the 1000-frame visit:

    python benchmarks/experiments/archi_masks_with_archi_positions.py [ARCHI_RUN_DIR]

(default ``benchmarks/cache/runs/1000f_9s/archi``; its ``curves.npz`` must hold archi's
per-frame positions, which ``benchmarks/pyarchi_runner.py`` writes since 2026-11-24.)

For each star archi found it measures archi's own circle (radius as archi chose, the first
frame's binary mask moved by whole pixels) three ways, with our photometry: moved along
archi's per-frame positions, along the simulation's true positions, and as our exact
circle along the true positions; and prints the K2 CDPP of each beside archi's own curve.

Measured on the benchmark machine (2026-11-24, commit 0f57584): along archi's positions
the fluxes equal archi's in every frame (9 stars x 1000 frames, to 1e-9), so the masks
and sums are archi's; along the true positions the same masks scatter more on 8 of 9
stars (archi's star 4: 114 against 95 ppm); the exact circle does better than both (86
ppm). archi's positions are off the truth by 0.1-0.2 px rms (ours 0.02-0.21 px): whole-
pixel moves reward an estimate that errs the way archi's does. Pixel locking does not
explain it (the error against the true sub-pixel phase has slopes of -0.08 to +0.06).

The last two columns move archi's masks along our own tracks (the workflow's
``aperture_mode: archi`` run, ``workflow_archi/``): by the rounded offset (what that mode
does), and by the whole-pixel shift, of the four around the track, whose mask holds the
most light. The second is at or below archi's CDPP on 7 of 9 stars (1-2 % above on 2),
the first above it on 8 (5-35 %): a lead for a better whole-pixel mode, at 4 sums per
circle and frame.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from archi import masks
from archi.io import read_visit
from archi.io.prepared import read_prepared
from archi.noise import k2_cdpp
from archi.photometry import aperture_photometry
from archi.simulate import read_truth
from archi.stars import Tracks

CACHE = Path("benchmarks/cache")


def _flux(cube, x, y, radius, mode, reference=None):
    tracks = Tracks(x=x[None], y=y[None], measured=np.ones((1, len(x)), bool))
    aperture = masks.CircleAperture(radius, mode=mode, reference=reference)
    return aperture_photometry(cube, tracks, [aperture]).flux[0]


def main(argv: list[str]) -> None:
    run = Path(argv[0]) if argv else CACHE / "runs" / "1000f_9s" / "archi"
    visit_root = CACHE / "visits" / run.parent.name
    drp = next(p for p in visit_root.iterdir() if p.name.startswith("PR"))
    visit = read_visit(drp)
    truth = read_truth(visit_root / "truth.fits")
    result = json.loads((run / "result.json").read_text())
    with np.load(run / "curves.npz") as curves:
        if "positions" not in curves:
            sys.exit(f"{run / 'curves.npz'}: no per-frame positions (rerun archi with the "
                     "current benchmarks/pyarchi_runner.py)")
        flux, positions = curves["flux"], curves["positions"]
    t = visit.mjd_time
    ours = read_prepared(next((run.parent / "workflow_archi" / "results").glob(
        "*/prepared.fits"))).tracks
    print("star radius: CDPP [ppm] archi | archi's masks along archi's positions (frames "
          "equal to archi's) | along the true positions | exact circle along the truth | "
          "archi's masks along our tracks: rounded shift / brightest of 4 shifts")
    for k, radius in enumerate(result["mask_factors"]):
        ya, xa = positions[k, :, 0], positions[k, :, 1]
        i = int(np.argmin(np.hypot(truth.x[:, 0] - xa[0], truth.y[:, 0] - ya[0])))
        xt, yt = truth.x[i], truth.y[i]
        along_archi = _flux(visit.cube, xa, ya, radius, "archi", (xa[0], ya[0]))
        along_truth = _flux(visit.cube, xt, yt, radius, "archi", (xa[0], ya[0]))
        exact = _flux(visit.cube, xt, yt, radius, "exact")
        equal = np.mean(np.abs(along_archi / flux[k] - 1) < 1e-9)
        j = int(np.argmin(np.hypot(ours.x[:, 0] - xa[0], ours.y[:, 0] - ya[0])))
        xo, yo = ours.x[j], ours.y[j]
        ref = (xo[0], yo[0])
        rounded = _flux(visit.cube, xo, yo, radius, "archi", ref)
        # positions on whole-pixel offsets from the reference: the mask moves exactly there
        fx, fy = np.floor(xo - ref[0]), np.floor(yo - ref[1])
        brightest = np.max([_flux(visit.cube, ref[0] + fx + i, ref[1] + fy + m, radius,
                                  "archi", ref) for i in (0, 1) for m in (0, 1)], axis=0)
        print(f"{k} {radius:.1f}: {k2_cdpp(flux[k], t):.1f} | {k2_cdpp(along_archi, t):.1f} "
              f"({equal:.3f}) | {k2_cdpp(along_truth, t):.1f} | {k2_cdpp(exact, t):.1f} | "
              f"{k2_cdpp(rounded, t):.1f} / {k2_cdpp(brightest, t):.1f}")


if __name__ == "__main__":
    main(sys.argv[1:])
