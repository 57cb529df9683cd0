"""Value converters of the configuration file: sizes, durations, commands, names.

Each converter takes the raw TOML value and the key it came from
(`table.key`), and raises ConfigError naming the key, the value and the rule.
raidd.config builds the parsed configuration from them.
"""

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from raidd.errors import ConfigError
from raidd.timespec import TimeSpecError, parse_duration

__all__ = [
    "NO_STRINGS",
    "Command",
    "Table",
    "command",
    "count",
    "duration",
    "exclude_pattern",
    "non_empty_string",
    "parse_size",
    "positive_duration",
    "positive_int",
    "root_name",
    "string",
    "string_list",
    "uuid_value",
]

Command = tuple[str, ...]
T = TypeVar("T")
# The typed empty default for list-of-strings keys.
NO_STRINGS: tuple[str, ...] = ()

SIZE_UNITS = {
    "": 1,
    "B": 1,
    "KiB": 1 << 10,
    "MiB": 1 << 20,
    "GiB": 1 << 30,
    "TiB": 1 << 40,
    "kB": 10**3,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)")


def parse_size(value: object, key: str = "size") -> int:
    """Parse a size: an integer of bytes or a string such as `64KiB`, `1.5GiB`, `10MB`.

    Raises:
        ConfigError: naming the key, the value and the accepted forms.
    """
    rule = "expected bytes as an integer or a string such as 64KiB, 512MiB or 2GB"
    if isinstance(value, bool):
        raise ConfigError(f"{key} = {value!r} is invalid: {rule}")
    if isinstance(value, int):
        if value < 0:
            raise ConfigError(f"{key} = {value!r} is invalid: a size cannot be negative")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{key} = {value!r} is invalid: {rule}")
    match = _SIZE.fullmatch(value.strip())
    if match is None or match.group(2) not in SIZE_UNITS:
        raise ConfigError(
            f"{key} = {value!r} is invalid: {rule} (units B, KiB, MiB, GiB, TiB, kB, MB, GB, TB)"
        )
    number = float(match.group(1)) * SIZE_UNITS[match.group(2)]
    if number != int(number):
        raise ConfigError(f"{key} = {value!r} is invalid: the size is not a whole number of bytes")
    return int(number)


class Table:
    """One TOML table under validation; it tracks which keys were read."""

    def __init__(self, data: object, name: str, base: Path) -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{name} = {data!r} is invalid: expected a table")
        self.data: Mapping[str, Any] = data
        self.name = name
        self.base = base
        self.read: set[str] = set()

    def key(self, key: str) -> str:
        return f"{self.name}.{key}"

    def get(self, key: str, convert: Callable[[object, str], T], default: T) -> T:
        self.read.add(key)
        if key not in self.data:
            return default
        return convert(self.data[key], self.key(key))

    def require(self, key: str, convert: Callable[[object, str], T]) -> T:
        self.read.add(key)
        if key not in self.data:
            raise ConfigError(f"{self.key(key)} is missing: this key is required")
        return convert(self.data[key], self.key(key))

    def path(self, value: object, key: str) -> Path:
        text = string(value, key)
        if "\0" in text:
            raise ConfigError(f"{key} = {text!r} is invalid: a path cannot contain a NUL byte")
        return Path(os.path.normpath(self.base / Path(text).expanduser()))

    def pattern(self, value: object, key: str) -> str:
        return str(self.path(value, key))

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.read)
        if unknown:
            known = ", ".join(sorted(self.read))
            raise ConfigError(
                f"{self.key(unknown[0])} is not a known key (known keys in [{self.name}]: {known})"
            )


def string(value: object, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key} = {value!r} is invalid: expected a string")
    return value


def non_empty_string(value: object, key: str) -> str:
    text = string(value, key)
    if not text.strip():
        raise ConfigError(f"{key} = {value!r} is invalid: expected a non-empty string")
    return text


def string_list(value: object, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(f"{key} = {value!r} is invalid: expected a list of strings")
    return tuple(non_empty_string(item, f"{key}[{index}]") for index, item in enumerate(value))


def count(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{key} = {value!r} is invalid: expected an integer, 0 or more")
    return value


def positive_int(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key} = {value!r} is invalid: expected an integer greater than 0")
    return value


def duration(value: object, key: str) -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{key} = {value!r} is invalid: expected a duration such as 30s or 2h")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except TimeSpecError as error:
            raise ConfigError(f"{key} = {value!r} is invalid: {error}") from None
    else:
        raise ConfigError(f"{key} = {value!r} is invalid: expected a duration such as 30s or 2h")
    if seconds < 0:
        raise ConfigError(f"{key} = {value!r} is invalid: a duration cannot be negative")
    return seconds


def positive_duration(value: object, key: str) -> float:
    seconds = duration(value, key)
    if seconds <= 0:
        raise ConfigError(f"{key} = {value!r} is invalid: the duration must be greater than 0")
    return seconds


def command(value: object, key: str) -> Command:
    """Convert a command: a string runs under /bin/sh -c, a list is program and arguments."""
    if isinstance(value, str):
        if not value.strip():
            raise ConfigError(f"{key} = {value!r} is invalid: the command is empty")
        return ("/bin/sh", "-c", value)
    if isinstance(value, list) and value:
        return string_list(value, key)
    raise ConfigError(
        f"{key} = {value!r} is invalid: expected a shell command string or a non-empty list "
        "of program and arguments"
    )


def uuid_value(value: object, key: str) -> UUID:
    text = string(value, key)
    try:
        return UUID(text)
    except ValueError:
        raise ConfigError(
            f"{key} = {text!r} is invalid: expected a UUID such as "
            "123e4567-e89b-12d3-a456-426614174000 (raidd examine shows it)"
        ) from None


def root_name(value: object, key: str) -> str:
    text = non_empty_string(value, key)
    if "/" in text or "\0" in text or text in (".", ".."):
        raise ConfigError(
            f"{key} = {text!r} is invalid: a root name is one path component "
            "(no '/', not '.' or '..')"
        )
    return text


def exclude_pattern(value: object, key: str) -> str:
    text = non_empty_string(value, key)
    if text.startswith("/"):
        raise ConfigError(
            f"{key} = {text!r} is invalid: exclude patterns are relative to the watched root"
        )
    if "\0" in text:
        raise ConfigError(f"{key} = {text!r} is invalid: a pattern cannot contain a NUL byte")
    return text
