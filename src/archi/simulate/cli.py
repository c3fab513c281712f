"""``archi-simulate``: write a simulated CHEOPS visit (DRP and CHEOPSim layouts + truth).

    archi-simulate OUT_DIR [--config sim.yaml] [--n-frames N] [--seed S]
                   [--timeline real_lightcurve.fits] [--layouts drp,cheopsim]
                   [--psf-file CHEOPS_IT_PSFwhite_CH_TU2018-01-01.txt]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from archi.errors import ArchiError
from archi.simulate.config import SimulationConfig
from archi.simulate.core import simulate_visit


def build_parser(prog: str = "archi-simulate") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", help="folder to write the visit into (new or empty)")
    parser.add_argument("--force", action="store_true",
                        help="replace out_dir even if it holds files (they are deleted)")
    parser.add_argument("--config", help="YAML file of simulation options")
    parser.add_argument("--n-frames", type=int, help="number of stacked images")
    parser.add_argument("--seed", type=int, help="random seed")
    parser.add_argument("--timeline", help="real DRP light curve giving times, roll, centroids")
    parser.add_argument("--layouts", help="comma-separated subset of drp,cheopsim")
    parser.add_argument("--psf-file", help="PSF image (pycheops' text file or 2-D FITS) "
                                           "instead of the analytic PSF")
    return parser


def main(argv: list[str] | None = None, prog: str = "archi-simulate") -> int:
    """The command (``prog``: its name in messages; ``archi simulate`` runs it too)."""
    args = build_parser(prog).parse_args(argv)
    try:
        cfg = SimulationConfig.from_yaml(args.config) if args.config else SimulationConfig()
        changes = {}
        if args.n_frames is not None:
            changes["n_frames"] = args.n_frames
        if args.seed is not None:
            changes["seed"] = args.seed
        if args.timeline:
            changes["timeline"] = args.timeline
        if args.psf_file:
            changes["psf_file"] = args.psf_file
        if args.layouts:
            changes["layouts"] = tuple(s.strip() for s in args.layouts.split(","))
        cfg = dataclasses.replace(cfg, **changes)
        start = time.perf_counter()
        visit = simulate_visit(cfg, args.out_dir, overwrite=args.force)
    except (ArchiError, OSError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    print(f"simulated {cfg.n_frames} frames in {time.perf_counter() - start:.1f} s -> "
          f"{visit.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
