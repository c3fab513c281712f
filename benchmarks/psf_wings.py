"""Does the field model cope with the real PSF's far wings? The crowded scene simulated with
each PSF, decontaminated with 10 px circles, against the truth.

    python benchmarks/psf_wings.py --psf-file CHEOPS_IT_PSFwhite_CH_TU2018-01-01.txt
        [--frames 150] [--out benchmarks/psf_wings.md]

PSFs: the analytic model (default of the simulator, wings to 100 px), the analytic model
as it was before its far wings (halo cut at 64 px, the stamp written to a FITS file), and
the real CHEOPS white PSF of pycheops (``pycheops/data/instrument/`` of the pycheops
package; not shipped with archi). Per star: median CONTA over the true neighbours' light in
its circle, median FLUX over its true own light (truth: each true star rendered alone with
the PSF the visit was simulated with, photutils sums), as tests/test_contamination.py; and
how many pixels per frame the cosmic-ray search took as hits, and FLUX without patching
them (real hits then add noise, medians barely move).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

from archi import api
from archi.contamination import decontaminate
from archi.masks import CircleAperture
from archi.options import Options
from archi.simulate import SimulationConfig, simulate_visit
from archi.simulate.neighbours import light_in_circles
from archi.simulate.psf import PixelPsf, PsfModel
from archi.simulate.psf_file import simulation_psf
from archi.simulate.truth import read_truth

SCENE = Path(__file__).resolve().parents[1] / "tests" / "data" / "crowded_scene.yaml"
RADIUS = 10.0  # [pixel] every star's circle
OLD_MODEL = PsfModel(halo_radius=13.082, halo_beta=1.0792, support_radius=64.0,
                     weights=(0.3709, 0.4156, 0.0565, 0.1570, 0.0))


def measure(cfg: SimulationConfig, folder: Path) -> dict:
    """Simulate, decontaminate, compare with the truth; per star medians."""
    t0 = time.perf_counter()
    sim = simulate_visit(cfg, folder)
    options = Options(initial_detect="fits", detect_mode="dynam")
    visit = api.load_visit(sim.drp_folder, options)
    prepared = api.prepare(visit, options)
    tracks = prepared.tracks
    apertures = [CircleAperture(RADIUS) for _ in range(tracks.n_stars)]
    result = decontaminate(visit.cube, prepared.model, tracks, apertures,
                           cosmics=prepared.cosmics)
    seconds = time.perf_counter() - t0
    unpatched = decontaminate(visit.cube, prepared.model, tracks, apertures)  # hits left in
    truth = read_truth(sim.truth_path)
    frames = np.arange(0, visit.n_frames, 3)
    light = light_in_circles(truth, tracks.x, tracks.y, np.full(tracks.n_stars, RADIUS),
                             frames, psf=simulation_psf(cfg))
    match = np.array([int(np.argmin(np.hypot(truth.x[:, 0] - x, truth.y[:, 0] - y)))
                      for x, y in zip(tracks.x[:, 0], tracks.y[:, 0])])
    own = light[match, np.arange(tracks.n_stars)]
    neighbours = light.sum(axis=0) - own
    per_track = dict(
        conta=np.median(result.conta[:, frames], axis=1) / np.median(neighbours, axis=1),
        neighbours=np.median(neighbours, axis=1) / np.median(own, axis=1),
        flux=np.median(result.flux[:, frames] / own, axis=1),
        unpatched=np.median(unpatched.flux[:, frames] / own, axis=1))
    out = {}  # indexed by the true star (NaN: not tracked)
    for key, values in per_track.items():
        out[key] = np.full(len(truth.stars), np.nan)
        out[key][match] = values
    return dict(out, mag=truth.stars["MAG"], dist=truth.stars["DISTANCE"], seconds=seconds,
                flagged=len(prepared.cosmics.frame) / visit.n_frames)


def write_old_model(path: Path) -> None:
    """The pre-wings analytic PSF's centred pixel stamp as a FITS image."""
    fits.PrimaryHDU(PixelPsf(OLD_MODEL).stamps[0, 0]).writeto(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--psf-file", type=Path, required=True,
                        help="pycheops' CHEOPS_IT_PSFwhite_CH_TU2018-01-01.txt")
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    base = dataclasses.replace(SimulationConfig.from_yaml(SCENE), n_frames=args.frames)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old_model.fits"
        write_old_model(old)
        for name, psf_file in (("analytic", ""), ("analytic, cut at 64 px", str(old)),
                               ("real", str(args.psf_file.resolve()))):
            cfg = dataclasses.replace(base, psf_file=psf_file)
            runs[name] = measure(cfg, Path(tmp) / name.split(",")[0].replace(" ", "_"))
    names = list(runs)
    ref = runs[names[0]]
    lines = [f"Crowded scene, {args.frames} frames, 10 px circles; CONTA / true neighbours' "
             f"light and FLUX / true own light (medians over frames), per PSF: "
             + ", ".join(f"{n} ({runs[n]['seconds']:.0f} s)" for n in names) + ". Pixels "
             "taken as cosmic-ray hits per frame: "
             + ", ".join(f"{n} {runs[n]['flagged']:.0f}" for n in names) + ".", "",
             "| star | G | distance [px] | true neighbours / own (" + " / ".join(names)
             + ") | CONTA / true | FLUX / own | FLUX / own, hits not patched |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for j in range(len(ref["mag"])):
        def cells(key: str, fmt: str) -> str:
            return " / ".join(format(runs[n][key][j], fmt) for n in names)
        lines.append(f"| {j} | {ref['mag'][j]:.1f} | {ref['dist'][j]:.0f} | "
                     f"{cells('neighbours', '.3f')} | {cells('conta', '.3f')} | "
                     f"{cells('flux', '.4f')} | {cells('unpatched', '.4f')} |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
