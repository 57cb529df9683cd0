"""Start-up steps of `raidd serve`: find the members, unlock a keyslot, assemble the array."""

from __future__ import annotations

import glob
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import structlog

import crypto
from raidd.array import Array, assemble, probe
from raidd.array.superblock import Superblock
from raidd.config import Config
from raidd.credentials import key_file_path
from raidd.errors import ArrayError, ConfigError, KeyUnlockError

log = structlog.get_logger(__name__)


def expand_member_paths(patterns: Iterable[str]) -> list[str]:
    """Expand the `[array] members` glob patterns, keeping plain paths as given.

    A plain path that does not exist is kept, so that assembly reports it
    as missing with its path; a pattern that matches nothing adds nothing.
    """
    paths: list[str] = []
    for pattern in patterns:
        if glob.has_magic(pattern):
            paths.extend(sorted(glob.glob(pattern)))
        else:
            paths.append(pattern)
    unique = list(dict.fromkeys(paths))
    return unique


@dataclass
class Unlocked:
    """The master key and its subkeys, unlocked from a keyslot."""

    master: crypto.MasterKey
    keys: crypto.Subkeys
    key_file: str
    # The keyslots the key file opens, so that removing the last of them can be refused.
    keyslots: frozenset[int] = field(default_factory=frozenset)

    def wipe(self) -> None:
        self.master.wipe()


def newest_superblock(paths: Iterable[str], config: Config) -> Superblock:
    """Read every candidate's superblocks and return the newest of the configured array.

    Raises:
        ArrayError: no candidate carries a superblock of the array (or of
            the configured UUID).
    """
    newest: Superblock | None = None
    for path in paths:
        candidate = probe(path)
        sb = candidate.sb
        if sb is None:
            log.info("member_candidate_unusable", path=path, reason=candidate.error)
            continue
        if config.array.uuid is not None and sb.array_uuid != config.array.uuid:
            log.info("member_candidate_foreign", path=path, array=str(sb.array_uuid))
            continue
        if newest is None or sb.event_counter > newest.event_counter:
            newest = sb
    if newest is None:
        wanted = f" of array {config.array.uuid}" if config.array.uuid else ""
        raise ArrayError(
            f"no member{wanted} found among [array] members {list(config.array.members)}; "
            "check the paths, or create the array with raidd create"
        )
    return newest


def unlock(keyslot_area: bytes, config: Config, environ: Mapping[str, str]) -> Unlocked:
    """Open a keyslot with the credential raidd.key or the configured key file.

    Raises:
        ConfigError: no key file is configured or found.
        KeyUnlockError: no keyslot opens with the key file.
    """
    path = key_file_path(config.array.keyfile, environ, setting="array.keyfile")
    try:
        secret = crypto.read_keyfile(path)
    except crypto.KeyFileError as error:
        raise ConfigError(str(error)) from error
    try:
        area = crypto.KeyslotArea.from_bytes(keyslot_area)
        master = area.unlock_keyfile(secret)
        opened = slots_opened_by(keyslot_area, secret)
    except crypto.CryptoError as error:
        detail = str(error).removeprefix("no keyslot opens with this key file").lstrip(": ")
        raise KeyUnlockError(
            f"no keyslot opens with the key file {path}{': ' + detail if detail else ''}; "
            "check array.keyfile or the LoadCredential= of the unit"
        ) from error
    finally:
        secret[:] = bytes(len(secret))
    log.info("array_unlocked", key_file=str(path), keyslots=sorted(opened))
    return Unlocked(master, crypto.derive_subkeys(master), str(path), opened)


def slots_opened_by(keyslot_area: bytes, secret: bytearray | bytes) -> frozenset[int]:
    """Return the numbers of the keyfile slots that open with `secret`.

    Each slot is tried alone, in a copy of the area with the other slots
    removed, so that the first slot that opens does not hide the others.
    """
    listed = crypto.KeyslotArea.from_bytes(keyslot_area).slots()
    keyfile_slots = [info.number for info in listed if info.kind == "keyfile"]
    opened = set()
    for number in keyfile_slots:
        alone = crypto.KeyslotArea.from_bytes(keyslot_area)
        try:
            for info in listed:
                if info.number != number:
                    alone.remove(info.number)
            alone.unlock_keyfile(secret).wipe()
        except crypto.CryptoError:
            continue
        opened.add(number)
    return frozenset(opened)


def assemble_array(paths: list[str], config: Config, newest: Superblock) -> Array:
    """Assemble the array, degraded when it must be; beyond its tolerance it is refused.

    Raises:
        ArrayError: more members missing than the level tolerates, split
            brain, or the configured name differs from the array's.
        ArrayBusyError: another process holds the array.
    """
    array = assemble(paths, array_uuid=newest.array_uuid)
    if config.array.name is not None and array.name != config.array.name:
        name = array.name
        array.close()
        raise ArrayError(
            f"array {newest.array_uuid} is named {name!r}, not {config.array.name!r} as "
            "array.name says; correct the configuration"
        )
    for slot in array.slots:
        log.info(
            "member_assembled",
            array=str(array.uuid),
            role=slot.role,
            member=str(slot.member_uuid),
            path=slot.path,
            state=slot.state.name.lower(),
        )
    return array
