"""Parse durations (`30s`, `2h`, `1h30m`) and restore times (ISO 8601 or `3d` ago).

A duration is one or more `<number><unit>` terms with no spaces between them;
units are `ms`, `s`, `m` (minutes), `h`, `d` (24 hours) and `w` (7 days).
A restore time is either an ISO 8601 date or date and time, taken as local
time when it carries no zone, or a duration, meaning that long before now.
"""

import re
from datetime import UTC, datetime, timedelta

__all__ = [
    "TimeSpecError",
    "format_duration",
    "parse_duration",
    "parse_time",
]

UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
}

# `ms` is listed before `m` so that the alternation takes the longer unit.
_TERM = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


class TimeSpecError(ValueError):
    """A duration or time string that cannot be parsed; the message names the value."""


def parse_duration(text: str) -> float:
    """Parse a duration such as `90s`, `2h` or `1h30m` into seconds.

    Args:
        text: one or more `<number><unit>` terms, units ms, s, m, h, d, w.

    Returns:
        The duration in seconds, zero or more.

    Raises:
        TimeSpecError: the text is empty or contains anything but such terms.
    """
    stripped = text.strip()
    if not stripped:
        raise TimeSpecError("invalid duration '': expected a number and a unit, such as 30s or 2h")
    position = 0
    total = 0.0
    while position < len(stripped):
        match = _TERM.match(stripped, position)
        if match is None:
            raise TimeSpecError(
                f"invalid duration {text!r}: expected terms such as 30s, 15m, 2h, 3d or 1w "
                "(units ms, s, m, h, d, w)"
            )
        total += float(match.group(1)) * UNIT_SECONDS[match.group(2)]
        position = match.end()
    return total


def format_duration(seconds: float) -> str:
    """Format seconds as the shortest exact duration string that parse_duration reads back."""
    if seconds < 0:
        raise TimeSpecError(f"invalid duration {seconds!r}: a duration cannot be negative")
    if seconds == 0:
        return "0s"
    milliseconds = round(seconds * 1000)
    if milliseconds % 1000:
        return f"{milliseconds}ms"
    whole = milliseconds // 1000
    parts = []
    for unit in ("w", "d", "h", "m", "s"):
        size = int(UNIT_SECONDS[unit])
        if whole >= size:
            count, whole = divmod(whole, size)
            parts.append(f"{count}{unit}")
    return "".join(parts)


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """Parse a restore time into an aware datetime.

    Args:
        text: ISO 8601 (`2026-12-04`, `2026-12-04T09:30`, `2026-12-04 09:30:00+01:00`,
            `...Z`), taken as local time when no zone is given; or a duration such
            as `90s`, `2h` or `3d`, meaning that long before `now`.
        now: the reference for relative times; the current time when omitted.

    Returns:
        An aware datetime (local zone unless the text gave one).

    Raises:
        TimeSpecError: the text is neither form; the message names it and both forms.
    """
    stripped = text.strip()
    try:
        seconds = parse_duration(stripped)
    except TimeSpecError:
        seconds = None
    if seconds is not None:
        reference = now if now is not None else datetime.now(UTC)
        if reference.tzinfo is None:
            reference = reference.astimezone()
        return (reference - timedelta(seconds=seconds)).astimezone()
    iso = stripped[:-1] + "+00:00" if stripped.endswith(("Z", "z")) else stripped
    try:
        parsed = datetime.fromisoformat(iso)
    except ValueError:
        raise TimeSpecError(
            f"invalid time {text!r}: expected ISO 8601 such as 2026-12-04T09:30 "
            "(local time unless a zone is given) or a duration ago such as 90s, 2h or 3d"
        ) from None
    if parsed.tzinfo is None:
        # NOTE: astimezone() on a naive datetime takes it as local time, and for a
        # time that a daylight-saving change makes ambiguous it picks the first.
        parsed = parsed.astimezone()
    return parsed
