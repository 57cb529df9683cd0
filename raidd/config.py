"""Load and validate the TOML configuration file (default /etc/raidd/raidd.toml).

Every key is documented in docs/CONFIGURATION.md. Validation is strict: an
unknown key, a value of the wrong type or a value outside its rule raises
ConfigError naming the key (as `table.key`), the value and the rule. Sizes are
integers of bytes or strings such as `64KiB`; durations are seconds or strings
such as `30s` or `2h`; relative paths resolve against the file's directory.
"""

import grp
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from raidd.config_values import (
    NO_STRINGS,
    Command,
    Table,
    command,
    count,
    duration,
    exclude_pattern,
    non_empty_string,
    parse_size,
    positive_duration,
    positive_int,
    root_name,
    string_list,
    uuid_value,
)
from raidd.errors import ConfigError

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
    # None: the socket is mode 0600 and serves root only.
    group: str | None = None


@dataclass(frozen=True)
class EventsConfig:
    """The program run for each event (member failed, rebuild finished, ...)."""

    program: Command | None = None
    timeout: float = 30.0
    # Allocated fraction of the array's stripes at which `array_nearly_full` is emitted.
    full_threshold: float = 0.9


@dataclass(frozen=True)
class WatcherConfig:
    """Timing of the coalescing of file-change events into backups, in seconds."""

    # docs/CONFIGURATION.md gives the reasons for these defaults.
    quiet_period: float = 0.5
    max_delay: float = 30.0
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


def _parse_array(table: Table) -> ArrayConfig:
    members = table.require("members", string_list)
    if not members:
        raise ConfigError(f"{table.key('members')} = [] is invalid: list at least one member path")
    config = ArrayConfig(
        members=tuple(table.pattern(item, table.key("members")) for item in members),
        uuid=table.get("uuid", uuid_value, None),
        name=table.get("name", non_empty_string, None),
        spares=tuple(
            table.pattern(item, table.key("spares"))
            for item in table.get("spares", string_list, NO_STRINGS)
        ),
        keyfile=table.get("keyfile", table.path, None),
    )
    table.finish()
    return config


def _parse_retention(table: Table) -> RetentionPolicy:
    policy = RetentionPolicy(
        keep_last=table.get("keep_last", count, None),
        keep_hourly=table.get("keep_hourly", count, None),
        keep_daily=table.get("keep_daily", count, None),
        keep_weekly=table.get("keep_weekly", count, None),
        keep_monthly=table.get("keep_monthly", count, None),
        keep_yearly=table.get("keep_yearly", count, None),
        keep_within=table.get("keep_within", duration, None),
    )
    table.finish()
    values = [getattr(policy, name) for name in RetentionPolicy.__dataclass_fields__]
    if not policy.keeps_everything and all(value in (None, 0) for value in values):
        raise ConfigError(
            f"[{table.name}] keeps no commit at all: set keep_last to 1 or more, "
            "or remove the retention table to keep every commit"
        )
    return policy


def _parse_watch(table: Table) -> WatchConfig:
    path = table.require("path", table.path)
    default_name = path.name
    name = table.get("name", root_name, default_name)
    if not name:
        raise ConfigError(
            f"{table.key('path')} = {str(path)!r} has no last component to name the root: "
            f"set {table.key('name')}"
        )
    retention_data = table.get("retention", lambda value, key: value, None)
    retention = (
        _parse_retention(Table(retention_data, table.key("retention"), table.base))
        if retention_data is not None
        else RetentionPolicy()
    )
    config = WatchConfig(
        path=path,
        name=name,
        exclude=tuple(
            exclude_pattern(item, f"{table.key('exclude')}[{index}]")
            for index, item in enumerate(table.get("exclude", string_list, NO_STRINGS))
        ),
        retention=retention,
        pre_backup=table.get("pre_backup", command, None),
        post_backup=table.get("post_backup", command, None),
        command_timeout=table.get("command_timeout", positive_duration, 3600.0),
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
    name = non_empty_string(value, key)
    try:
        grp.getgrnam(name)
    except KeyError:
        raise ConfigError(
            f"{key} = {name!r} is invalid: no such group on this host "
            "(create it, for example with systemd-sysusers, or name an existing group)"
        ) from None
    return name


def _parse_control(table: Table) -> ControlConfig:
    config = ControlConfig(
        socket=table.get("socket", table.path, ControlConfig.socket),
        group=table.get("group", _group, ControlConfig.group),
    )
    table.finish()
    return config


def _parse_events(table: Table) -> EventsConfig:
    config = EventsConfig(
        program=table.get("program", command, None),
        timeout=table.get("timeout", positive_duration, EventsConfig.timeout),
        full_threshold=table.get("full_threshold", _fraction, EventsConfig.full_threshold),
    )
    table.finish()
    return config


def _fraction(value: object, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise ConfigError(
            f"{key} = {value!r} is invalid: expected a number greater than 0 and at most 1 "
            "(0.9 is 90 %)"
        )
    return float(value)


def _parse_watcher(table: Table) -> WatcherConfig:
    config = WatcherConfig(
        quiet_period=table.get("quiet_period", duration, WatcherConfig.quiet_period),
        max_delay=table.get("max_delay", positive_duration, WatcherConfig.max_delay),
        rescan_interval=table.get(
            "rescan_interval", positive_duration, WatcherConfig.rescan_interval
        ),
    )
    table.finish()
    if config.max_delay < config.quiet_period:
        raise ConfigError(
            f"{table.key('max_delay')} = {config.max_delay}s is invalid: it must be at least "
            f"{table.key('quiet_period')} ({config.quiet_period}s)"
        )
    return config


def _parse_schedule(table: Table) -> ScheduleConfig:
    config = ScheduleConfig(
        retention_interval=table.get(
            "retention_interval", positive_duration, ScheduleConfig.retention_interval
        ),
        gc_interval=table.get("gc_interval", positive_duration, ScheduleConfig.gc_interval),
    )
    table.finish()
    return config


def _parse_limits(table: Table) -> LimitsConfig:
    config = LimitsConfig(
        rebuild_min_mib_s=table.get(
            "rebuild_min_mib_s", positive_int, LimitsConfig.rebuild_min_mib_s
        ),
        rebuild_max_mib_s=table.get(
            "rebuild_max_mib_s", positive_int, LimitsConfig.rebuild_max_mib_s
        ),
    )
    table.finish()
    if config.rebuild_min_mib_s > config.rebuild_max_mib_s:
        raise ConfigError(
            f"{table.key('rebuild_min_mib_s')} = {config.rebuild_min_mib_s} is invalid: it must "
            f"not exceed {table.key('rebuild_max_mib_s')} = {config.rebuild_max_mib_s}"
        )
    return config


def _parse_sqlite(table: Table) -> SqliteConfig:
    config = SqliteConfig(
        large_size=table.get("large_size", parse_size, SqliteConfig.large_size),
        large_copy_interval=table.get(
            "large_copy_interval", duration, SqliteConfig.large_copy_interval
        ),
        busy_timeout=table.get("busy_timeout", duration, SqliteConfig.busy_timeout),
        copy_timeout=table.get("copy_timeout", positive_duration, SqliteConfig.copy_timeout),
    )
    table.finish()
    return config


def _parse_state(table: Table) -> StateConfig:
    config = StateConfig(directory=table.get("directory", table.path, StateConfig.directory))
    table.finish()
    return config


def parse_config(data: Mapping[str, Any], base: Path, source: Path | None = None) -> Config:
    """Validate parsed TOML data; relative paths resolve against `base`.

    Raises:
        ConfigError: the first invalid key, naming it, its value and the rule.
    """
    read: set[str] = set()

    def table(name: str) -> Table:
        read.add(name)
        return Table(data.get(name, {}), name, base)

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
        _parse_watch(Table(item, f"watch[{index}]", base))
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
