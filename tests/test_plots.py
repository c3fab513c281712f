"""Figures and the tracking GIF: files written, their pixel sizes, frame counts, atomicity."""

from __future__ import annotations

import dataclasses
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from archi import plots
from archi.io import read_visit
from archi.plots import gif, outlines
from archi.simulate import SimulationConfig, read_truth, simulate_visit
from archi.stars import FLAG_OUT_OF_BOUNDS, StarLightCurves, StarList, Tracks, event_flags


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG, from its IHDR chunk."""
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def expected_size(figsize: tuple[float, float], dpi: float) -> tuple[int, int]:
    return round(figsize[0] * dpi), round(figsize[1] * dpi)


def scatter_ppm(flux, time) -> float:
    return float(np.std(np.diff(flux)) / np.median(flux) * 1e6)


def make_lightcurves(sim) -> tuple[StarLightCurves, object]:
    """Truth-based light curves (truth flux + noise, truth positions) and the visit."""
    visit = read_visit(sim.drp_folder)
    truth = read_truth(sim.truth_path)
    rng = np.random.default_rng(5)
    n_stars, n_frames = truth.flux.shape
    flux_err = np.sqrt(truth.flux + 400.0)
    flux = truth.flux + rng.normal(0.0, 1.0, truth.flux.shape) * flux_err
    flag = np.zeros((n_stars, n_frames), dtype=np.int32)
    flag |= event_flags(visit.event)[None, :]
    flag[-1, :4] |= FLAG_OUT_OF_BOUNDS
    s = truth.stars
    stars = StarList(x0=truth.x[:, 0].copy(), y0=truth.y[:, 0].copy(),
                     catalogue_row=np.asarray(s["CATALOGUE_ROW"], dtype=np.int64),
                     source_id=np.asarray(s["ID"]).astype(str),
                     ra=np.asarray(s["RA"], dtype=float), dec=np.asarray(s["DEC"], dtype=float),
                     mag=np.asarray(s["MAG"], dtype=float),
                     brightness=np.asarray(s["RATE"], dtype=float))
    methods = tuple("shape" if k == 3 else "circle" for k in range(n_stars))
    factors = np.array([3.0 if m == "shape" else 6.0 + 0.5 * (k % 3)
                        for k, m in enumerate(methods)])
    cdpp = np.array([scatter_ppm(flux[k], visit.mjd_time) for k in range(n_stars)])
    lc = StarLightCurves(
        visit_key=visit.visit_id.file_key, mjd_time=visit.mjd_time, bjd_time=visit.bjd_time,
        roll_angle=visit.roll_angle, stars=stars,
        tracks=Tracks(x=truth.x.copy(), y=truth.y.copy(),
                      measured=np.ones((n_stars, n_frames), dtype=bool)),
        flux=flux, flux_err=flux_err, flag=flag, methods=methods, factors=factors,
        npix=np.where(np.array(methods) == "circle", np.pi * factors**2, 60.0), cdpp=cdpp,
        options={"method": "circle", "detect_mode": "dynam", "initial_detect": "fits",
                 "grid_bg": 0, "CDPP_type": "K2"})
    return lc, visit


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("plots_sim") / "visit"
    sim = simulate_visit(SimulationConfig(n_frames=40, layouts=("drp",)), root)
    return make_lightcurves(sim)


def disk_masks(lc: StarLightCurves, shape=(200, 200)):
    """``(star, frame) -> mask``: discs of radius 4 around the tracked positions."""
    yy, xx = np.indices(shape)

    def mask(star: int, frame: int) -> np.ndarray:
        return np.hypot(xx - lc.tracks.x[star, frame], yy - lc.tracks.y[star, frame]) <= 4
    return mask


def drawn(monkeypatch, module) -> list[dict]:
    """What each figure ``module`` saves holds, captured as it is saved: its suptitle; per
    axes, the (x, y) of every line, the title, the x label, the texts (text, position) and
    the arrows (from, to) [data coordinates]."""
    from matplotlib.text import Annotation

    figures = []
    real_save = module.save_png

    def capture(fig, path):
        figures.append({"path": Path(path), "suptitle": fig.get_suptitle(), "axes": [
            {"lines": [(np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float),
                        line.get_marker(), line.get_label()) for line in ax.get_lines()],
             "title": ax.get_title(), "xlabel": ax.get_xlabel(),
             "texts": [(t.get_text(), t.get_position()) for t in ax.texts
                       if not isinstance(t, Annotation)],
             "arrows": [(np.asarray(a.xyann, float), np.asarray(a.xy, float))
                        for a in ax.texts if isinstance(a, Annotation)]}
            for ax in fig.axes]})
        return real_save(fig, path)

    monkeypatch.setattr(module, "save_png", capture)
    return figures


def test_plot_star_lightcurves(data, tmp_path, monkeypatch):
    """Each star's figure draws its flux over the median of its good frames against
    BJD_TDB - 2457000 (left) and against the visit's roll angle (right), good frames as dots,
    flagged ones as crosses, and names the star, its Gaia id and G magnitude as the DRP
    star catalogue gives them (or "not in catalogue"), its mask and its CDPP."""
    from archi.plots import lightcurves as module
    from archi.stars import FLAG_REJECT

    lc, visit = data
    rows = lc.stars.catalogue_row.copy()
    rows[2] = -1  # a star found only in the images
    lc = dataclasses.replace(lc, stars=dataclasses.replace(lc.stars, catalogue_row=rows))
    figures = drawn(monkeypatch, module)
    paths = plots.plot_star_lightcurves(lc, tmp_path / "stars")
    assert [p.name for p in paths] == [f"star_{k}.png" for k in range(lc.n_stars)]
    time = visit.bjd_time - 2457000.0
    for k, (p, figure) in enumerate(zip(paths, figures)):
        assert png_size(p) == expected_size(plots.LIGHTCURVE_FIGSIZE, plots.DPI)
        by_time, by_roll = figure["axes"]
        assert by_time["xlabel"] == "BJD_TDB - 2457000 [d]"
        assert by_roll["xlabel"] == "roll angle [deg]"
        good = (lc.flag[k] & FLAG_REJECT) == 0
        expected = lc.flux[k] / np.median(lc.flux[k][good])
        for axes, x_data in ((by_time, time), (by_roll, visit.roll_angle)):
            x, y, marker, label = axes["lines"][0]
            assert marker == "." and (axes is by_roll or label == f"good ({good.sum()})")
            np.testing.assert_allclose(x, x_data[good], rtol=1e-12)
            np.testing.assert_allclose(y, expected[good], rtol=1e-12)
            x, y, marker, _ = axes["lines"][1]
            assert marker == "x" and len(x) == (~good).sum()  # 4 for the last star
            np.testing.assert_allclose(x, x_data[~good], rtol=1e-12)
            np.testing.assert_allclose(y, expected[~good], rtol=1e-12)
        title = figure["suptitle"]
        assert f"star {k}:" in title and f"{lc.factors[k]:g}" in title
        assert f"{lc.cdpp[k]:.1f}" in title
        if k == 2:
            assert "not in catalogue" in title and "Gaia" not in title
        else:  # the DRP catalogue's own row, read here from the visit
            row = lc.stars.catalogue_row[k]
            assert f"Gaia {visit.catalogue.ids[row]}, G = {visit.catalogue.mag[row]:.2f}" in title
    assert len(figures) == lc.n_stars
    assert sorted(x.name for x in (tmp_path / "stars").iterdir()) == sorted(p.name for p in paths)


def test_plot_target_vs_drp(data, tmp_path):
    lc, visit = data
    calls = []

    def metric(flux, time):
        calls.append(len(flux))
        return scatter_ppm(flux, time)

    out = plots.plot_target_vs_drp(lc, visit, tmp_path / "cmp.png", "OPTIMAL", metric=metric)
    assert png_size(out) == expected_size(plots.COMPARE_FIGSIZE, plots.DPI)
    assert len(calls) == 2  # archi and DRP, each once, on their good frames only
    assert calls[1] == int(np.sum(visit.status == 0))
    plots.plot_target_vs_drp(lc, visit, tmp_path / "plain.png")
    assert (tmp_path / "plain.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="NOPE"):
        plots.plot_target_vs_drp(lc, visit, tmp_path / "x.png", "NOPE")
    assert not (tmp_path / "x.png").exists()


def test_plot_cdpp_vs_factor(tmp_path, monkeypatch):
    """One line per star through its valid runs (factor, CDPP) in factor order, its invalid
    runs as crosses (not at their penalty value), the chosen factor as a star symbol at its
    CDPP, or a dotted line when that factor has no valid run (star 2, 8.5)."""
    from archi.plots import cdpp as module

    figures = drawn(monkeypatch, module)
    rows = []
    for star in range(3):
        for factor in np.arange(3.0, 9.0, 0.5):
            valid = not (star == 2 and factor > 7.5)
            rows.append((star, factor, 100.0 * (1 + (factor - 5 - star) ** 2) if valid
                         else 2e7, valid))
    table = pd.DataFrame(rows, columns=["star", "factor", "cdpp", "valid"])
    out = plots.plot_cdpp_vs_factor(table, tmp_path / "cdpp.png",
                                    chosen={0: 5.0, 1: 6.0, 2: 8.5})
    assert png_size(out) == expected_size(plots.CDPP_FIGSIZE, plots.DPI)
    lines = figures[0]["axes"][0]["lines"]
    by_label = {label: (x, y) for x, y, _, label in lines if label.startswith("star")}
    for star, chosen in ((0, 5.0), (1, 6.0), (2, 8.5)):
        mine = table[(table.star == star) & table.valid].sort_values("factor")
        x, y = by_label[f"star {star} (chosen {chosen:g})"]
        np.testing.assert_array_equal(x, mine.factor.to_numpy())
        np.testing.assert_array_equal(y, mine.cdpp.to_numpy())
    stars_drawn = [(x[0], y[0]) for x, y, marker, _ in lines if marker == "*"]
    assert stars_drawn == [(5.0, 100.0), (6.0, 100.0)]  # each at its minimum, 100 ppm
    crosses = [x for x, _, marker, _ in lines if marker == "x"]
    assert len(crosses) == 1 and np.array_equal(crosses[0], np.arange(8.0, 9.0, 0.5))
    assert max(y.max() for _, y, _, label in lines if label.startswith("star")) < 2e7
    with pytest.raises(ValueError, match="valid"):
        plots.plot_cdpp_vs_factor(table.drop(columns="valid"), tmp_path / "bad.png")
    invalid = table.assign(valid=False)
    plots.plot_cdpp_vs_factor(invalid, tmp_path / "none.png")  # nothing valid: still a figure
    assert png_size(tmp_path / "none.png") == expected_size(plots.CDPP_FIGSIZE, plots.DPI)
    assert all(len(y) == 0 for _, y, marker, _ in figures[-1]["axes"][0]["lines"]
               if marker == "o")


def test_plot_field(data, tmp_path, monkeypatch):
    """The field names every star by its number and its catalogue G magnitude (read here
    from the visit's DRP catalogue), beside its tracked position in the frame drawn."""
    from archi.plots import field as module

    lc, visit = data
    figures = drawn(monkeypatch, module)
    out = plots.plot_field(visit, lc, tmp_path / "field.png", frame=5)
    assert png_size(out) == expected_size(plots.FIELD_FIGSIZE, plots.DPI)
    texts = dict(figures[0]["axes"][0]["texts"])
    for k in range(lc.n_stars):
        label = f"{k}\nG {visit.catalogue.mag[lc.stars.catalogue_row[k]]:.1f}"
        x, y = texts[label]
        assert abs(abs(x - lc.tracks.x[k, 5]) - 3) < 1e-9 and y == lc.tracks.y[k, 5] + 3
    plots.plot_field(visit, lc, tmp_path / "masks.png", apertures=disk_masks(lc))
    assert (tmp_path / "masks.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="frame"):
        plots.plot_field(visit, lc, tmp_path / "x.png", frame=lc.n_frames)


def sky_probe_visit(visit, sky):
    """The visit with a catalogue of three stars: the target, one 30 arcsec north of it
    (Dec only) and one 30 arcsec east (RA only), and the catalogue-to-pixel mapping ``sky``."""
    ra0, dec0 = float(visit.catalogue.ra[0]), float(visit.catalogue.dec[0])
    step = 30.0 / 3600.0
    cat = dataclasses.replace(
        visit.catalogue, ra=np.array([ra0, ra0, ra0 + step / np.cos(np.radians(dec0))]),
        dec=np.array([dec0, dec0 + step, dec0]))
    return dataclasses.replace(visit, catalogue=cat, sky=sky)


def angle_deg(u, v) -> float:
    u, v = np.asarray(u, float), np.asarray(v, float)
    cos = np.dot(u, v) / np.hypot(*u) / np.hypot(*v)
    return float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))


@pytest.mark.parametrize("sky", [None, "turned"])
def test_field_arrows_point_north_and_east(data, tmp_path, monkeypatch, sky):
    """The N arrow points from the target towards a catalogue star offset in Dec only, the
    E arrow towards one offset in RA only, as archi's sky-to-pixel mapping places them
    (geometry.catalogue_positions) in the frame drawn: PIPE's mapping, and a visit whose
    measured mapping is mirrored, turns the other way and is rotated by 30 deg."""
    from archi.geometry import SkyTransform, catalogue_positions
    from archi.plots import field as module

    lc, visit = data
    transform = SkyTransform(sense=-1, mirrored=True, rotation_deg=30.0) if sky else None
    probe = sky_probe_visit(visit, transform)
    figures = drawn(monkeypatch, module)
    for frame in (0, 13, 27):
        plots.plot_field(probe, lc, tmp_path / "field.png", frame=frame)
        x, y = catalogue_positions(probe, np.array([frame]))
        (north_from, north_to), (east_from, east_to) = figures[-1]["axes"][0]["arrows"]
        north, east = north_to - north_from, east_to - east_from
        assert np.hypot(*north) == pytest.approx(module.COMPASS_LENGTH)
        # exact directions: measured 0.0 deg (arccos resolves ~1e-6), tolerance 1e-3 deg
        assert angle_deg(north, (x[1, 0] - x[0, 0], y[1, 0] - y[0, 0])) < 1e-3
        assert angle_deg(east, (x[2, 0] - x[0, 0], y[2, 0] - y[0, 0])) < 1e-3
        texts = dict(figures[-1]["axes"][0]["texts"])
        assert angle_deg(np.subtract(texts["N"], north_from), north) < 1e-3
        assert angle_deg(np.subtract(texts["E"], east_from), east) < 1e-3


def test_sky_directions_at_roll_0_and_90():
    """PIPE's mapping (geometry's docstring): at roll 0 north is +y and east -x; the field
    turns by -roll, so at roll 90 north is +x and east +y."""
    from types import SimpleNamespace

    for roll, north, east in ((0.0, (0, 1), (-1, 0)), (90.0, (1, 0), (0, 1))):
        visit = SimpleNamespace(sky=None, roll_angle=np.array([roll]))
        got_north, got_east = plots.sky_directions(visit, 0)
        np.testing.assert_allclose(got_north, north, atol=1e-12)
        np.testing.assert_allclose(got_east, east, atol=1e-12)


def test_mask_edges_outline_a_pixel_block():
    mask = np.zeros((5, 6), dtype=bool)
    mask[1:3, 2:5] = True  # 2 rows x 3 columns
    edges = outlines.mask_edges(mask)
    assert edges.shape == (2 * (2 + 3), 2, 2)  # perimeter in pixel edges
    xs, ys = edges[..., 0], edges[..., 1]
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (1.5, 4.5, 0.5, 2.5)


def test_gif_frames_and_duration(data, tmp_path):
    import imageio.v3 as iio

    lc, visit = data
    out = plots.save_gif(visit, lc, tmp_path / "track.gif", max_frames=7,
                         frame_duration_ms=150)
    frames = iio.imread(out, index=None)
    assert frames.shape[0] == 7
    assert frames.shape[1:3] == (200 * plots.GIF_SCALE, 200 * plots.GIF_SCALE)
    assert iio.immeta(out, index=0)["duration"] == 150
    picked = plots.gif_frame_indices(40, 7)  # evenly spread, first and last included
    assert len(picked) == 7 and picked[0] == 0 and picked[-1] == 39
    assert set(np.diff(picked)) <= {6, 7}
    np.testing.assert_array_equal(plots.gif_frame_indices(5, 7), np.arange(5))

    per_star = [lambda frame, k=k: disk_masks(lc)(k, frame) for k in range(lc.n_stars)]
    out2 = plots.save_gif(visit, lc, tmp_path / "masks.gif", max_frames=3, apertures=per_star)
    assert iio.imread(out2, index=None).shape[0] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["masks.gif", "track.gif"]


def test_gif_outlines_every_circle_over_its_star(data, tmp_path):
    """In every GIF frame, the pixels along each circle star's aperture (radius = its factor
    about its tracked position, both from the light curves) are the outline's colour, and a
    cross marks its centre: the apertures stay visible over the stars they follow."""
    from PIL import Image

    lc, visit = data
    out = plots.save_gif(visit, lc, tmp_path / "track.gif", max_frames=6)
    picked = plots.gif_frame_indices(lc.n_frames, 6)
    angles = np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)
    scale = plots.GIF_SCALE
    cyan = gif.gif_palette()[3 * gif.OUTLINE_INDEX:3 * gif.OUTLINE_INDEX + 3]
    assert cyan == [0, 255, 255]
    seen = []
    with Image.open(out) as movie:
        for i, frame in enumerate(picked):
            movie.seek(i)
            rgb = np.asarray(movie.convert("RGB"))
            outline = (rgb == cyan).all(axis=2)
            near = outline | np.roll(outline, 1, 0) | np.roll(outline, -1, 0)
            near |= np.roll(near, 1, 1) | np.roll(near, -1, 1)  # within one GIF pixel
            for k in range(lc.n_stars):
                if lc.methods[k] != "circle":
                    continue
                x = lc.tracks.x[k, frame] + lc.factors[k] * np.cos(angles)
                y = lc.tracks.y[k, frame] + lc.factors[k] * np.sin(angles)
                col = np.floor((x + 0.5) * scale).astype(int)
                row = np.floor((199.5 - y) * scale).astype(int)
                inside = (col >= 0) & (col < 200 * scale) & (row >= 0) & (row < 200 * scale)
                if inside.sum() >= 12:  # a quarter of the circle in the image at least
                    seen.append(near[row[inside], col[inside]].mean())
                cx = int((lc.tracks.x[k, frame] + 0.5) * scale)
                cy = int((199.5 - lc.tracks.y[k, frame]) * scale)
                if 0 <= cx < 200 * scale and 0 <= cy < 200 * scale:
                    assert outline[cy, cx]
    # measured: min 0.85 (other stars' numbers drawn over a circle), mean 0.95
    assert len(seen) > 20 and min(seen) >= 0.7 and np.mean(seen) >= 0.9


def test_gif_bytes_per_frame(data, tmp_path):
    """The GIF stays small: the demo's budget, 2 MB for GIF_MAX_FRAMES (60) frames, is 33 kB
    a frame; this visit's frames take 20.5 kB each (measured; the demo's 21 kB)."""
    lc, visit = data
    out = plots.save_gif(visit, lc, tmp_path / "track.gif")
    n = min(lc.n_frames, plots.GIF_MAX_FRAMES)
    assert out.stat().st_size / n < 2e6 / plots.GIF_MAX_FRAMES


def test_gif_write_is_atomic(data, tmp_path, monkeypatch):
    lc, visit = data
    real = gif._GifRenderer.render
    calls = {"n": 0}

    def failing(self, frame):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed")
        return real(self, frame)

    monkeypatch.setattr(gif._GifRenderer, "render", failing)
    with pytest.raises(RuntimeError, match="killed"):
        plots.save_gif(visit, lc, tmp_path / "track.gif", max_frames=5)
    assert list(tmp_path.iterdir()) == []


def test_png_write_is_atomic(data, tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    lc, _ = data

    def broken(self, fname, *args, **kwargs):
        Path(fname).write_bytes(b"\x89PNG\r\n\x1a\n partial")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        plots.plot_star_lightcurves(lc, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_plot_drp_lightcurves_still_works(data, tmp_path):
    _, visit = data
    plots.plot_drp_lightcurves(visit, tmp_path / "drp.png")
    assert png_size(tmp_path / "drp.png") == expected_size(plots.DRP_FIGSIZE, 110)


class BoxAperture:
    """Minimal aperture object (``weights(x, y)`` protocol): a 3 x 3 block around (x, y)."""

    area = 9.0

    def weights(self, x, y):
        ix0 = np.round(np.asarray(x)).astype(int) - 1
        iy0 = np.round(np.asarray(y)).astype(int) - 1
        return np.ones((len(ix0), 3, 3)), ix0, iy0


def test_aperture_objects_give_masks_at_the_tracked_position(data, tmp_path):
    lc, visit = data
    getter = outlines.mask_getter([BoxAperture()] * lc.n_stars, lc, (200, 200))
    mask = getter(0, 4)
    iy, ix = np.nonzero(mask)
    assert mask.sum() == 9
    assert ix.mean() == round(lc.tracks.x[0, 4]) and iy.mean() == round(lc.tracks.y[0, 4])
    edge = StarLightCurves(**{**lc.__dict__, "tracks": Tracks(
        np.zeros_like(lc.tracks.x), np.zeros_like(lc.tracks.y), lc.tracks.measured)})
    corner = outlines.mask_getter([BoxAperture()] * lc.n_stars, edge, (200, 200))(0, 0)
    assert corner.sum() == 4 and corner[:2, :2].all()  # clipped at the image edge
    plots.plot_field(visit, lc, tmp_path / "boxes.png", apertures=[BoxAperture()] * lc.n_stars)
    assert (tmp_path / "boxes.png").stat().st_size > 1000
    with pytest.raises(ValueError, match="entries"):
        plots.plot_field(visit, lc, tmp_path / "x.png", apertures=[BoxAperture()])
