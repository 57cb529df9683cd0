"""The configuration file: defaults, every table, and errors that name key, value and rule."""

import grp
import os
import re
import stat
import textwrap
import uuid
from pathlib import Path

import pytest

from raidd.config import (
    Config,
    RetentionPolicy,
    load_config,
    parse_size,
    prepare_state_directory,
)
from raidd.errors import ConfigError

DOCS = Path(__file__).resolve().parent.parent / "docs" / "CONFIGURATION.md"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "raidd.toml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> Config:
    return load_config(write(tmp_path, text))


MINIMAL = """
[array]
members = ["/dev/disk/by-id/ata-*"]
"""


def test_minimal_file_gets_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL)
    assert config.array.members == ("/dev/disk/by-id/ata-*",)
    assert config.array.uuid is None
    assert config.watches == ()
    assert config.state.directory == Path("/var/lib/raidd")
    assert config.control.socket == Path("/run/raidd/control.sock")
    assert config.control.group is None
    assert config.watcher.quiet_period == 0.5
    assert config.watcher.max_delay == 30.0
    assert config.sqlite.large_size == 256 << 20
    assert config.limits.rebuild_min_mib_s == 10


def test_full_file(tmp_path: Path) -> None:
    group = grp.getgrgid(os.getgid()).gr_name
    config = load(
        tmp_path,
        f"""
        [array]
        members = ["images/*.img", "/dev/sdb"]
        uuid = "123e4567-e89b-12d3-a456-426614174000"
        name = "crm"
        spares = ["spare.img"]
        keyfile = "keys/array.key"

        [[watch]]
        path = "/srv/crm"
        exclude = ["*.tmp", "cache/**"]
        pre_backup = "pg_dump crm > /srv/crm/dump.sql"
        post_backup = ["/bin/rm", "-f", "/srv/crm/dump.sql"]
        command_timeout = "10m"
        [watch.retention]
        keep_last = 10
        keep_daily = 7
        keep_within = "2d"

        [[watch]]
        path = "/srv/exports"
        name = "exports-2026"

        [state]
        directory = "state"

        [control]
        socket = "/tmp/raidd.sock"
        group = "{group}"

        [events]
        program = ["/usr/local/bin/notify", "--raidd"]
        timeout = "1m"
        full_threshold = 0.75

        [watcher]
        quiet_period = "2s"
        max_delay = "1m"
        rescan_interval = "6h"

        [schedule]
        retention_interval = "30m"
        gc_interval = "1d"

        [limits]
        rebuild_min_mib_s = 5
        rebuild_max_mib_s = 500

        [sqlite]
        large_size = "1GiB"
        large_copy_interval = "4h"
        busy_timeout = "5s"
        copy_timeout = 120
        """,
    )
    assert config.array.members == (str(tmp_path / "images/*.img"), "/dev/sdb")
    assert config.array.uuid == uuid.UUID("123e4567-e89b-12d3-a456-426614174000")
    assert config.array.name == "crm"
    assert config.array.spares == (str(tmp_path / "spare.img"),)
    assert config.array.keyfile == tmp_path / "keys" / "array.key"
    crm, exports = config.watches
    assert crm.name == "crm"
    assert crm.path == Path("/srv/crm")
    assert crm.exclude == ("*.tmp", "cache/**")
    assert crm.pre_backup == ("/bin/sh", "-c", "pg_dump crm > /srv/crm/dump.sql")
    assert crm.post_backup == ("/bin/rm", "-f", "/srv/crm/dump.sql")
    assert crm.command_timeout == 600.0
    assert crm.retention == RetentionPolicy(keep_last=10, keep_daily=7, keep_within=172800.0)
    assert exports.name == "exports-2026"
    assert exports.retention.keeps_everything
    assert config.watch_named("exports-2026") is exports
    assert config.watch_named("missing") is None
    assert config.state.directory == tmp_path / "state"
    assert config.control.group == group
    assert config.events.program == ("/usr/local/bin/notify", "--raidd")
    assert config.events.timeout == 60.0
    assert config.events.full_threshold == 0.75
    assert config.watcher.max_delay == 60.0
    assert config.watcher.rescan_interval == 21600.0
    assert config.schedule.gc_interval == 86400.0
    assert config.limits.rebuild_max_mib_s == 500
    assert config.sqlite.large_size == 1 << 30
    assert config.sqlite.copy_timeout == 120.0


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL)
    with pytest.raises(AttributeError):
        config.array = config.array  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "[array]\nmembers = ['a']\ncolour = 'red'\n",
            r"array\.colour is not a known key",
        ),
        ("[array]\nmembers = ['a']\n[arrays]\n", r"arrays is not a known table"),
        (
            "[array]\nmembers = ['a']\n[[watch]]\npath = '/a'\nexcludes = []\n",
            r"watch\[0\]\.excludes is not a known key",
        ),
        (
            "[array]\nmembers = ['a']\n[[watch]]\npath = '/a'\n[watch.retention]\nkeep = 3\n",
            r"watch\[0\]\.retention\.keep is not a known key",
        ),
        ("[state]\ndirectory = '/x'\n", r"\[array\] is missing"),
        ("[array]\nuuid = '123e4567-e89b-12d3-a456-426614174000'\n", r"array\.members is missing"),
        ("[array]\nmembers = []\n", r"array\.members = \[\] is invalid"),
        ("[array]\nmembers = [3]\n", r"array\.members\[0\] = 3 is invalid: expected a"),
        (
            "[array]\nmembers = ['a']\nuuid = 'not-a-uuid'\n",
            r"array\.uuid = 'not-a-uuid' is invalid: expected a UUID",
        ),
        (
            "[array]\nmembers = ['a']\n[watcher]\nquiet_period = '5 minutes'\n",
            r"watcher\.quiet_period = '5 minutes' is invalid",
        ),
        (
            "[array]\nmembers = ['a']\n[watcher]\nquiet_period = '10m'\nmax_delay = '1m'\n",
            r"watcher\.max_delay = 60.0s is invalid: it must be at least",
        ),
        (
            "[array]\nmembers = ['a']\n[sqlite]\nlarge_size = '12 parsecs'\n",
            r"sqlite\.large_size = '12 parsecs' is invalid",
        ),
        (
            "[array]\nmembers = ['a']\n[sqlite]\nlarge_size = -1\n",
            r"sqlite\.large_size = -1 is invalid: a size cannot be negative",
        ),
        (
            "[array]\nmembers = ['a']\n[limits]\nrebuild_min_mib_s = 50\nrebuild_max_mib_s = 5\n",
            r"limits\.rebuild_min_mib_s = 50 is invalid: it must not exceed",
        ),
        (
            "[array]\nmembers = ['a']\n[limits]\nrebuild_max_mib_s = 0\n",
            r"limits\.rebuild_max_mib_s = 0 is invalid: expected an integer greater than 0",
        ),
        (
            "[array]\nmembers = ['a']\n[[watch]]\nname = 'x'\n",
            r"watch\[0\]\.path is missing",
        ),
        (
            "[array]\nmembers = ['a']\n[[watch]]\npath = '/a'\nname = 'a/b'\n",
            r"watch\[0\]\.name = 'a/b' is invalid: a root name is one path component",
        ),
        (
            "[array]\nmembers = ['a']\n[[watch]]\npath = '/a'\nname = '..'\n",
            r"watch\[0\]\.name = '\.\.' is invalid",
        ),
        (
            "[array]\nmembers = ['a']\n[[watch]]\npath = '/'\n",
            r"watch\[0\]\.path = '/' has no last component",
        ),
        (
            "[array]\nmembers = ['a']\n[[watch]]\npath = '/srv/a/crm'\n"
            "[[watch]]\npath = '/srv/b/crm'\n",
            r"watch\[1\]\.name = 'crm' is already the name of the root '/srv/a/crm'",
        ),
        (
            "[array]\nmembers = ['a']\n[[watch]]\npath = '/srv'\n[[watch]]\npath = '/srv/crm'\n",
            r"the root '/srv/crm' lies inside the root '/srv'",
        ),
        (
            "[array]\nmembers = ['a']\n[[watch]]\npath = '/a'\nexclude = ['/abs/*']\n",
            r"watch\[0\]\.exclude\[0\] = '/abs/\*' is invalid: exclude patterns are relative",
        ),
        (
            "[array]\nmembers = ['a']\n[[watch]]\npath = '/a'\npre_backup = ''\n",
            r"watch\[0\]\.pre_backup = '' is invalid: the command is empty",
        ),
        (
            "[array]\nmembers = ['a']\n[[watch]]\npath = '/a'\n"
            "[watch.retention]\nkeep_last = -1\n",
            r"watch\[0\]\.retention\.keep_last = -1 is invalid: expected an integer, 0 or more",
        ),
        (
            "[array]\nmembers = ['a']\n[[watch]]\npath = '/a'\n[watch.retention]\nkeep_last = 0\n",
            r"\[watch\[0\]\.retention\] keeps no commit at all",
        ),
        (
            "[array]\nmembers = ['a']\n[control]\ngroup = 'no-such-group-raidd-test'\n",
            r"control\.group = 'no-such-group-raidd-test' is invalid: no such group",
        ),
        (
            "watch = 'x'\n[array]\nmembers = ['a']\n",
            r"watch = 'x' is invalid: write each root as its own \[\[watch\]\] table",
        ),
        ("[array]\nmembers = ['a']\n[events]\nprogram = []\n", r"events\.program = \[\]"),
        (
            "[array]\nmembers = ['a']\n[events]\nfull_threshold = 1.5\n",
            r"events\.full_threshold = 1\.5 is invalid: expected a number greater than 0 and at",
        ),
        ("[array]\nmembers = ['a']\n[events]\nfull_threshold = 0\n", r"full_threshold = 0 is"),
        ("[array]\nmembers = ['a']\n[events]\nfull_threshold = '90%'\n", r"'90%' is invalid"),
        ("[array]\nmembers = ['a']\n[state]\ndirectory = 7\n", r"state\.directory = 7"),
    ],
)
def test_invalid_values(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load(tmp_path, text)


def test_invalid_toml_names_file(tmp_path: Path) -> None:
    path = write(tmp_path, "[array\nmembers = 1\n")
    with pytest.raises(ConfigError, match=re.escape(f"{str(path)!r} is not valid TOML")):
        load_config(path)


def test_missing_file_names_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError, match=r"cannot read the configuration file .*absent\.toml"):
        load_config(path)


def test_watch_name_defaults_to_last_component(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL + "[[watch]]\npath = 'data/crm/'\n")
    (watch,) = config.watches
    assert watch.name == "crm"
    assert watch.path == tmp_path / "data" / "crm"


def test_exclude_single_string(tmp_path: Path) -> None:
    config = load(tmp_path, MINIMAL + "[[watch]]\npath = '/a'\nexclude = '*.tmp'\n")
    assert config.watches[0].exclude == ("*.tmp",)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (0, 0),
        (4096, 4096),
        ("64KiB", 65536),
        ("1.5MiB", 1572864),
        ("2GiB", 2 << 30),
        ("10MB", 10_000_000),
        ("512", 512),
        ("512B", 512),
        ("1 TiB", 1 << 40),
    ],
)
def test_parse_size_values(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["64kib", "1.3B", "KiB", True, 1.5, "-4KiB"])
def test_parse_size_rejects(value: object) -> None:
    with pytest.raises(ConfigError, match="is invalid"):
        parse_size(value, "sqlite.large_size")


def test_state_directory_created_private(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        directory = prepare_state_directory(tmp_path / "var" / "raidd")
    finally:
        os.umask(old)
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert directory.is_dir()


def test_state_directory_existing_kept(tmp_path: Path) -> None:
    directory = tmp_path / "state"
    directory.mkdir(mode=0o750)
    (directory / "index.sqlite").write_bytes(b"x")
    prepare_state_directory(directory)
    assert (directory / "index.sqlite").read_bytes() == b"x"


def test_state_directory_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "state"
    path.write_bytes(b"")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        prepare_state_directory(path)


def test_documented_example_loads(tmp_path: Path) -> None:
    """The example file in docs/CONFIGURATION.md is valid."""
    text = DOCS.read_text(encoding="utf-8")
    match = re.search(r"## Example\n.*?```toml\n(.*?)```", text, re.S)
    assert match, "docs/CONFIGURATION.md has no ```toml example under ## Example"
    example = match.group(1).replace('group = "raidd"', "")
    config = load(tmp_path, example)
    assert config.watches


def test_every_key_documented() -> None:
    """Each dataclass field appears in docs/CONFIGURATION.md as `table.key`."""
    from dataclasses import fields

    from raidd import config as module

    text = DOCS.read_text(encoding="utf-8")
    tables = {
        "array": module.ArrayConfig,
        "watch": module.WatchConfig,
        "watch.retention": module.RetentionPolicy,
        "state": module.StateConfig,
        "control": module.ControlConfig,
        "events": module.EventsConfig,
        "watcher": module.WatcherConfig,
        "schedule": module.ScheduleConfig,
        "limits": module.LimitsConfig,
        "sqlite": module.SqliteConfig,
    }
    for table, cls in tables.items():
        for item in fields(cls):
            assert f"`{table}.{item.name}`" in text, f"{table}.{item.name} is not documented"
