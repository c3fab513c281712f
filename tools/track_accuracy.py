"""How far a prepared visit's tracks are from a simulated visit's true positions.

    python tools/track_accuracy.py results/demo/prepared.fits resources/demo/truth.fits

One line per star: its true star (by catalogue row, else the nearest in the first frame),
magnitude, distance from the target, and the RMS and mean of the track's distance from the
true position over every frame [pixel]. Exit status 0.
"""

from __future__ import annotations

import sys

import numpy as np

from archi.io.prepared import read_prepared
from archi.simulate.truth import read_truth


def true_rows(prepared, truth) -> np.ndarray:
    """The truth row of each prepared star: the same catalogue row, else the nearest."""
    rows = np.asarray(truth.stars["CATALOGUE_ROW"])
    out = []
    for j in range(prepared.stars.n_stars):
        row = prepared.stars.catalogue_row[j]
        same = np.flatnonzero((rows == row) & (row >= 0))
        if len(same):
            out.append(int(same[0]))
        else:
            out.append(int(np.argmin(np.hypot(truth.x[:, 0] - prepared.tracks.x[j, 0],
                                              truth.y[:, 0] - prepared.tracks.y[j, 0]))))
    return np.array(out)


def main(prepared_path: str, truth_path: str) -> int:
    prepared, truth = read_prepared(prepared_path), read_truth(truth_path)
    tracks = prepared.tracks
    print("star true    G  dist[px]  rms[px]  mean[px]")
    for j, i in enumerate(true_rows(prepared, truth)):
        d = np.hypot(tracks.x[j] - truth.x[i], tracks.y[j] - truth.y[i])
        print(f"{j:4d} {i:4d} {truth.stars['MAG'][i]:5.1f} {truth.stars['DISTANCE'][i]:8.1f}"
              f" {np.sqrt(np.mean(d ** 2)):8.3f} {np.mean(d):8.3f}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
