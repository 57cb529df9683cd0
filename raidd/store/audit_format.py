"""Audit records, the audit object that carries them, the chain link and the path hash.

docs/FORMAT.md ("Audit log") gives the layouts. In short:

- A record is one JSON object in canonical form (sorted keys, no spaces,
  ASCII only): time, actor, action, parameters without secrets or paths,
  result, and the keyed hashes of the paths concerned.
- Records are numbered from 0 in the order they were made. Record n's link
  is HMAC-SHA256(audit-chain subkey, link(n-1) || u64 n || record bytes),
  with link(-1) = 32 zero bytes. The newest link is the chain head, which
  every commit's metadata root carries.
- An audit object's plaintext is a 56-byte header (first record number,
  record count, the link before its first record) and the records, each
  behind its u32 length. It is sealed under the audit subkey as object
  kind 5.
- A path is named by HMAC-SHA256(audit-path subkey, u16 length of the root
  name || root name || relative path), so the same path always gets the
  same hash and a hash reveals nothing without the key.
"""

from __future__ import annotations

import hmac
import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import crypto
from raidd.errors import IntegrityError

__all__ = [
    "AUDIT_HEADER",
    "AUDIT_MAGIC",
    "AUDIT_VERSION",
    "HASH_SIZE",
    "RECORD_LENGTH",
    "ZERO_LINK",
    "AuditObject",
    "AuditRecord",
    "chain_link",
    "decode_object",
    "decode_record",
    "encode_object",
    "encode_record",
    "path_hash",
    "path_hashes_above",
]

AUDIT_MAGIC = b"RDAL"
AUDIT_VERSION = 1
HASH_SIZE = 32
ZERO_LINK = bytes(HASH_SIZE)
# magic, version, flags, first record number, record count, reserved, link before the first
AUDIT_HEADER = struct.Struct(f"<4sHHQII{HASH_SIZE}s")
RECORD_LENGTH = struct.Struct("<I")
NUMBER = struct.Struct("<Q")
ROOT_LENGTH = struct.Struct("<H")

RECORD_KEYS = frozenset({"time_ns", "actor", "action", "params", "result", "paths"})
ACTOR_KINDS = ("client", "daemon")


@dataclass(frozen=True)
class AuditRecord:
    """One audited request or automatic action.

    `actor` is {"kind": "client" or "daemon", "uid", "gid", "pid"}: the
    caller's SO_PEERCRED credentials, or the daemon's own ids for what it
    did by itself. `result` is {"ok": true, ...summary} or {"ok": false,
    "code": JSON-RPC error code, "message": text}. `paths` are keyed path
    hashes (path_hash), never paths.
    """

    time_ns: int
    actor: dict[str, Any]
    action: str
    params: dict[str, Any] = field(default_factory=dict)
    result: dict[str, Any] = field(default_factory=lambda: {"ok": True})
    paths: tuple[bytes, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """Return the record as the JSON object it is stored as."""
        return {
            "time_ns": self.time_ns,
            "actor": self.actor,
            "action": self.action,
            "params": self.params,
            "result": self.result,
            "paths": [digest.hex() for digest in self.paths],
        }


def encode_record(record: AuditRecord) -> bytes:
    """Return the canonical JSON bytes of a record, the bytes the chain hashes.

    Raises:
        ValueError: a path hash is not 32 bytes, or a value is not JSON.
    """
    if any(len(digest) != HASH_SIZE for digest in record.paths):
        raise ValueError("an audit record's path hashes are 32 bytes each")
    return json.dumps(
        record.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=True
    ).encode("ascii")


def decode_record(data: bytes, where: str) -> AuditRecord:
    """Decode one record's JSON bytes.

    Raises:
        IntegrityError: not JSON, missing or unknown keys, or values of the wrong type.
    """
    try:
        value = json.loads(data)
    except (UnicodeDecodeError, ValueError) as error:
        raise IntegrityError(f"{where} is not valid JSON: {error}") from None
    if not isinstance(value, dict) or set(value) != RECORD_KEYS:
        raise IntegrityError(f"{where} does not have the keys {sorted(RECORD_KEYS)}")
    actor, paths = value["actor"], value["paths"]
    valid = (
        type(value["time_ns"]) is int
        and isinstance(actor, dict)
        and actor.get("kind") in ACTOR_KINDS
        and isinstance(value["action"], str)
        and isinstance(value["params"], dict)
        and isinstance(value["result"], dict)
        and isinstance(paths, list)
        and all(isinstance(item, str) and len(item) == 2 * HASH_SIZE for item in paths)
    )
    if not valid:
        raise IntegrityError(f"{where} has a field of the wrong type")
    try:
        hashes = tuple(bytes.fromhex(item) for item in paths)
    except ValueError:
        raise IntegrityError(f"{where} has a path hash that is not hexadecimal") from None
    return AuditRecord(
        value["time_ns"], actor, value["action"], value["params"], value["result"], hashes
    )


def chain_link(key: crypto.SecretKey, previous: bytes, number: int, record: bytes) -> bytes:
    """Return record `number`'s link: HMAC-SHA256(key, previous || u64 number || record)."""
    message = previous + NUMBER.pack(number) + record
    return hmac.digest(key.view(), message, "sha256")


def path_hash(key: crypto.SecretKey, root: str, relative: bytes) -> bytes:
    """Return the keyed hash that names `relative` (b"" for the root itself) under `root`.

    The relative path is normalized first (no leading, trailing or doubled
    slashes), so `a//b/` and `a/b` get the same hash.
    """
    name = root.encode("utf-8", "surrogateescape")
    parts = [part for part in relative.split(b"/") if part and part != b"."]
    message = ROOT_LENGTH.pack(len(name)) + name + b"/".join(parts)
    return hmac.digest(key.view(), message, "sha256")


def path_hashes_above(key: crypto.SecretKey, root: str, relative: bytes) -> list[bytes]:
    """Return the hashes of `relative` and of every directory above it, the root included."""
    parts = [part for part in relative.split(b"/") if part and part != b"."]
    return [path_hash(key, root, b"/".join(parts[:count])) for count in range(len(parts) + 1)]


@dataclass(frozen=True)
class AuditObject:
    """An audit object's plaintext: the first record's number, the link before it, the records."""

    first: int
    previous: bytes
    records: tuple[bytes, ...]


def encode_object(first: int, previous: bytes, records: Sequence[bytes]) -> bytes:
    """Return an audit object's plaintext: header, then each record behind its u32 length."""
    if len(previous) != HASH_SIZE:
        raise ValueError(f"a chain link is {HASH_SIZE} bytes, got {len(previous)}")
    out = [AUDIT_HEADER.pack(AUDIT_MAGIC, AUDIT_VERSION, 0, first, len(records), 0, previous)]
    for record in records:
        out.append(RECORD_LENGTH.pack(len(record)))
        out.append(record)
    return b"".join(out)


def decode_object(data: bytes, where: str) -> AuditObject:
    """Decode an audit object's plaintext.

    Raises:
        IntegrityError: wrong magic or version, unknown flags, truncated or padded.
    """
    if len(data) < AUDIT_HEADER.size:
        raise IntegrityError(f"{where} of {len(data)} bytes is shorter than its header")
    magic, version, flags, first, count, _reserved, previous = AUDIT_HEADER.unpack_from(data)
    if magic != AUDIT_MAGIC:
        raise IntegrityError(f"{where}: magic {magic!r}, expected {AUDIT_MAGIC!r}")
    if version != AUDIT_VERSION:
        raise IntegrityError(
            f"{where}: format version {version}; this raidd reads {AUDIT_VERSION}"
        )
    if flags:
        raise IntegrityError(f"{where} has unknown flags {flags:#x}")
    offset = AUDIT_HEADER.size
    records = []
    for _ in range(int(count)):
        if offset + RECORD_LENGTH.size > len(data):
            raise IntegrityError(f"{where} is truncated at offset {offset}")
        (length,) = RECORD_LENGTH.unpack_from(data, offset)
        offset += RECORD_LENGTH.size
        if offset + length > len(data):
            raise IntegrityError(f"{where} is truncated at offset {offset}")
        records.append(bytes(data[offset : offset + length]))
        offset += length
    if offset != len(data):
        raise IntegrityError(f"{where} has {len(data) - offset} trailing bytes at offset {offset}")
    return AuditObject(int(first), bytes(previous), tuple(records))
