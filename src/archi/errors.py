"""Exceptions raised by the library. Every message is one line naming the file and the problem."""

from __future__ import annotations

from pathlib import Path


class ArchiError(Exception):
    """Base class of all errors the library raises on purpose."""


class ProductNotFoundError(ArchiError):
    """A required DRP product is missing from a visit folder, or several match ambiguously."""


class CorruptProductError(ArchiError):
    """A product exists but cannot be read or does not have the structure of the real product."""

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ConfigError(ArchiError):
    """An option has a value the library cannot use."""


class InputWarning(UserWarning):
    """A visit's products were read with a repair or a fallback (NaN roll angles estimated,
    another DRP light curve used, an empty star catalogue): said once per visit, by the job
    that reads the visit first, and recorded in its run_info."""


def reject_unknown_keys(values: dict, cls: type, where: str) -> None:
    """ConfigError naming every key of ``values`` that is not a field of dataclass ``cls``."""
    import dataclasses

    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ConfigError(f"{where} {', '.join(unknown)}")


def one_line(message: object) -> str:
    """``message`` (an exception or any object) as one line: whitespace runs collapsed; an
    exception with an empty message gives its type's name."""
    text = " ".join(str(message).split())
    if not text and isinstance(message, BaseException):
        return type(message).__name__
    return text
