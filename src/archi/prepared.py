"""Home of :class:`Prepared`, the result of the prepare step: the stars of a visit, their
tracks and the field model, with the options used. Its file, ``prepared.fits``, is
:mod:`archi.io.prepared`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from archi.cosmics import CosmicHits
from archi.fieldimage import FieldModel
from archi.framequality import FrameQuality
from archi.options import Options
from archi.stars import StarList, Tracks

if TYPE_CHECKING:  # annotations only: the measuring floor sits above this one
    from archi.astrometry import AstrometryFit


@dataclass(frozen=True)
class Prepared:
    """Stars (0 = target) and their tracks in every frame, found with ``options``; the
    field model (None unless ``options.decontaminate``) gives the neighbours' light;
    ``astrometry``: the catalogue-to-pixel transform measured (None: not measured);
    ``frames``: the problems of every frame (:mod:`archi.framequality`; None: none
    assessed, every frame good)."""

    visit_folder: Path
    layout: str
    visit_key: str
    options: Options
    stars: StarList
    tracks: Tracks
    cosmics: CosmicHits = field(default_factory=CosmicHits.empty)
    model: FieldModel | None = None
    astrometry: AstrometryFit | None = None
    frames: FrameQuality | None = None
    # with a field model: per frame, the background level the DRP's subtraction left (the
    # median of data - model over usable pixels) [e per pixel], measured once here so that
    # each pass over the residual cube need not (None: measured as frames are read)
    residual_sky: NDArray[np.float64] | None = None

    def frame_quality(self) -> FrameQuality:
        """The frames' problems (every frame good when none were assessed)."""
        if self.frames is not None:
            return self.frames
        return FrameQuality.all_good(self.tracks.n_frames)
