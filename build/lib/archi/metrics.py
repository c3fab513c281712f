"""Home of the noise metric a run is scored with: the ``CDPP_type`` option and its call.

The mask factor of every star is chosen by *minimising* a noise metric of its light curve
(archi spec section 7). The metric is named by the ``CDPP_type`` option:

* ``"K2"``: :func:`archi.noise.k2_cdpp`, archi's port of the K2/EVEREST scatter metric, in
  ppm;
* ``"package.module:function"``: a function imported from an importable module;
* ``"path/to/file.py:function"``: a function loaded from a Python file.

A user metric is called as ``f(flux, time) -> float`` with ``flux`` in electrons and
``time`` in days (MJD), both 1-D float arrays of the same length holding only finite
samples. Its scale is arbitrary: only the ordering of its values over the mask factors of
one star matters.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import numbers
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from archi.errors import ConfigError, one_line
from archi.noise import INVALID_CDPP, finite_sorted, k2_cdpp

__all__ = ["NoiseMetric", "load_metric", "score"]

NoiseMetric = Callable[[NDArray[np.float64], NDArray[np.float64]], float]
"""A noise metric ``f(flux [e-], time [d]) -> float``, minimised by the optimiser."""


def load_metric(spec: str, *, base_dir: str | Path | None = None) -> NoiseMetric:
    """The noise metric named by a ``CDPP_type`` option value.

    Parameters
    ----------
    spec : str
        ``"K2"`` (any case) for :func:`k2_cdpp`; ``"package.module:function"`` to import
        ``function`` from an importable module (normal ``sys.path`` lookup; ``sys.path`` is
        not changed); ``"path/to/file.py:function"`` to load it from a file. The part after
        the last colon may be a dotted attribute path (``module:Class.method``). The part
        before it is a file when it ends in ``.py`` or contains a path separator.
    base_dir : str or Path, optional
        Directory against which a relative file path is resolved (e.g. the folder of the
        YAML configuration); default the current directory.

    Returns
    -------
    callable
        ``f(flux [e-], time [d]) -> float``.

    Raises
    ------
    ConfigError
        One line naming ``spec`` and the problem: not a string, no colon, empty module or
        function, module not importable, file missing, error while loading the module,
        missing attribute, or attribute not callable.
    """
    if isinstance(spec, str) and spec.strip().upper() == "K2":
        return k2_cdpp
    source, attribute = _split_spec(spec)
    if source.endswith(".py") or "/" in source or "\\" in source:
        obj = _load_file(spec, source, base_dir)
    else:
        obj = _import_module(spec, source)
    return _metric_attribute(spec, obj, source, attribute)


def _split_spec(spec: object) -> tuple[str, str]:
    """The module or file part and the attribute part of a ``CDPP_type`` value other than K2."""
    if not isinstance(spec, str):
        raise ConfigError(f"CDPP_type {spec!r}: expected a string 'K2', 'module:function' "
                          f"or 'path/to/file.py:function'")
    source, colon, attribute = spec.strip().rpartition(":")
    if not colon:
        raise ConfigError(f"CDPP_type {spec!r}: expected 'K2', 'module:function' or "
                          f"'path/to/file.py:function' (no ':' found)")
    source, attribute = source.strip(), attribute.strip()
    if not source or not attribute:
        missing = "function" if source else "module or file"
        raise ConfigError(f"CDPP_type {spec!r}: empty {missing} name around ':'")
    return source, attribute


def _import_module(spec: str, source: str) -> object:
    """The importable module ``source`` (normal ``sys.path`` lookup)."""
    try:
        return importlib.import_module(source)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"CDPP_type {spec!r}: cannot import module {source!r} "
                          f"({one_line(exc)})") from exc
    except Exception as exc:  # any error raised by the module's own code
        raise ConfigError(f"CDPP_type {spec!r}: importing module {source!r} failed: "
                          f"{type(exc).__name__}: {one_line(exc)}") from exc


def _metric_attribute(spec: str, obj: object, source: str, attribute: str) -> NoiseMetric:
    """The callable at the dotted ``attribute`` path of the loaded module ``obj``."""
    for name in attribute.split("."):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise ConfigError(f"CDPP_type {spec!r}: {source!r} has no attribute "
                              f"{attribute!r}") from None
    if not callable(obj):
        raise ConfigError(f"CDPP_type {spec!r}: {attribute!r} is a {type(obj).__name__}, "
                          f"not a function")
    return obj


def _load_file(spec: str, source: str, base_dir: str | Path | None) -> object:
    """Execute the Python file ``source`` as a fresh module and return it."""
    path = Path(source).expanduser()
    if not path.is_absolute():
        path = Path(base_dir if base_dir is not None else Path.cwd()) / path
    path = path.resolve()
    if not path.is_file():
        raise ConfigError(f"CDPP_type {spec!r}: file {str(path)!r} does not exist")
    # A name unique per file, so that two files called metric.py do not replace each other.
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:12]
    name = f"archi_user_metric_{path.stem}_{digest}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ConfigError(f"CDPP_type {spec!r}: {str(path)!r} cannot be loaded as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise ConfigError(f"CDPP_type {spec!r}: loading {str(path)!r} failed: "
                          f"{type(exc).__name__}: {one_line(exc)}") from exc
    return module


def score(metric: NoiseMetric, flux: ArrayLike, time: ArrayLike, valid: bool) -> float:
    """Value of ``metric`` for one run (one star, one mask factor), to be minimised.

    Parameters
    ----------
    metric : callable
        ``f(flux [e-], time [d]) -> float``, e.g. from :func:`load_metric`.
    flux : array_like, shape (n,)
        Light curve [e-].
    time : array_like, shape (n,)
        Times [d].
    valid : bool
        False when the run is unusable (mask out of bounds): the metric is not called.

    Returns
    -------
    float
        The metric value; :data:`INVALID_CDPP` when ``valid`` is false, when no sample has a
        finite flux and time, or when the metric returns NaN or an infinity. (archi gave
        out-of-bounds runs NaN while its documentation promised 2e7, spec 7.4; we give 2e7.)
        The metric only sees the finite samples, in time order.

    Raises
    ------
    ConfigError
        The metric raised, or returned something that is not a single number. A broken user
        metric is a configuration problem, so it is reported, never hidden behind the
        penalty (which would silently leave the star with no usable factor).
    ValueError
        ``flux`` and ``time`` are not 1-D arrays of one length.
    """
    flux, time = finite_sorted(flux, time)
    if not valid or flux.size == 0:
        return INVALID_CDPP
    name = f"{getattr(metric, '__module__', '?')}:{getattr(metric, '__qualname__', metric)}"
    try:
        value = metric(flux, time)
    except Exception as exc:
        raise ConfigError(f"CDPP_type metric {name} raised {type(exc).__name__} on a light "
                          f"curve of {flux.size} samples: {one_line(exc)}") from exc
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if not isinstance(value, numbers.Real):
        raise ConfigError(f"CDPP_type metric {name} returned {one_line(repr(value))[:80]}, "
                          f"not a number")
    value = float(value)
    return value if np.isfinite(value) else INVALID_CDPP
