"""Run pyarchi 1.2.1 (the original archi) on one visit: optimisation, extraction, export.

Runs inside pyarchi's own virtual environment (made by ``benchmarks/performance.py``), so
it imports nothing from this project. Usage::

    python pyarchi_runner.py BASE_FOLDER WORK_DIR OPTIONS_JSON

``BASE_FOLDER`` holds one visit's DRP files one directory down (archi's ``base/*/*``
search). ``OPTIONS_JSON`` overrides archi configuration keys. Writes ``WORK_DIR/result.json``
(timings, factors, archi's own CDPP per star) and ``WORK_DIR/curves.npz`` (every star's
flux, its first and per-frame positions (y, x) [pixel], the frame times), and nothing else
outside ``WORK_DIR``.

Two shims, applied here and never in pyarchi's files, make the old code run on current
libraries:
- its configuration is passed as a dict (its YAML reader needs PyYAML < 6);
- OpenCV >= 4.5 returns contours as a tuple; archi removes small contours with
  ``list.pop``, so ``cv2.findContours`` is wrapped to return a list.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

_find_contours = cv2.findContours


def _find_contours_as_list(*args, **kwargs):
    contours, hierarchy = _find_contours(*args, **kwargs)
    return list(contours), hierarchy


cv2.findContours = _find_contours_as_list

# archi's defaults (its example configuration) for the keys the benchmark does not set;
# everything interactive or display-bound is off.
BASE_CONFIG = {
    "official_curve": "DEFAULT",
    "data_type": "real",
    "method": "circle",
    "initial_detect": "dynam",
    "detect_mode": "dynam",
    "uncertainties": 1,
    "grid_bg": 0,
    "repeat_removal": 0,
    "optimize": 0,
    "optimization_extensions": 0,
    "optim_processes": 2,
    "fine_tune_circle": 1,
    "val_range": [8, 16],
    "step": 2,
    "headless": 1,
    "low_memory": 0,
    "CDPP_type": "K2",
    "debug": 0,
    "show_results": 0,
    "plot_realtime": 0,
    "save_gif": 0,
    "report_pictures": 0,
    "export_text": 1,
    "export_fit": 1,
}


def main() -> None:
    base_folder, work_dir, options_path = sys.argv[1:4]
    work = Path(work_dir)
    (work / "factors").mkdir(parents=True, exist_ok=True)
    (work / "results").mkdir(parents=True, exist_ok=True)
    config = dict(BASE_CONFIG)
    config.update(json.loads(Path(options_path).read_text()))
    config.update(base_folder=str(base_folder), optimized_factors=str(work / "factors"),
                  results_folder=str(work / "results"))
    os.chdir(work)  # archi writes my_app.log into the working directory
    t_import = time.perf_counter()
    import matplotlib
    matplotlib.use("Agg")
    from pyarchi import Photo_controller, store_data
    timings = {"import_s": time.perf_counter() - t_import}

    t0 = time.perf_counter()
    controller = Photo_controller(1, config, no_optim=True)
    controller.optimize()
    timings["optimize_s"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    data = controller.run()
    timings["run_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    store_data(data, 1, **controller.parameters)
    timings["store_s"] = time.perf_counter() - t2
    timings["total_s"] = time.perf_counter() - t0

    factors = json.loads(next((work / "factors").glob("*.json")).read_text())
    stars = data.stars
    time_mjd = np.asarray(data.mjd_time, dtype=float)
    own_cdpp = [float(star.calculate_cdpp(time_mjd)[0]) for star in stars]
    np.savez(work / "curves.npz",
             flux=np.array([np.asarray(s.photom, dtype=float) for s in stars]),
             position0=np.array([s.positions[0] for s in stars], dtype=float),
             positions=np.array([np.asarray(s.positions, dtype=float) for s in stars]),
             out_of_bounds=np.array([s.out_bound for s in stars]),
             mjd_time=time_mjd)
    result = {"timings": timings, "factors": factors, "archi_cdpp": own_cdpp,
              "n_stars": len(stars),
              "mask_factors": [float(np.asarray(s.mask_factor).ravel()[0]) for s in stars],
              "config": {k: v for k, v in config.items() if k != "CDPP_type"}}
    (work / "result.json").write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
