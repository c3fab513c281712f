"""Figures and the tracking GIF.

Matplotlib is imported lazily inside the functions, with the non-interactive Agg backend;
figures are built as :class:`matplotlib.figure.Figure` objects (no pyplot figure manager to
leak). Every file is written to a temporary name beside its destination and renamed when
complete (:func:`archi.io.fitswrite.atomic_path`).

Image sizes are fixed (no ``bbox_inches="tight"``), so they are known in advance: see the
``*_FIGSIZE`` constants [inch] and :data:`DPI` [pixel per inch].

Star outlines (:func:`plot_field`, :func:`save_gif`) are drawn from ``apertures`` when given,
otherwise approximated: a circle of the factor radius for ``circle`` stars, a dashed circle
of the mean mask area (``npix``) for ``shape`` stars. ``apertures`` is one of

* one callable ``(star, frame) -> mask``;
* a sequence with one entry per star, each either a callable ``frame -> mask`` or an
  aperture object with a ``weights(x, y) -> (weights (n, h, w), ix0 (n,), iy0 (n,))``
  method (:class:`archi.masks.Aperture`), placed at the star's tracked position; its mask
  is ``weights > 0`` with cutout pixel ``[j, i]`` on image pixel ``[iy0 + j, ix0 + i]``.

A mask is a boolean image of the frame's shape (``mask[y, x]``, pixel conventions in
``archi.__doc__``), outlined along pixel edges.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from numpy.typing import NDArray

from archi.io.atomic import atomic_path
from archi.noise import INVALID_CDPP, NoiseMetric, score
from archi.stars import StarLightCurves
from archi.visit import Visit

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = [
    "DPI",
    "LIGHTCURVE_FIGSIZE",
    "COMPARE_FIGSIZE",
    "CDPP_FIGSIZE",
    "FIELD_FIGSIZE",
    "GIF_FIGSIZE",
    "GIF_DPI",
    "GIF_FRAME_DURATION_MS",
    "Apertures",
    "plot_drp_lightcurves",
    "plot_star_lightcurves",
    "plot_target_vs_drp",
    "plot_cdpp_vs_factor",
    "plot_field",
    "save_gif",
    "gif_frame_indices",
]

DPI = 100
"""Resolution of the PNG figures [pixel per inch]."""
LIGHTCURVE_FIGSIZE = (8.0, 4.0)
"""Size of a per-star light-curve figure [inch] (800 x 400 pixels at :data:`DPI`)."""
COMPARE_FIGSIZE = (8.0, 6.0)
"""Size of the target-versus-DRP figure [inch]."""
CDPP_FIGSIZE = (8.0, 5.0)
"""Size of the CDPP-versus-factor figure [inch]."""
FIELD_FIGSIZE = (7.0, 7.0)
"""Size of the field figure [inch]."""
DRP_FIGSIZE = (8.0, 5.5)
"""Size of the DRP light-curve figure [inch]."""
GIF_FIGSIZE = (5.0, 5.0)
"""Size of a GIF frame [inch] (480 x 480 pixels at :data:`GIF_DPI`)."""
GIF_DPI = 96
"""Resolution of the GIF frames [pixel per inch]."""
GIF_FRAME_DURATION_MS = 200.0
"""Default display time of one GIF frame [millisecond].

imageio >= 2.28 (its v3 pillow plugin, used here) takes ``duration`` in milliseconds; the
old v2 GIF writer archi used took seconds (archi's ``duration=0.5`` means 0.5 ms today:
F15). The GIF format stores it in units of 10 ms.
"""

MaskFunction = Callable[[int], NDArray[np.bool_]]
Apertures = Union[Callable[[int, int], NDArray[np.bool_]], Sequence[Any]]
"""Star masks: ``f(star, frame) -> mask``, or per star ``f_star(frame) -> mask`` or an
aperture object with a ``weights(x, y)`` method (module docstring)."""

_NAN_COLOUR = "0.72"  # pixels outside the field of view (NaN) are drawn in this grey
_CMAP = "magma"
_CIRCLE_POINTS = 73


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------

def _figure(figsize: tuple[float, float], dpi: float = DPI) -> Figure:
    """A new Agg-backed figure (matplotlib imported here, with the Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Figure, path: str | Path, dpi: float = DPI) -> Path:
    """Save ``fig`` as a PNG at ``path`` atomically; parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path


def _hours(mjd: NDArray[np.float64]) -> NDArray[np.float64]:
    """Hours since the first frame."""
    mjd = np.asarray(mjd, dtype=float)
    return (mjd - mjd[0]) * 24.0


def _normalised(flux: NDArray[np.float64], good: NDArray[np.bool_]) -> NDArray[np.float64]:
    """``flux`` divided by the median of its good finite values (NaN if there are none)."""
    flux = np.asarray(flux, dtype=float)
    use = good & np.isfinite(flux)
    if not use.any():
        use = np.isfinite(flux)
    median = float(np.median(flux[use])) if use.any() else math.nan
    if not math.isfinite(median) or median == 0.0:
        return np.full_like(flux, np.nan)
    return flux / median


def _number(value: float, fmt: str = ".1f") -> str:
    value = float(value)
    return format(value, fmt) if math.isfinite(value) else "n/a"


def _check_visit_frames(visit: Visit, lc: StarLightCurves) -> None:
    if visit.n_frames != lc.n_frames:
        raise ValueError(f"the visit has {visit.n_frames} frames but the light curves "
                         f"{lc.n_frames}")


def _log_display(image: NDArray[np.float64]) -> tuple[NDArray[np.float64], float, float]:
    """(image clipped at the log-stretch floor, NaN kept; vmin; vmax) [electrons]."""
    image = np.asarray(image, dtype=float)
    finite = image[np.isfinite(image)]
    positive = finite[finite > 0]
    if positive.size == 0:
        vmin, vmax = 1.0, 10.0
    else:
        vmin = float(np.percentile(positive, 20.0))
        vmax = float(max(positive.max(), vmin * 10.0))
    with np.errstate(invalid="ignore"):
        shown = np.where(np.isfinite(image), np.maximum(image, vmin), np.nan)
    return shown, vmin, vmax


def _cmap() -> Any:
    import matplotlib

    return matplotlib.colormaps[_CMAP].with_extremes(bad=_NAN_COLOUR)


def _mask_from_weights(aperture: Any, x: float, y: float,
                       shape: tuple[int, int]) -> NDArray[np.bool_]:
    """Full-image mask ``weights > 0`` of an aperture object placed at (x, y) [pixel]."""
    mask = np.zeros(shape, dtype=bool)
    if not (math.isfinite(x) and math.isfinite(y)):
        return mask
    weights, ix0, iy0 = aperture.weights(np.array([x]), np.array([y]))
    cut = np.asarray(weights)[0] > 0
    i0, j0 = int(np.asarray(ix0)[0]), int(np.asarray(iy0)[0])
    h, w = cut.shape
    ys, xs = slice(max(j0, 0), min(j0 + h, shape[0])), slice(max(i0, 0), min(i0 + w, shape[1]))
    if ys.start < ys.stop and xs.start < xs.stop:
        mask[ys, xs] = cut[ys.start - j0:ys.stop - j0, xs.start - i0:xs.stop - i0]
    return mask


def _mask_getter(apertures: Apertures | None, lc: StarLightCurves, shape: tuple[int, int]
                 ) -> Callable[[int, int], NDArray[np.bool_]] | None:
    """``(star, frame) -> mask`` from any form of ``apertures`` (module docstring)."""
    if apertures is None:
        return None
    if callable(apertures):
        return apertures
    entries = list(apertures)
    if len(entries) != lc.n_stars:
        raise ValueError(f"apertures has {len(entries)} entries for {lc.n_stars} stars")
    for k, entry in enumerate(entries):
        if not (callable(entry) or callable(getattr(entry, "weights", None))):
            raise ValueError(f"apertures[{k}] is neither a callable (frame -> mask) nor an "
                             f"aperture with a weights(x, y) method")

    def mask(star: int, frame: int) -> NDArray[np.bool_]:
        entry = entries[star]
        if callable(getattr(entry, "weights", None)):
            return _mask_from_weights(entry, float(lc.tracks.x[star, frame]),
                                      float(lc.tracks.y[star, frame]), shape)
        return entry(frame)
    return mask


def _mask_edges(mask: NDArray[np.bool_]) -> NDArray[np.float64]:
    """Pixel-edge segments around the True pixels of ``mask``: shape (k, 2, 2), (x, y) pairs."""
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    iy, ix = np.nonzero(m[:, 1:] != m[:, :-1])  # edges between columns ix-1 and ix (unpadded)
    x = ix - 0.5
    y = iy - 1.0
    vertical = np.stack([np.column_stack([x, y - 0.5]), np.column_stack([x, y + 0.5])], axis=1)
    iy, ix = np.nonzero(m[1:, :] != m[:-1, :])  # edges between rows iy-1 and iy
    y = iy - 0.5
    x = ix - 1.0
    horizontal = np.stack([np.column_stack([x - 0.5, y]), np.column_stack([x + 0.5, y])],
                          axis=1)
    return np.concatenate([vertical, horizontal]).reshape(-1, 2, 2)


def _circle(x: float, y: float, radius: float) -> NDArray[np.float64]:
    t = np.linspace(0.0, 2.0 * np.pi, _CIRCLE_POINTS)
    return np.column_stack([x + radius * np.cos(t), y + radius * np.sin(t)])


def _outlines(lc: StarLightCurves, frame: int, shape: tuple[int, int],
              masks: Callable[[int, int], NDArray[np.bool_]] | None
              ) -> tuple[list[NDArray[np.float64]], list[NDArray[np.float64]]]:
    """(solid lines, dashed lines) outlining every star's mask in ``frame``."""
    solid: list[NDArray[np.float64]] = []
    dashed: list[NDArray[np.float64]] = []
    for k in range(lc.n_stars):
        x, y = float(lc.tracks.x[k, frame]), float(lc.tracks.y[k, frame])
        if masks is not None:
            mask = np.asarray(masks(k, frame), dtype=bool)
            if mask.shape != shape:
                raise ValueError(f"aperture of star {k} in frame {frame} has shape "
                                 f"{mask.shape}, the image {shape}")
            solid.extend(_mask_edges(mask))
        elif not (math.isfinite(x) and math.isfinite(y)):
            continue
        elif lc.methods[k] == "circle" and math.isfinite(float(lc.factors[k])):
            solid.append(_circle(x, y, float(lc.factors[k])))
        elif math.isfinite(float(lc.npix[k])) and lc.npix[k] > 0:
            dashed.append(_circle(x, y, math.sqrt(float(lc.npix[k]) / math.pi)))
    return solid, dashed


def _label_effects() -> list[Any]:
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=2.0, foreground="black")]


# --------------------------------------------------------------------------------------------
# Light curves
# --------------------------------------------------------------------------------------------

def plot_drp_lightcurves(visit: Visit, path: str | Path) -> None:
    """The DRP light curves of the target (normalised) and the roll angle, against time."""
    fig = _figure(DRP_FIGSIZE)
    ax_flux, ax_roll = fig.subplots(2, 1, sharex=True)
    hours = _hours(visit.mjd_time)
    good = visit.status == 0
    for name, lc in sorted(visit.lightcurves.items()):
        norm = _normalised(lc.flux, good)
        ax_flux.plot(hours[good], norm[good], ".", ms=3, label=f"{name} (R={lc.radius:g} px)")
    ax_flux.set_ylabel("DRP flux / median")
    ax_flux.legend(fontsize=8)
    ax_flux.set_title(f"{visit.visit_id.file_key}  {visit.target_name}")
    ax_roll.plot(hours, visit.roll_angle, ".", ms=3)
    ax_roll.set_ylabel("roll angle [deg]")
    ax_roll.set_xlabel("hours since first frame")
    fig.tight_layout()
    _save_png(fig, path, dpi=110)


def plot_star_lightcurves(lc: StarLightCurves, folder: str | Path) -> list[Path]:
    """One PNG per star, ``<folder>/star_<n>.png``: normalised flux against time.

    The flux is divided by the median of the star's good frames (FLAG 0 and measured
    position) and drawn against hours since the first frame; flagged frames are drawn as
    red crosses. The title gives the star number, mask method and factor, and CDPP [ppm].
    Size :data:`LIGHTCURVE_FIGSIZE` at :data:`DPI`. Returns the paths in star order.
    """
    folder = Path(folder)
    hours = _hours(lc.mjd_time)
    paths = []
    fig = _figure(LIGHTCURVE_FIGSIZE)
    for k in range(lc.n_stars):
        fig.clf()
        ax = fig.add_subplot()
        good = (np.asarray(lc.flag[k]) == 0) & np.asarray(lc.tracks.measured[k], dtype=bool)
        norm = _normalised(lc.flux[k], good)
        ax.plot(hours[good], norm[good], ".", ms=3, color="C0",
                label=f"good ({int(good.sum())})")
        if (~good).any():
            ax.plot(hours[~good], norm[~good], "x", ms=4, color="C3", alpha=0.8,
                    label=f"flagged ({int((~good).sum())})")
        unit = "px" if lc.methods[k] == "circle" else "layers"
        ax.set_title(f"{lc.visit_key}  star {k}: {lc.methods[k]} factor "
                     f"{float(lc.factors[k]):g} {unit}, CDPP {_number(lc.cdpp[k])} ppm",
                     fontsize=10)
        ax.set_xlabel("hours since first frame")
        ax.set_ylabel("flux / median")
        ax.legend(fontsize=8, loc="best")
        fig.tight_layout()
        paths.append(_save_png(fig, folder / f"star_{k}.png"))
    return paths


def plot_target_vs_drp(lc: StarLightCurves, visit: Visit, path: str | Path,
                       official_curve: str = "DEFAULT",
                       metric: NoiseMetric | None = None) -> Path:
    """Target (star 0) against the DRP light curve ``official_curve``, both normalised.

    Top panel: both light curves divided by the median of their good frames (archi: FLAG 0;
    DRP: STATUS 0) against hours since the first frame. Bottom panel: archi minus DRP on
    frames good in both [ppt]. With ``metric`` (``f(flux [e-], time [d]) -> float``, e.g.
    :func:`archi.noise.k2_cdpp`) each legend entry gives the metric of the good frames
    (computed once each, through :func:`archi.noise.score`). Returns the path.

    Raises ``ValueError`` when the visit has no such light curve or a different number of
    frames.
    """
    if official_curve not in visit.lightcurves:
        raise ValueError(f"the visit has no DRP light curve {official_curve!r} (it has "
                         f"{', '.join(sorted(visit.lightcurves)) or 'none'})")
    drp = visit.lightcurves[official_curve]
    if len(drp.flux) != lc.n_frames:
        raise ValueError(f"DRP light curve {official_curve} has {len(drp.flux)} frames, the "
                         f"light curves {lc.n_frames}")
    hours = _hours(lc.mjd_time)
    good_a = ((np.asarray(lc.flag[0]) == 0) & np.isfinite(lc.flux[0])
              & np.asarray(lc.tracks.measured[0], dtype=bool))
    good_d = (np.asarray(drp.status) == 0) & np.isfinite(drp.flux)
    norm_a = _normalised(lc.flux[0], good_a)
    norm_d = _normalised(drp.flux, good_d)

    label_a = f"archi ({lc.methods[0]} {float(lc.factors[0]):g})"
    label_d = f"DRP {official_curve} (R={drp.radius:g} px)"
    if metric is not None:
        for which, flux, good in (("a", lc.flux[0], good_a), ("d", drp.flux, good_d)):
            value = score(metric, np.asarray(flux)[good], np.asarray(lc.mjd_time)[good], True)
            text = "n/a" if value == INVALID_CDPP else f"{value:.1f}"
            if which == "a":
                label_a += f"; CDPP = {text}"
            else:
                label_d += f"; CDPP = {text}"

    fig = _figure(COMPARE_FIGSIZE)
    ax, ax_diff = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    ax.plot(hours[good_d], norm_d[good_d], ".", ms=3, color="0.45", label=label_d)
    ax.plot(hours[good_a], norm_a[good_a], ".", ms=3, color="C0", label=label_a)
    ax.set_ylabel("flux / median")
    ax.set_title(f"{lc.visit_key}  target: archi vs DRP {official_curve}", fontsize=10)
    ax.legend(fontsize=8)
    both = good_a & good_d
    ax_diff.plot(hours[both], (norm_a[both] - norm_d[both]) * 1e3, ".", ms=3, color="C2")
    ax_diff.axhline(0.0, color="0.3", lw=0.8)
    ax_diff.set_ylabel("archi - DRP [ppt]")
    ax_diff.set_xlabel("hours since first frame")
    fig.tight_layout()
    return _save_png(fig, path)


def plot_cdpp_vs_factor(table: pd.DataFrame, path: str | Path,
                        chosen: Mapping[int, float] | None = None) -> Path:
    """CDPP [ppm, log scale] against the mask factor, one line per star.

    ``table`` is a CDPP table (columns ``star``, ``factor``, ``cdpp``, ``valid``, e.g. from
    :func:`archi.optimize.read_cdpp_tables`); several rows of one star and factor are all
    drawn. Valid runs are joined by a line; invalid runs (their CDPP is a penalty) are not
    placed at their value but marked by crosses along the top edge. ``chosen`` maps star ->
    chosen factor, marked by a large star symbol (a dotted vertical line when that factor
    has no valid run in the table). Returns the path.

    Raises ``ValueError`` when ``table`` lacks a column or has no rows.
    """
    import pandas as pd

    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"table must be a pandas DataFrame, not {type(table).__name__}")
    missing = [c for c in ("star", "factor", "cdpp", "valid") if c not in table.columns]
    if missing:
        raise ValueError(f"CDPP table lacks column(s) {', '.join(missing)}")
    if table.empty:
        raise ValueError("CDPP table has no rows")
    df = table.loc[:, ["star", "factor", "cdpp", "valid"]].copy()
    df["star"] = df["star"].astype(int)
    df["factor"] = df["factor"].astype(float)
    df["cdpp"] = df["cdpp"].astype(float)
    df["valid"] = df["valid"].astype(bool) & np.isfinite(df["cdpp"]) & (df["cdpp"] > 0)
    chosen = dict(chosen or {})

    import matplotlib
    from matplotlib.transforms import blended_transform_factory

    fig = _figure(CDPP_FIGSIZE)
    ax = fig.add_subplot()
    top = blended_transform_factory(ax.transData, ax.transAxes)
    stars = sorted(df["star"].unique())
    cmap = matplotlib.colormaps["tab20" if len(stars) <= 20 else "viridis"]
    any_valid = bool(df["valid"].any())
    for i, star in enumerate(stars):
        colour = cmap(i % 20) if len(stars) <= 20 else cmap(i / max(len(stars) - 1, 1))
        rows = df[df["star"] == star].sort_values("factor", kind="stable")
        valid = rows[rows["valid"]]
        invalid = rows[~rows["valid"]]
        label = f"star {star}"
        if star in chosen:
            label += f" (chosen {float(chosen[star]):g})"
        ax.plot(valid["factor"], valid["cdpp"], "-o", ms=3, lw=1, color=colour, label=label)
        if len(invalid):
            ax.plot(invalid["factor"], np.full(len(invalid), 0.97), "x", ms=5, color=colour,
                    transform=top, clip_on=False)
        if star in chosen:
            f = float(chosen[star])
            hit = valid[np.isclose(valid["factor"], f, rtol=0.0, atol=1e-6)]
            if len(hit):
                ax.plot([f], [float(hit["cdpp"].min())], "*", ms=14, color=colour,
                        markeredgecolor="black", zorder=5)
            else:
                ax.axvline(f, color=colour, ls=":", lw=1.2)
    if any_valid:
        ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no valid run", transform=ax.transAxes, ha="center", va="center")
    if (~df["valid"]).any():
        ax.text(0.99, 1.01, "x: invalid run", transform=ax.transAxes, ha="right", va="bottom",
                fontsize=8)
    ax.set_xlabel("mask factor (radius [pixel] or layers)")
    ax.set_ylabel("CDPP [ppm]")
    ax.legend(fontsize=7, ncol=2 if len(stars) > 8 else 1, loc="best")
    fig.tight_layout()
    return _save_png(fig, path)


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------

def plot_field(visit: Visit, lc: StarLightCurves, path: str | Path, frame: int = 0, *,
               apertures: Apertures | None = None) -> Path:
    """One frame (log stretch) with every star's mask outline and number (star_names.png).

    NaN pixels (outside the field of view) are drawn in grey. Outlines: module docstring.
    Size :data:`FIELD_FIGSIZE` at :data:`DPI`. Returns the path.

    Raises ``ValueError`` for a frame out of range or when the visit and the light curves
    have different numbers of frames.
    """
    _check_visit_frames(visit, lc)
    if not 0 <= frame < lc.n_frames:
        raise ValueError(f"frame {frame} out of range (0..{lc.n_frames - 1})")
    from matplotlib.collections import LineCollection
    from matplotlib.colors import LogNorm

    image = np.asarray(visit.cube[frame], dtype=float)
    shown, vmin, vmax = _log_display(image)
    fig = _figure(FIELD_FIGSIZE)
    ax = fig.add_subplot()
    im = ax.imshow(shown, origin="lower", cmap=_cmap(), norm=LogNorm(vmin, vmax, clip=True),
                   interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02, label="electrons (log scale)")
    solid, dashed = _outlines(lc, frame, image.shape,
                             _mask_getter(apertures, lc, image.shape))
    ax.add_collection(LineCollection(solid, colors="cyan", linewidths=0.8))
    ax.add_collection(LineCollection(dashed, colors="cyan", linewidths=0.8, linestyles="--"))
    x, y = lc.tracks.x[:, frame], lc.tracks.y[:, frame]
    ax.plot(x, y, "+", color="cyan", ms=5)
    effects = _label_effects()
    for k in range(lc.n_stars):
        if math.isfinite(float(x[k])) and math.isfinite(float(y[k])):
            ax.text(float(x[k]) + 3, float(y[k]) + 3, str(k), color="white", fontsize=8,
                    path_effects=effects, clip_on=True)
    ax.set_xlim(-0.5, image.shape[1] - 0.5)
    ax.set_ylim(-0.5, image.shape[0] - 0.5)
    ax.set_xlabel("x [pixel]")
    ax.set_ylabel("y [pixel]")
    ax.set_title(f"{lc.visit_key}  frame {frame}, roll {float(lc.roll_angle[frame]):.1f} deg",
                 fontsize=10)
    return _save_png(fig, path)


def gif_frame_indices(n_frames: int, max_frames: int) -> NDArray[np.int64]:
    """Frames of a GIF: all of them, or ``max_frames`` evenly spread from first to last."""
    if max_frames < 1:
        raise ValueError(f"max_frames must be at least 1, not {max_frames}")
    if n_frames <= max_frames:
        return np.arange(n_frames, dtype=np.int64)
    if max_frames == 1:
        return np.zeros(1, dtype=np.int64)
    return np.round(np.linspace(0, n_frames - 1, max_frames)).astype(np.int64)


class _GifRenderer:
    """One figure reused for every frame: image data, outlines and labels are updated."""

    def __init__(self, visit: Visit, lc: StarLightCurves, first: int,
                 masks: Callable[[int, int], NDArray[np.bool_]] | None):
        from matplotlib.collections import LineCollection
        from matplotlib.colors import LogNorm

        self.visit, self.lc, self.masks = visit, lc, masks
        image = np.asarray(visit.cube[first], dtype=float)
        self.shape = image.shape
        shown, self.vmin, vmax = _log_display(image)  # one stretch for the whole GIF
        self.fig = fig = _figure(GIF_FIGSIZE, GIF_DPI)
        ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
        ax.set_axis_off()
        self.im = ax.imshow(shown, origin="lower", cmap=_cmap(),
                            norm=LogNorm(self.vmin, vmax, clip=True), interpolation="nearest")
        ax.set_xlim(-0.5, image.shape[1] - 0.5)
        ax.set_ylim(-0.5, image.shape[0] - 0.5)
        self.solid = ax.add_collection(LineCollection([], colors="cyan", linewidths=0.8))
        self.dashed = ax.add_collection(LineCollection([], colors="cyan", linewidths=0.8,
                                                       linestyles="--"))
        (self.marks,) = ax.plot([], [], "+", color="cyan", ms=5)
        effects = _label_effects()
        self.labels = [ax.text(0, 0, str(k), color="white", fontsize=7, path_effects=effects,
                               clip_on=True) for k in range(lc.n_stars)]
        self.corner = ax.text(0.02, 0.98, "", transform=ax.transAxes, ha="left", va="top",
                              color="white", fontsize=9, path_effects=effects)

    def render(self, frame: int) -> NDArray[np.uint8]:
        """The figure for ``frame`` as an RGB array (height, width, 3)."""
        image = np.asarray(self.visit.cube[frame], dtype=float)
        with np.errstate(invalid="ignore"):
            self.im.set_data(np.where(np.isfinite(image), np.maximum(image, self.vmin), np.nan))
        solid, dashed = _outlines(self.lc, frame, self.shape, self.masks)
        self.solid.set_segments(solid)
        self.dashed.set_segments(dashed)
        x, y = self.lc.tracks.x[:, frame], self.lc.tracks.y[:, frame]
        self.marks.set_data(x, y)
        for k, label in enumerate(self.labels):
            ok = math.isfinite(float(x[k])) and math.isfinite(float(y[k]))
            label.set_visible(ok)
            if ok:
                label.set_position((float(x[k]) + 3, float(y[k]) + 3))
        self.corner.set_text(f"frame {frame}/{self.lc.n_frames - 1}\n"
                             f"roll {float(self.lc.roll_angle[frame]):.1f} deg")
        self.fig.canvas.draw()
        return np.asarray(self.fig.canvas.buffer_rgba())[..., :3].copy()


def save_gif(visit: Visit, lc: StarLightCurves, path: str | Path, *, max_frames: int = 100,
             apertures: Apertures | None = None,
             frame_duration_ms: float = GIF_FRAME_DURATION_MS) -> Path:
    """Animated GIF of the frames with every star's position, outline and number.

    At most ``max_frames`` frames, evenly spread over the visit (:func:`gif_frame_indices`);
    each is shown for ``frame_duration_ms`` milliseconds (set explicitly: imageio's v3
    pillow plugin takes milliseconds, the GIF stores tens of milliseconds) and the GIF loops
    forever. The frame number and roll angle are written in the top-left corner; outlines
    as in the module docstring. Frames are rendered one by one in memory (no image files on
    disk) from a single reused figure and appended to imageio's writer; the cube is read one
    frame at a time. The pillow plugin keeps the appended frames until it encodes the GIF
    on close, so memory is bounded by ``max_frames`` frames of 480 x 480 x 3 bytes
    (~0.7 MB each). Written atomically. Returns the path.

    Raises ``ValueError`` when the visit and the light curves have different numbers of
    frames, or ``max_frames`` < 1, or ``frame_duration_ms`` <= 0.
    """
    _check_visit_frames(visit, lc)
    if not frame_duration_ms > 0:
        raise ValueError(f"frame_duration_ms must be positive, not {frame_duration_ms}")
    frames = gif_frame_indices(lc.n_frames, max_frames)
    if frames.size == 0:
        raise ValueError("the light curves have no frames")
    import imageio.v3 as iio

    renderer = _GifRenderer(visit, lc, int(frames[0]),
                            _mask_getter(apertures, lc, visit.image_shape))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with iio.imopen(tmp, "w", extension=".gif", plugin="pillow") as writer:
            for frame in frames:
                rgb = renderer.render(int(frame))
                writer.write(rgb, is_batch=False, duration=float(frame_duration_ms), loop=0)
    return path
