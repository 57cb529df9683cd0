"""Log format selection, secret redaction and repeat limiting."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator

import pytest
import structlog

from raidd import logsetup
from raidd.logsetup import RepeatLimiter, configure, is_secret_key, redact_secrets, want_json


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class Terminal:
    """A stream that claims to be a terminal, or not."""

    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_want_json_under_systemd() -> None:
    terminals = (Terminal(True), Terminal(True))
    assert want_json({"JOURNAL_STREAM": "8:1234"}, terminals)
    assert want_json({"INVOCATION_ID": "0f3c"}, terminals)
    assert not want_json({}, terminals)


def test_want_json_without_terminal() -> None:
    assert want_json({}, (Terminal(True), Terminal(False)))
    assert want_json({}, (Terminal(False), Terminal(True)))


def test_want_json_on_real_pty() -> None:
    main_fd, terminal_fd = os.openpty()
    with open(terminal_fd, "w") as terminal, open(os.devnull, "w") as devnull:
        assert not want_json({}, (terminal, terminal))
        assert want_json({}, (terminal, devnull))
    os.close(main_fd)


def test_json_lines_format() -> None:
    stream = io.StringIO()
    configure(json=True, stream=stream)
    structlog.get_logger("raidd.test").info("commit_done", files=3, bytes=4096)
    [record] = json_lines(stream)
    assert record["event"] == "commit_done"
    assert record["files"] == 3
    assert record["bytes"] == 4096
    assert record["level"] == "info"
    assert record["logger"] == "raidd.test"
    assert str(record["timestamp"]).endswith("Z")


def test_console_format_is_readable() -> None:
    stream = io.StringIO()
    configure(json=False, stream=stream)
    structlog.get_logger("raidd.test").warning("member_failed", member="/dev/loop3")
    output = stream.getvalue()
    assert "member_failed" in output
    assert "member=/dev/loop3" in output
    assert "warning" in output
    assert not output.lstrip().startswith("{")


def test_level_filter() -> None:
    stream = io.StringIO()
    configure(json=True, stream=stream, level="warning")
    log = structlog.get_logger("raidd.test")
    log.info("hidden")
    log.warning("shown")
    assert [record["event"] for record in json_lines(stream)] == ["shown"]


def test_invalid_level_rejected() -> None:
    with pytest.raises(ValueError, match="invalid log level 'loud'"):
        configure(level="loud")


def test_exception_traceback_in_json() -> None:
    stream = io.StringIO()
    configure(json=True, stream=stream)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        structlog.get_logger("raidd.test").exception("handler_failed")
    [record] = json_lines(stream)
    assert "RuntimeError: boom" in str(record["exception"])


def test_stdlib_records_become_json() -> None:
    stream = io.StringIO()
    configure(json=True, stream=stream)
    logging.getLogger("pyudev.test").warning("monitor %s gone", "udev")
    [record] = json_lines(stream)
    assert record["event"] == "monitor udev gone"
    assert record["logger"] == "pyudev.test"
    assert record["level"] == "warning"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("key", True),
        ("Key", True),
        ("passphrase", True),
        ("secret", True),
        ("password", True),
        ("master_key", True),
        ("api-token", True),
        ("new_passphrase", True),
        ("key_file", False),
        ("keyslot", False),
        ("key_name", False),
        ("monkey", False),
        ("path", False),
    ],
)
def test_secret_key_names(name: str, secret: bool) -> None:
    assert is_secret_key(name) is secret


def test_redaction_in_output() -> None:
    stream = io.StringIO()
    configure(json=True, stream=stream)
    structlog.get_logger("raidd.test").info(
        "key_added",
        keyslot=2,
        key_file="/etc/raidd/raidd.key",
        passphrase="hunter2",
        params={"passphrase": "hunter2", "nested": [{"secret": "s3"}], "path": "/srv"},
        content=b"plaintext chunk",
    )
    output = stream.getvalue()
    assert "hunter2" not in output
    assert "s3" not in output
    assert "plaintext chunk" not in output
    [record] = json_lines(stream)
    assert record["passphrase"] == "[redacted]"
    assert record["params"] == {
        "passphrase": "[redacted]",
        "nested": [{"secret": "[redacted]"}],
        "path": "/srv",
    }
    assert record["content"] == "[15 bytes]"
    assert record["keyslot"] == 2
    assert record["key_file"] == "/etc/raidd/raidd.key"


def test_bytes_path_logged_as_text() -> None:
    """A file name is no secret: it is logged escaped, while file content stays hidden."""
    stream = io.StringIO()
    configure(json=True, stream=stream)
    structlog.get_logger("raidd.test").warning(
        "backup_problem", path=b"exports/new\nline\xff.csv", data=b"customer row"
    )
    [record] = json_lines(stream)
    assert record["path"] == "exports/new\\nline\\udcff.csv"
    assert record["data"] == "[12 bytes]"


def test_redaction_of_bound_context() -> None:
    stream = io.StringIO()
    configure(json=True, stream=stream)
    structlog.get_logger("raidd.test").bind(password="pw1").error("unlock_failed")
    structlog.contextvars.bind_contextvars(token="tk1")
    structlog.get_logger("raidd.test").error("request_failed")
    assert "pw1" not in stream.getvalue()
    assert "tk1" not in stream.getvalue()
    assert len(json_lines(stream)) == 2


def test_redact_processor_keeps_event_name() -> None:
    event = redact_secrets(None, "info", {"event": "key", "key": "k"})
    assert event == {"event": "key", "key": "[redacted]"}


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def apply(limiter: RepeatLimiter, event: dict[str, object]) -> dict[str, object] | None:
    try:
        return limiter(None, str(event["level"]), dict(event))
    except structlog.DropEvent:
        return None


def test_limiter_drops_and_counts_repeats() -> None:
    clock = FakeClock()
    limiter = RepeatLimiter(60.0, clock=clock)
    error = {"event": "read_failed", "level": "error", "member": "/dev/loop1"}
    assert apply(limiter, error) == error
    for _ in range(5):
        clock.now += 1
        assert apply(limiter, {**error, "timestamp": str(clock.now)}) is None
    clock.now += 60
    passed = apply(limiter, error)
    assert passed is not None
    assert passed["suppressed"] == 5


def test_limiter_keeps_distinct_errors() -> None:
    limiter = RepeatLimiter(60.0, clock=FakeClock())
    first = {"event": "read_failed", "level": "error", "member": "/dev/loop1"}
    second = {"event": "read_failed", "level": "error", "member": "/dev/loop2"}
    assert apply(limiter, first) is not None
    assert apply(limiter, second) is not None


def test_limiter_ignores_info() -> None:
    limiter = RepeatLimiter(60.0, clock=FakeClock())
    info = {"event": "commit_done", "level": "info"}
    assert apply(limiter, info) is not None
    assert apply(limiter, info) is not None


def test_limiter_flush_reports_pending() -> None:
    limiter = RepeatLimiter(60.0, clock=FakeClock())
    error = {"event": "scrub_error", "level": "warning"}
    apply(limiter, error)
    apply(limiter, error)
    apply(limiter, error)
    assert limiter.flush() == [("scrub_error", 2)]
    assert limiter.flush() == []


def test_limiter_bounded_table() -> None:
    limiter = RepeatLimiter(60.0, max_entries=4, clock=FakeClock())
    for index in range(10):
        apply(limiter, {"event": "e", "level": "error", "n": index})
    assert apply(limiter, {"event": "e", "level": "error", "n": 0}) is not None
    assert apply(limiter, {"event": "e", "level": "error", "n": 9}) is None


def test_repeats_limited_in_output() -> None:
    stream = io.StringIO()
    configure(json=True, stream=stream, repeat_interval=3600)
    log = structlog.get_logger("raidd.test")
    for _ in range(100):
        log.error("write_failed", member="/dev/loop4", error="EIO")
    records = json_lines(stream)
    assert len(records) == 1
    assert logsetup.report_suppressed() == 99
    records = json_lines(stream)
    assert records[-1]["event"] == "log_repeats_suppressed"
    assert records[-1]["repeated_event"] == "write_failed"
    assert records[-1]["suppressed"] == 99
