"""Durations and restore times: accepted forms, exact values and error text."""

from datetime import UTC, datetime, timedelta

import pytest

from raidd.timespec import TimeSpecError, format_duration, parse_duration, parse_time


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("2h", 7200.0),
        ("3d", 259200.0),
        ("1w", 604800.0),
        ("15m", 900.0),
        ("250ms", 0.25),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("0s", 0.0),
        (" 30s ", 30.0),
    ],
)
def test_parse_duration_values(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "30", "s", "2 h", "-5s", "3y", "1h 30m", "10sec", "h2"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(TimeSpecError, match="invalid duration"):
        parse_duration(text)


def test_duration_error_names_value() -> None:
    with pytest.raises(TimeSpecError, match=r"'3y'"):
        parse_duration("3y")


@pytest.mark.parametrize("seconds", [0.0, 0.25, 1.0, 59.0, 61.0, 3600.0, 5400.0, 90061.0, 1e6])
def test_format_duration_round_trips(seconds: float) -> None:
    assert parse_duration(format_duration(seconds)) == pytest.approx(seconds)


def test_format_duration_shortest() -> None:
    assert format_duration(5400) == "1h30m"
    assert format_duration(604800) == "1w"


def test_relative_time_subtracts_from_now() -> None:
    now = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
    assert parse_time("90s", now=now) == now - timedelta(seconds=90)
    assert parse_time("3d", now=now) == now - timedelta(days=3)


def test_relative_time_is_aware() -> None:
    assert parse_time("2h").tzinfo is not None


def test_iso_with_zone() -> None:
    parsed = parse_time("2026-12-04T09:30:00+01:00")
    assert parsed == datetime(2026, 12, 4, 8, 30, tzinfo=UTC)


def test_iso_with_z_suffix() -> None:
    assert parse_time("2026-12-04T09:30:00Z") == datetime(2026, 12, 4, 9, 30, tzinfo=UTC)


def test_iso_without_zone_is_local(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        parsed = parse_time("2026-12-04 09:30")
        assert parsed == datetime(2026, 12, 4, 0, 30, tzinfo=UTC)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


def test_iso_date_only_is_local_midnight() -> None:
    parsed = parse_time("2026-12-04")
    assert parsed.replace(tzinfo=None) == datetime(2026, 12, 4)
    assert parsed.tzinfo is not None


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "12:00 tomorrow", ""])
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(TimeSpecError, match="invalid time"):
        parse_time(text)
