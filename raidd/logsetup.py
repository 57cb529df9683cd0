"""structlog configuration for raidd: JSON lines for machines, console lines for people.

Logs go to stderr. The format is JSON, one object a line, when the process
runs under systemd (`$JOURNAL_STREAM` or `$INVOCATION_ID` set) or when stdout
or stderr is not a terminal. On a terminal it is structlog's console renderer.
Two processors guard every event before it is rendered:

- `redact_secrets` replaces values under secret-looking keys (`key`,
  `passphrase`, `secret`, `password`, `token` and names ending in `_key` and
  so on) and any raw bytes value, at any depth, so that no key, passphrase
  or file content reaches a log. Bytes under a path key (`path`,
  `directory`, `link_to`: file names, never content) are logged as text
  instead, with newlines, control characters and invalid UTF-8 escaped;
- `RepeatLimiter` lets one copy of an identical warning or error through per
  interval and reports how many repeats it dropped on the next copy.

The module is not named `logging` so that it never shadows the standard
library's module for code run from inside the package directory.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

SECRET_WORDS = frozenset({"key", "passphrase", "secret", "password", "passwd", "token"})
REDACTED = "[redacted]"
LIMITED_LEVELS = frozenset({"warning", "error", "critical", "exception"})
LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}
# Keys whose bytes values are file names, logged as escaped text.
PATH_KEYS = frozenset({"path", "directory", "link_to"})
# Keys that differ between otherwise identical events.
VOLATILE_KEYS = frozenset({"timestamp", "suppressed"})


def is_secret_key(name: str) -> bool:
    """Tell whether a log key names a secret.

    A key is secret when it is one of `SECRET_WORDS` or ends with one after
    `_` or `-` (`master_key`, `api-token`). Keys that only start with such a
    word name something else (`key_file` is a path, `keyslot` an index).
    """
    lowered = name.lower()
    if lowered in SECRET_WORDS:
        return True
    for separator in ("_", "-"):
        _, found, last = lowered.rpartition(separator)
        if found and last in SECRET_WORDS:
            return True
    return False


def redact_value(value: Any) -> Any:
    """Return a copy of a value with secrets and raw bytes replaced, at any depth."""
    if isinstance(value, bytes | bytearray | memoryview):
        return f"[{len(value)} bytes]"
    if isinstance(value, Mapping):
        return {
            key: REDACTED if isinstance(key, str) and is_secret_key(key) else redact_value(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(item) for item in value]
    return value


def printable_path(path: bytes) -> str:
    """Return a file name as text, newlines, control characters and invalid UTF-8 escaped."""
    return repr(os.fsdecode(path))[1:-1]


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Replace secret values and raw bytes in an event, nested values included."""
    for name in list(event_dict):
        if name == "event":
            continue
        if is_secret_key(name):
            event_dict[name] = REDACTED
        elif name in PATH_KEYS and isinstance(event_dict[name], bytes):
            event_dict[name] = printable_path(event_dict[name])
        else:
            event_dict[name] = redact_value(event_dict[name])
    return event_dict


class RepeatLimiter:
    """A processor that drops repeats of an identical warning or error.

    Two events are identical when level, logger and every key except the
    timestamp and the internal `_`-prefixed keys of `ProcessorFormatter` are
    equal. The first copy passes, later copies within
    `interval` seconds are dropped and counted, and the first copy after
    the interval passes with `suppressed=N`. `flush()` returns the counts
    of repeats that no later copy has reported yet.
    """

    def __init__(
        self,
        interval: float = 60.0,
        *,
        max_entries: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        # identity -> [time the last copy passed, repeats dropped since, event name]
        self._seen: OrderedDict[str, list[Any]] = OrderedDict()

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        level = str(event_dict.get("level", method)).lower()
        if level not in LIMITED_LEVELS:
            return event_dict
        identity = repr(
            sorted(
                (name, repr(value))
                for name, value in event_dict.items()
                if name not in VOLATILE_KEYS and not name.startswith("_")
            )
        )
        now = self._clock()
        with self._lock:
            entry = self._seen.get(identity)
            if entry is not None and now - entry[0] < self.interval:
                entry[1] += 1
                raise structlog.DropEvent
            if entry is not None and entry[1]:
                event_dict["suppressed"] = entry[1]
            self._seen[identity] = [now, 0, event_dict.get("event")]
            self._seen.move_to_end(identity)
            while len(self._seen) > self.max_entries:
                self._seen.popitem(last=False)
        return event_dict

    def flush(self) -> list[tuple[str, int]]:
        """Return (event name, repeats dropped) for every pending count and reset them."""
        pending = []
        with self._lock:
            for entry in self._seen.values():
                if entry[1]:
                    pending.append((str(entry[2]), entry[1]))
                    entry[1] = 0
        return pending


class _NamedWriteLogger(structlog.WriteLogger):
    """A WriteLogger that carries the name given to `get_logger()`."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


class _NamedWriteLoggerFactory:
    def __init__(self, file: TextIO) -> None:
        self._file = file

    def __call__(self, *args: Any) -> _NamedWriteLogger:
        name = str(args[0]) if args else "raidd"
        return _NamedWriteLogger(self._file, name)


def _add_logger_name(logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    name = getattr(logger, "name", None)
    if name is not None:
        event_dict.setdefault("logger", name)
    return event_dict


def want_json(environ: Mapping[str, str] | None = None, streams: tuple[TextIO, ...] = ()) -> bool:
    """Tell whether logs should be JSON lines rather than console lines.

    Args:
        environ: the environment; `os.environ` by default.
        streams: the streams to check for a terminal; stdout and stderr by
            default.
    """
    env = os.environ if environ is None else environ
    if env.get("JOURNAL_STREAM") or env.get("INVOCATION_ID"):
        return True
    for stream in streams or (sys.stdout, sys.stderr):
        try:
            if not stream.isatty():
                return True
        except ValueError:  # a closed stream is no terminal
            return True
    return False


_limiter: RepeatLimiter | None = None
_stdlib_handler: logging.Handler | None = None


def configure(
    *,
    level: str = "info",
    json: bool | None = None,
    stream: TextIO | None = None,
    repeat_interval: float = 60.0,
) -> RepeatLimiter:
    """Configure structlog, and the standard library's logging, for the whole process.

    Args:
        level: the lowest level logged: debug, info, warning, error or critical.
        json: force JSON (True) or console (False) output; by default chosen
            by `want_json()`.
        stream: where logs go; stderr by default.
        repeat_interval: seconds during which identical warnings and errors
            are logged once.

    Returns:
        The repeat limiter in use, whose `flush()` `report_suppressed()` calls.

    Raises:
        ValueError: `level` is not one of the five names.
    """
    global _limiter
    if level not in LEVELS:
        raise ValueError(f"invalid log level {level!r}; use one of {', '.join(LEVELS)}")
    output = sys.stderr if stream is None else stream
    as_json = want_json() if json is None else json
    limiter = RepeatLimiter(repeat_interval)
    _limiter = limiter
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        _add_logger_name,
        redact_secrets,
        limiter,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Processor
    if as_json:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer(sort_keys=False)
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=_NamedWriteLoggerFactory(output),
        cache_logger_on_first_use=False,
    )
    _configure_stdlib(output, LEVELS[level], shared, renderer)
    return limiter


def _configure_stdlib(
    output: TextIO, level: int, shared: list[Processor], renderer: Processor
) -> None:
    """Route records of libraries that use `logging` (pyudev, watchdog) through the same chain."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared[1:]],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
    )
    global _stdlib_handler
    handler = logging.StreamHandler(output)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    # Replace only the handler an earlier call added, so a test runner's stay.
    if _stdlib_handler is not None:
        root.removeHandler(_stdlib_handler)
    root.addHandler(handler)
    _stdlib_handler = handler
    # Libraries are noisy at debug level, so they start at warning at least.
    root.setLevel(max(level, logging.WARNING))


def report_suppressed(log: Any = None) -> int:
    """Log one `log_repeats_suppressed` event per pending count of dropped repeats.

    The daemon calls this periodically so that a count is reported even
    when no further copy of the event comes.

    Returns:
        The number of repeats reported.
    """
    if _limiter is None:
        return 0
    logger = log if log is not None else structlog.get_logger(__name__)
    total = 0
    for event, count in _limiter.flush():
        logger.info("log_repeats_suppressed", repeated_event=event, suppressed=count)
        total += count
    return total


def bind_context(**values: Any) -> None:
    """Bind key=value context (array, member, job) to every event of this thread."""
    structlog.contextvars.bind_contextvars(**values)
