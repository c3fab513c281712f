"""numba's on-disk cache of the circle kernels (archi.circlesum) under parallel jobs.

Workflow jobs start at once on a fresh install (or a shared filesystem): two processes
that both compile the kernels and write the same cache must neither crash nor corrupt it,
and a later process must load the kernels from it instead of compiling. Each process
checks its own numbers against geometry it does not compute with the kernel: a circle
inside a uniform image sums to value x pi r^2, a binary circle of radius 1 is 5 pixels.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import archi

SRC = Path(archi.__file__).resolve().parents[1]

JOB = r"""
import json, math, time
import numpy as np
t0 = time.process_time()
from archi.circlesum import circle_sums, exact_circle_weights
frames = np.full((3, 200, 200), 7.0)
frames[2, 100, 100] = np.nan
x = np.array([[100.3, 100.3, 100.3], [50.0, 50.0, 50.0]])
y = np.array([[99.6, 99.6, 99.6], [60.0, 60.0, 60.0]])
flux, area, oob = circle_sums(frames, x, y, np.array([14.0, 1.0]), np.array([False, True]))
w = exact_circle_weights(np.array([20.25]), np.array([30.5]), np.array([5]), np.array([15]),
                         14.0, 30)
print(json.dumps({
    "flux": flux.tolist(), "area": area.tolist(), "oob": oob.tolist(),
    "weights": float(w.sum()), "cpu_s": time.process_time() - t0,
    "hits": [len(f.stats.cache_hits) for f in (circle_sums, exact_circle_weights)],
    "misses": [len(f.stats.cache_misses) for f in (circle_sums, exact_circle_weights)],
}))
"""


def _start(cache: Path) -> subprocess.Popen:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache),
               PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    return subprocess.Popen([sys.executable, "-c", JOB], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _result(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=300)
    assert process.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _assert_right(result: dict) -> None:
    disk = 7.0 * 3.141592653589793 * 14.0 ** 2
    flux, area, oob = result["flux"], result["area"], result["oob"]
    assert abs(flux[0][0] - disk) < 1e-12 * disk and flux[0][1] == flux[0][0]
    assert abs(area[0][2] - (area[0][0] - 1.0)) < 1e-12  # the NaN pixel: a whole pixel lost
    assert oob == [[False, False, True], [False, False, False]]
    assert flux[1] == [35.0, 35.0, 35.0] and area[1] == [5.0, 5.0, 5.0]  # radius 1: a cross
    assert abs(result["weights"] - 3.141592653589793 * 196.0) < 1e-10


def test_two_jobs_compile_at_once_and_a_third_loads_the_cache(tmp_path):
    cache = tmp_path / "numba-cache"
    first = [_start(cache), _start(cache)]  # both find no cache: both compile and write it
    results = [_result(p) for p in first]
    for result in results:
        _assert_right(result)
    assert list(cache.rglob("*circlesum*.nbi")) and list(cache.rglob("*circlesum*.nbc"))
    start = time.perf_counter()
    third = _result(_start(cache))
    _assert_right(third)
    assert third["misses"] == [0, 0] and third["hits"] == [1, 1]  # loaded, not compiled
    # loading is much cheaper than compiling (measured: 0.5 s against 4.1 s of CPU, imports
    # included)
    assert third["cpu_s"] < 0.5 * min(r["cpu_s"] for r in results), (third, results)
    assert time.perf_counter() - start < 60
