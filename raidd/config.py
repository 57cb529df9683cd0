"""Load and validate the TOML configuration file (default /etc/raidd/raidd.toml).

Every key is documented in docs/CONFIGURATION.md. Validation is strict: an
unknown key, a value of the wrong type or a value outside its rule raises
ConfigError naming the key (as `table.key`), the value and the rule. Sizes are
integers of bytes or strings such as `64KiB`; durations are seconds or strings
such as `30s` or `2h`; relative paths resolve against the file's directory.
"""

import grp
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from raidd.errors import ConfigError
from raidd.timespec import TimeSpecError, parse_duration

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ArrayConfig",
    "Config",
    "ControlConfig",
    "EventsConfig",
    "LimitsConfig",
    "RetentionPolicy",
    "ScheduleConfig",
    "SqliteConfig",
    "StateConfig",
    "WatchConfig",
    "WatcherConfig",
    "load_config",
    "parse_config",
    "parse_size",
    "prepare_state_directory",
]

DEFAULT_CONFIG_PATH = Path("/etc/raidd/raidd.toml")

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
_NO_STRINGS: tuple[str, ...] = ()
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([A-Za-z]*)")

Command = tuple[str, ...]
T = TypeVar("T")


@dataclass(frozen=True)
class RetentionPolicy:
    """Rules that choose which commits of one root to keep; with no rule set, all stay.

    Counts are numbers of commits (or of hours, days, ... that hold a commit);
    keep_within is in seconds.
    """

    keep_last: int | None = None
    keep_hourly: int | None = None
    keep_daily: int | None = None
    keep_weekly: int | None = None
    keep_monthly: int | None = None
    keep_yearly: int | None = None
    keep_within: float | None = None

    @property
    def keeps_everything(self) -> bool:
        """True when no rule is set, so that nothing is ever forgotten."""
        return all(getattr(self, name) is None for name in self.__dataclass_fields__)


@dataclass(frozen=True)
class ArrayConfig:
    """Member search paths, the expected identity and the key file of the array."""

    members: tuple[str, ...]
    uuid: UUID | None = None
    name: str | None = None
    spares: tuple[str, ...] = ()
    keyfile: Path | None = None


@dataclass(frozen=True)
class WatchConfig:
    """One watched root: its path, its identity in the catalog and its policies."""

    path: Path
    name: str
    exclude: tuple[str, ...] = ()
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    pre_backup: Command | None = None
    post_backup: Command | None = None
    command_timeout: float = 3600.0


@dataclass(frozen=True)
class StateConfig:
    """The host's state directory: a cache that can be deleted without losing data."""

    directory: Path = Path("/var/lib/raidd")


@dataclass(frozen=True)
class ControlConfig:
    """The control socket and the group whose members may use it."""

    socket: Path = Path("/run/raidd/control.sock")
    group: str = "raidd"
    group_explicit: bool = False


@dataclass(frozen=True)
class EventsConfig:
    """The program run for each event (member failed, rebuild finished, ...)."""

    program: Command | None = None
    timeout: float = 30.0


@dataclass(frozen=True)
class WatcherConfig:
    """Timing of the coalescing of file-change events into backups, in seconds."""

    quiet_period: float = 5.0
    max_delay: float = 300.0
    rescan_interval: float = 3600.0


@dataclass(frozen=True)
class ScheduleConfig:
    """Intervals, in seconds, at which the daemon applies retention and collects garbage."""

    retention_interval: float = 3600.0
    gc_interval: float = 86400.0


@dataclass(frozen=True)
class LimitsConfig:
    """Bandwidth bounds for rebuild and resync, in MiB/s."""

    rebuild_min_mib_s: int = 10
    rebuild_max_mib_s: int = 200


@dataclass(frozen=True)
class SqliteConfig:
    """Settings for copying SQLite databases: sizes in bytes, durations in seconds."""

    large_size: int = 256 << 20
    large_copy_interval: float = 3600.0
    busy_timeout: float = 10.0
    copy_timeout: float = 600.0


@dataclass(frozen=True)
class Config:
    """The parsed configuration file."""

    source: Path | None
    array: ArrayConfig
    watches: tuple[WatchConfig, ...] = ()
    state: StateConfig = field(default_factory=StateConfig)
    control: ControlConfig = field(default_factory=ControlConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    watcher: WatcherConfig = field(default_factory=WatcherConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    sqlite: SqliteConfig = field(default_factory=SqliteConfig)

    def watch_named(self, name: str) -> WatchConfig | None:
        """Return the watched root with this name, or None."""
        for watch in self.watches:
            if watch.name == name:
                return watch
        return None


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


class _Table:
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
        text = _string(value, key)
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


def _string(value: object, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key} = {value!r} is invalid: expected a string")
    return value


def _non_empty_string(value: object, key: str) -> str:
    text = _string(value, key)
    if not text.strip():
        raise ConfigError(f"{key} = {value!r} is invalid: expected a non-empty string")
    return text


def _string_list(value: object, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(f"{key} = {value!r} is invalid: expected a list of strings")
    return tuple(_non_empty_string(item, f"{key}[{index}]") for index, item in enumerate(value))


def _count(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigError(f"{key} = {value!r} is invalid: expected an integer, 0 or more")
    return value


def _positive_int(value: object, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"{key} = {value!r} is invalid: expected an integer greater than 0")
    return value


def _duration(value: object, key: str) -> float:
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


def _positive_duration(value: object, key: str) -> float:
    seconds = _duration(value, key)
    if seconds <= 0:
        raise ConfigError(f"{key} = {value!r} is invalid: the duration must be greater than 0")
    return seconds


def _command(value: object, key: str) -> Command:
    """Convert a command: a string runs under /bin/sh -c, a list is program and arguments."""
    if isinstance(value, str):
        if not value.strip():
            raise ConfigError(f"{key} = {value!r} is invalid: the command is empty")
        return ("/bin/sh", "-c", value)
    if isinstance(value, list) and value:
        return _string_list(value, key)
    raise ConfigError(
        f"{key} = {value!r} is invalid: expected a shell command string or a non-empty list "
        "of program and arguments"
    )


def _uuid(value: object, key: str) -> UUID:
    text = _string(value, key)
    try:
        return UUID(text)
    except ValueError:
        raise ConfigError(
            f"{key} = {text!r} is invalid: expected a UUID such as "
            "123e4567-e89b-12d3-a456-426614174000 (raidd examine shows it)"
        ) from None


def _root_name(value: object, key: str) -> str:
    text = _non_empty_string(value, key)
    if "/" in text or "\0" in text or text in (".", ".."):
        raise ConfigError(
            f"{key} = {text!r} is invalid: a root name is one path component "
            "(no '/', not '.' or '..')"
        )
    return text


def _exclude_pattern(value: object, key: str) -> str:
    text = _non_empty_string(value, key)
    if text.startswith("/"):
        raise ConfigError(
            f"{key} = {text!r} is invalid: exclude patterns are relative to the watched root"
        )
    if "\0" in text:
        raise ConfigError(f"{key} = {text!r} is invalid: a pattern cannot contain a NUL byte")
    return text


def _parse_array(table: _Table) -> ArrayConfig:
    members = table.require("members", _string_list)
    if not members:
        raise ConfigError(f"{table.key('members')} = [] is invalid: list at least one member path")
    config = ArrayConfig(
        members=tuple(table.pattern(item, table.key("members")) for item in members),
        uuid=table.get("uuid", _uuid, None),
        name=table.get("name", _non_empty_string, None),
        spares=tuple(
            table.pattern(item, table.key("spares"))
            for item in table.get("spares", _string_list, _NO_STRINGS)
        ),
        keyfile=table.get("keyfile", table.path, None),
    )
    table.finish()
    return config


def _parse_retention(table: _Table) -> RetentionPolicy:
    policy = RetentionPolicy(
        keep_last=table.get("keep_last", _count, None),
        keep_hourly=table.get("keep_hourly", _count, None),
        keep_daily=table.get("keep_daily", _count, None),
        keep_weekly=table.get("keep_weekly", _count, None),
        keep_monthly=table.get("keep_monthly", _count, None),
        keep_yearly=table.get("keep_yearly", _count, None),
        keep_within=table.get("keep_within", _duration, None),
    )
    table.finish()
    values = [getattr(policy, name) for name in RetentionPolicy.__dataclass_fields__]
    if not policy.keeps_everything and all(value in (None, 0) for value in values):
        raise ConfigError(
            f"[{table.name}] keeps no commit at all: set keep_last to 1 or more, "
            "or remove the retention table to keep every commit"
        )
    return policy


def _parse_watch(table: _Table) -> WatchConfig:
    path = table.require("path", table.path)
    default_name = path.name
    name = table.get("name", _root_name, default_name)
    if not name:
        raise ConfigError(
            f"{table.key('path')} = {str(path)!r} has no last component to name the root: "
            f"set {table.key('name')}"
        )
    retention_data = table.get("retention", lambda value, key: value, None)
    retention = (
        _parse_retention(_Table(retention_data, table.key("retention"), table.base))
        if retention_data is not None
        else RetentionPolicy()
    )
    config = WatchConfig(
        path=path,
        name=name,
        exclude=tuple(
            _exclude_pattern(item, f"{table.key('exclude')}[{index}]")
            for index, item in enumerate(table.get("exclude", _string_list, _NO_STRINGS))
        ),
        retention=retention,
        pre_backup=table.get("pre_backup", _command, None),
        post_backup=table.get("post_backup", _command, None),
        command_timeout=table.get("command_timeout", _positive_duration, 3600.0),
    )
    table.finish()
    return config


def _check_watches(watches: list[WatchConfig]) -> None:
    names: dict[str, WatchConfig] = {}
    for index, watch in enumerate(watches):
        other = names.get(watch.name)
        if other is not None:
            raise ConfigError(
                f"watch[{index}].name = {watch.name!r} is already the name of the root "
                f"{str(other.path)!r}: root names must be unique (set name in one of them)"
            )
        names[watch.name] = watch
    for index, watch in enumerate(watches):
        for other in watches[:index]:
            if watch.path == other.path or other.path in watch.path.parents:
                inner, outer = watch, other
            elif watch.path in other.path.parents:
                inner, outer = other, watch
            else:
                continue
            raise ConfigError(
                f"watch[{index}].path = {str(watch.path)!r} is invalid: the root "
                f"{str(inner.path)!r} lies inside the root {str(outer.path)!r}, and roots "
                "must not nest (use exclude in the outer root instead)"
            )


def _group(value: object, key: str) -> str:
    name = _non_empty_string(value, key)
    try:
        grp.getgrnam(name)
    except KeyError:
        raise ConfigError(
            f"{key} = {name!r} is invalid: no such group on this host "
            "(create it, for example with systemd-sysusers, or name an existing group)"
        ) from None
    return name


def _parse_control(table: _Table) -> ControlConfig:
    explicit = "group" in table.data
    config = ControlConfig(
        socket=table.get("socket", table.path, ControlConfig.socket),
        group=table.get("group", _group, ControlConfig.group),
        group_explicit=explicit,
    )
    table.finish()
    return config


def _parse_events(table: _Table) -> EventsConfig:
    config = EventsConfig(
        program=table.get("program", _command, None),
        timeout=table.get("timeout", _positive_duration, EventsConfig.timeout),
    )
    table.finish()
    return config


def _parse_watcher(table: _Table) -> WatcherConfig:
    config = WatcherConfig(
        quiet_period=table.get("quiet_period", _duration, WatcherConfig.quiet_period),
        max_delay=table.get("max_delay", _positive_duration, WatcherConfig.max_delay),
        rescan_interval=table.get(
            "rescan_interval", _positive_duration, WatcherConfig.rescan_interval
        ),
    )
    table.finish()
    if config.max_delay < config.quiet_period:
        raise ConfigError(
            f"{table.key('max_delay')} = {config.max_delay}s is invalid: it must be at least "
            f"{table.key('quiet_period')} ({config.quiet_period}s)"
        )
    return config


def _parse_schedule(table: _Table) -> ScheduleConfig:
    config = ScheduleConfig(
        retention_interval=table.get(
            "retention_interval", _positive_duration, ScheduleConfig.retention_interval
        ),
        gc_interval=table.get("gc_interval", _positive_duration, ScheduleConfig.gc_interval),
    )
    table.finish()
    return config


def _parse_limits(table: _Table) -> LimitsConfig:
    config = LimitsConfig(
        rebuild_min_mib_s=table.get(
            "rebuild_min_mib_s", _positive_int, LimitsConfig.rebuild_min_mib_s
        ),
        rebuild_max_mib_s=table.get(
            "rebuild_max_mib_s", _positive_int, LimitsConfig.rebuild_max_mib_s
        ),
    )
    table.finish()
    if config.rebuild_min_mib_s > config.rebuild_max_mib_s:
        raise ConfigError(
            f"{table.key('rebuild_min_mib_s')} = {config.rebuild_min_mib_s} is invalid: it must "
            f"not exceed {table.key('rebuild_max_mib_s')} = {config.rebuild_max_mib_s}"
        )
    return config


def _parse_sqlite(table: _Table) -> SqliteConfig:
    config = SqliteConfig(
        large_size=table.get("large_size", parse_size, SqliteConfig.large_size),
        large_copy_interval=table.get(
            "large_copy_interval", _duration, SqliteConfig.large_copy_interval
        ),
        busy_timeout=table.get("busy_timeout", _duration, SqliteConfig.busy_timeout),
        copy_timeout=table.get("copy_timeout", _positive_duration, SqliteConfig.copy_timeout),
    )
    table.finish()
    return config


def _parse_state(table: _Table) -> StateConfig:
    config = StateConfig(directory=table.get("directory", table.path, StateConfig.directory))
    table.finish()
    return config


def parse_config(data: Mapping[str, Any], base: Path, source: Path | None = None) -> Config:
    """Validate parsed TOML data; relative paths resolve against `base`.

    Raises:
        ConfigError: the first invalid key, naming it, its value and the rule.
    """
    read: set[str] = set()

    def table(name: str) -> _Table:
        read.add(name)
        return _Table(data.get(name, {}), name, base)

    sections: dict[str, Any] = {}
    if "array" not in data:
        raise ConfigError("[array] is missing: the configuration needs array.members at least")
    sections["array"] = _parse_array(table("array"))
    read.add("watch")
    raw_watches = data.get("watch", [])
    if not isinstance(raw_watches, list):
        raise ConfigError(
            f"watch = {raw_watches!r} is invalid: write each root as its own [[watch]] table"
        )
    watches = [
        _parse_watch(_Table(item, f"watch[{index}]", base))
        for index, item in enumerate(raw_watches)
    ]
    _check_watches(watches)
    sections["state"] = _parse_state(table("state"))
    sections["control"] = _parse_control(table("control"))
    sections["events"] = _parse_events(table("events"))
    sections["watcher"] = _parse_watcher(table("watcher"))
    sections["schedule"] = _parse_schedule(table("schedule"))
    sections["limits"] = _parse_limits(table("limits"))
    sections["sqlite"] = _parse_sqlite(table("sqlite"))
    unknown = sorted(set(data) - read)
    if unknown:
        raise ConfigError(
            f"{unknown[0]} is not a known table or key (known: {', '.join(sorted(read))})"
        )
    return Config(source=source, watches=tuple(watches), **sections)


def load_config(path: Path | str = DEFAULT_CONFIG_PATH) -> Config:
    """Read and validate a configuration file.

    Args:
        path: the TOML file; relative paths inside it resolve against its directory.

    Raises:
        ConfigError: the file cannot be read, is not TOML, or has an invalid key.
    """
    source = Path(path).absolute()
    try:
        raw = source.read_bytes()
    except OSError as error:
        raise ConfigError(
            f"cannot read the configuration file {str(source)!r}: {error.strerror} "
            "(pass another one with --config)"
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"the configuration file {str(source)!r} is not valid UTF-8: {error}"
        ) from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(
            f"the configuration file {str(source)!r} is not valid TOML: {error}"
        ) from None
    return parse_config(data, source.parent, source)


def prepare_state_directory(directory: Path) -> Path:
    """Create the state directory with mode 0700 when missing; check it when present.

    Parents that are missing are created with the default mode.

    Raises:
        ConfigError: the path exists but is not a directory, or cannot be created.
    """
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        directory.mkdir(mode=0o700)
    except FileExistsError:
        if not directory.is_dir():
            raise ConfigError(
                f"state.directory = {str(directory)!r} is invalid: it exists and is not a "
                "directory"
            ) from None
    except OSError as error:
        raise ConfigError(
            f"state.directory = {str(directory)!r} cannot be created: {error.strerror}"
        ) from None
    else:
        # mkdir's mode is filtered by the umask; set it exactly.
        os.chmod(directory, 0o700)
    return directory
