"""The field model's PSF far out: with the real CHEOPS PSF a bright target's wing has
structure (spikes, lobes) fixed on the detector 70-100 px out, which background stars cross
as the field turns; cut at 70 px, the model left it in their FLUX as roll harmonics. The
PSF now reaches 100 px and keeps, beyond 70 px, its structure about each ring's median
(:func:`archi.psf.ring_structure_only`). On the demo's scene drawn with the real PSF (300
frames, 208 deg of roll), against the simulator's truth."""

from __future__ import annotations

import numpy as np
import pytest
from test_turning_light import _roll_harmonics, measured_demo


@pytest.fixture(scope="module")
def real_psf_demo(tmp_path_factory, real_psf_file):
    return measured_demo(tmp_path_factory.mktemp("real_psf_demo"), psf_file=str(real_psf_file))


def test_no_roll_harmonic_in_a_star_beyond_the_old_stamp(real_psf_demo):
    """The star 85 px from the target (G 13), whose 15 px circle lies wholly beyond the old
    70 px stamp: first and second roll harmonics of FLUX / true own light at most 1.5x its
    noise per frame (measured 0.86 and 0.23; with the PSF cut at 70 px 2.54 and 3.00). The
    star 75 px out, half inside, stays as it was (0.59 and 0.72; 0.58 and 0.77 before)."""
    demo = real_psf_demo
    truth, match = demo["truth"], demo["match"]
    d = np.hypot(truth.x[:, 0] - truth.x[0, 0], truth.y[:, 0] - truth.y[0, 0])
    tested = [j for j, i in enumerate(match) if 80 <= d[i] <= 90 and j > 0]
    assert len(tested) == 1
    amplitudes = _roll_harmonics(demo, tested[0])
    assert np.all(amplitudes <= 1.5), amplitudes


def test_ring_structure_only_keeps_the_structure_and_drops_the_ring_level():
    """Beyond the radius every 1 px ring has median 0 and keeps its deviations; inside,
    nothing changes."""
    from archi.psf import ring_structure_only

    radius = 40
    yy, xx = np.indices((2 * radius + 1,) * 2) - radius
    r, phi = np.hypot(xx, yy), np.arctan2(yy, xx)
    stamp = 1.0 / (1 + (r / 5) ** 2) * (1 + 0.3 * np.cos(3 * phi))
    out = ring_structure_only(stamp, 25)
    inside = r < 24.5
    assert np.array_equal(out[inside], stamp[inside])
    ring = np.rint(r).astype(int)
    for q in (25, 30, 40):
        pixels = ring == q
        assert abs(np.median(out[pixels])) < 1e-15
        # the three-fold structure stays: its amplitude about the ring, to 2 %
        dev = out[pixels] - np.mean(out[pixels])
        want = stamp[pixels] - np.mean(stamp[pixels])
        assert np.allclose(dev, want, rtol=0, atol=0.02 * np.abs(want).max())
