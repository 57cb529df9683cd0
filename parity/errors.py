"""Exceptions raised by parity: a root class and one class per kind of misuse."""

from __future__ import annotations

from collections.abc import Iterable


class ParityError(Exception):
    """Root of the errors raised by the parity package."""


class GeometryError(ParityError, ValueError):
    """Invalid level, member count, strip size or stripe shape.

    The message states the rule that was broken and the value given.
    """


class TooManyErasures(ParityError):
    """More strips of a stripe are missing than the level can rebuild.

    Attributes:
        missing: logical indices of the missing strips, ascending.
        tolerance: how many missing strips the level rebuilds in the worst case.
    """

    def __init__(self, missing: Iterable[int], tolerance: int, detail: str = "") -> None:
        self.missing: tuple[int, ...] = tuple(sorted(missing))
        self.tolerance = tolerance
        names = ", ".join(str(index) for index in self.missing)
        if len(self.missing) == 1:
            lost = f"strip {names} is missing"
        else:
            lost = f"strips {names} are missing"
        message = f"cannot rebuild the stripe: {lost} and at most {tolerance} can be rebuilt"
        if detail:
            message = f"{message} ({detail})"
        super().__init__(message)
