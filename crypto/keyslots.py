"""The keyslot area: the master key wrapped once per passphrase or key file, as in LUKS.

Layout, version 1 (little-endian; docs/FORMAT.md explains each field):

    area  = header (64 bytes) | 8 slots (504 bytes each)           = 4096 bytes
    header: magic 8 | version u16 | slot count u16 | slot size u16 |
            reserved u16 | master key verifier 32 | header checksum 16
    slot:   kind u8 | kdf u8 | scrypt log2 N u8 | reserved u8 | scrypt r u32 |
            scrypt p u32 | salt 32 | nonce 12 | wrapped master key 32 | tag 16 |
            reserved 368 | slot checksum 32

An empty slot is 504 zero bytes. Each slot has its own checksum, so a
corrupt slot is reported by number while the other slots still open.
"""

import hashlib
import hmac
import struct
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from Crypto.Cipher import AES

from crypto import hkdf
from crypto._types import BytesLike
from crypto.errors import (
    CorruptKeyslot,
    CorruptKeyslotArea,
    KeyslotAreaFull,
    KeyslotNotFound,
    LastKeyslot,
    MasterKeyMismatch,
    NoKeyslotOpens,
    UnsupportedVersion,
)
from crypto.keyfile import MIN_KEYFILE_SIZE
from crypto.keys import KEY_SIZE, MasterKey, fill_random

AREA_MAGIC = b"RAIDDKSA"
AREA_VERSION = 1
SLOT_COUNT = 8
SLOT_SIZE = 504
HEADER_SIZE = 64
KEYSLOT_AREA_SIZE = HEADER_SIZE + SLOT_COUNT * SLOT_SIZE

# Header: magic, version, slot count, slot size, reserved, verifier, checksum.
HEADER_FORMAT = struct.Struct("<8sHHHH32s16s")
HEADER_CHECKSUM_OFFSET = 48
# Slot fields before the reserved bytes: kind, kdf, log2 N, reserved,
# r, p, salt, nonce, wrapped key, tag.
SLOT_FIELDS = struct.Struct("<BBBBII32s12s32s16s")
SLOT_CHECKSUM_OFFSET = SLOT_SIZE - 32
SLOT_WRAP_AD_END = 56  # kind through nonce: what the wrapping tag binds

KIND_EMPTY, KIND_KEYFILE, KIND_PASSPHRASE = 0, 1, 2
KDF_HKDF_SHA256, KDF_SCRYPT = 1, 2
SALT_SIZE = 32
NONCE_SIZE = 12
TAG_SIZE = 16

VERIFIER_LABEL = b"raidd/v1/keyslot-verifier"
KEYFILE_KEK_LABEL = b"raidd/v1/keyslot-keyfile-kek"
WRAP_AD_PREFIX = b"raidd/v1/keyslot"

SlotKind = Literal["keyfile", "passphrase", "unknown", "corrupt"]
KIND_NAMES: dict[int, SlotKind] = {KIND_KEYFILE: "keyfile", KIND_PASSPHRASE: "passphrase"}


@dataclass(frozen=True)
class ScryptParams:
    """The cost of a passphrase keyslot's scrypt: N = 2^log_n, memory = 128 * r * N bytes.

    The default (N = 2^16, r = 8, p = 1) costs 64 MiB and about 0.3 s on
    one core. Lower costs exist for tests; arrays keep the default.
    """

    log_n: int = 16
    r: int = 8
    p: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.log_n <= 30:
            raise ValueError(f"scrypt log_n must be 1 to 30, got {self.log_n}")
        if not 1 <= self.r <= 64:
            raise ValueError(f"scrypt r must be 1 to 64, got {self.r}")
        if not 1 <= self.p <= 16:
            raise ValueError(f"scrypt p must be 1 to 16, got {self.p}")
        if self.memory_bytes > MAX_SCRYPT_MEMORY:
            raise ValueError(
                f"scrypt parameters need {self.memory_bytes} bytes of memory, "
                f"more than the {MAX_SCRYPT_MEMORY}-byte maximum"
            )

    @property
    def memory_bytes(self) -> int:
        """Memory scrypt needs for its table: 128 * r * N bytes."""
        return 128 * self.r * (1 << self.log_n)


MAX_SCRYPT_MEMORY = 4 * 1024**3
DEFAULT_SCRYPT = ScryptParams()


@dataclass(frozen=True)
class SlotInfo:
    """One non-empty keyslot as listed by KeyslotArea.slots().

    Attributes:
        number: slot number, 0 to 7.
        kind: "keyfile", "passphrase", "unknown" (written by a newer build),
            or "corrupt" (checksum or fields invalid).
        scrypt: the scrypt cost of a passphrase slot, else None.
        detail: why a corrupt slot is corrupt, else "".
    """

    number: int
    kind: SlotKind
    scrypt: ScryptParams | None = None
    detail: str = ""


def _verifier(master: MasterKey) -> bytes:
    return hmac.digest(master.view(), VERIFIER_LABEL, "sha256")


def _passphrase_bytes(passphrase: str) -> bytearray:
    """Encode a passphrase as UTF-8 after Unicode NFC normalization.

    NFC makes a passphrase typed on systems that compose accents differently
    give the same bytes.
    """
    if not isinstance(passphrase, str):
        raise TypeError(f"passphrase must be a str, got {type(passphrase).__name__}")
    if not passphrase:
        raise ValueError("passphrase must not be empty")
    return bytearray(unicodedata.normalize("NFC", passphrase), "utf-8")


def _keyfile_kek(secret: BytesLike, salt: bytes) -> bytes:
    if len(secret) < MIN_KEYFILE_SIZE:
        raise ValueError(f"key file secret must be at least {MIN_KEYFILE_SIZE} bytes")
    return hkdf.derive(secret, salt, KEYFILE_KEK_LABEL, KEY_SIZE)


def _passphrase_kek(passphrase: str, salt: bytes, params: ScryptParams) -> bytes:
    secret = _passphrase_bytes(passphrase)
    n = 1 << params.log_n
    try:
        return hashlib.scrypt(
            secret,
            salt=salt,
            n=n,
            r=params.r,
            p=params.p,
            # OpenSSL's check: 128 * r * (N + p + 2) bytes, plus slack.
            maxmem=128 * params.r * (n + params.p + 2) + 1024 * 1024,
            dklen=KEY_SIZE,
        )
    finally:
        secret[:] = bytes(len(secret))


@dataclass(frozen=True)
class _ParsedSlot:
    kind: int
    kdf: int
    scrypt: ScryptParams | None
    salt: bytes
    nonce: bytes
    wrapped: bytes
    tag: bytes


def _parse_slot(raw: bytes) -> _ParsedSlot:
    """Parse an intact, non-empty slot; raise ValueError with the reason if invalid."""
    if hashlib.sha256(raw[:SLOT_CHECKSUM_OFFSET]).digest() != raw[SLOT_CHECKSUM_OFFSET:]:
        raise ValueError("checksum mismatch")
    kind, kdf, log_n, reserved, r, p, salt, nonce, wrapped, tag = SLOT_FIELDS.unpack_from(raw)
    if reserved or any(raw[SLOT_FIELDS.size : SLOT_CHECKSUM_OFFSET]):
        raise ValueError("reserved bytes are not zero")
    scrypt: ScryptParams | None = None
    if kind == KIND_KEYFILE and kdf != KDF_HKDF_SHA256:
        raise ValueError(f"keyfile slot has KDF {kdf}, expected {KDF_HKDF_SHA256}")
    if kind == KIND_PASSPHRASE:
        if kdf != KDF_SCRYPT:
            raise ValueError(f"passphrase slot has KDF {kdf}, expected {KDF_SCRYPT}")
        scrypt = ScryptParams(log_n, r, p)  # raises ValueError when out of range
    return _ParsedSlot(kind, kdf, scrypt, salt, nonce, wrapped, tag)


def _build_slot(
    kind: int, scrypt: ScryptParams | None, salt: bytes, kek: bytes, master: MasterKey
) -> bytes:
    """Pack a slot that wraps ``master`` under ``kek`` with AES-256-GCM."""
    kdf = KDF_SCRYPT if scrypt else KDF_HKDF_SHA256
    log_n, r, p = (scrypt.log_n, scrypt.r, scrypt.p) if scrypt else (0, 0, 0)
    nonce = bytearray(NONCE_SIZE)
    fill_random(nonce)
    head = SLOT_FIELDS.pack(kind, kdf, log_n, 0, r, p, salt, bytes(nonce), bytes(32), bytes(16))
    cipher = AES.new(kek, AES.MODE_GCM, nonce=bytes(nonce), mac_len=TAG_SIZE)
    cipher.update(WRAP_AD_PREFIX + head[:SLOT_WRAP_AD_END])
    wrapped, tag = cipher.encrypt_and_digest(master.view())
    body = head[:SLOT_WRAP_AD_END] + wrapped + tag
    body += bytes(SLOT_CHECKSUM_OFFSET - len(body))
    return body + hashlib.sha256(body).digest()


def _unwrap(raw: bytes, parsed: _ParsedSlot, kek: bytes) -> bytearray | None:
    """Return the master key bytes of a slot if ``kek`` opens it, else None."""
    cipher = AES.new(kek, AES.MODE_GCM, nonce=parsed.nonce, mac_len=TAG_SIZE)
    cipher.update(WRAP_AD_PREFIX + raw[:SLOT_WRAP_AD_END])
    material = bytearray(KEY_SIZE)
    cipher.decrypt(parsed.wrapped, output=material)
    try:
        cipher.verify(parsed.tag)
    except ValueError:
        material[:] = bytes(KEY_SIZE)
        return None
    return material


class KeyslotArea:
    """The keyslots of one array: each wraps the same master key under another secret.

    A keyfile slot derives its key-encryption key (KEK) with
    HKDF-SHA256(IKM = file content, salt = slot salt); a passphrase slot with
    scrypt at the slot's stored cost. The KEK wraps the master key with
    AES-256-GCM, and the tag also binds the slot's kind, KDF parameters,
    salt and nonce. The header stores a verifier, HMAC-SHA256(master,
    VERIFIER_LABEL), so that adding a slot with the wrong master key raises
    instead of locking the data away.

    Changes happen in memory; the caller writes to_bytes() into every
    superblock copy. Removing a slot does not revoke a key that leaked: the
    master key stays the same, so anyone who kept it (or an old copy of the
    area) can still read the data. Revoking needs a new master key and a
    rewrite of the data.
    """

    def __init__(self, verifier: bytes, slots: list[bytes]) -> None:
        """Build an area from its parts; use create() or from_bytes() instead."""
        if len(verifier) != 32 or len(slots) != SLOT_COUNT:
            raise ValueError("a keyslot area needs a 32-byte verifier and 8 slots")
        if any(len(raw) != SLOT_SIZE for raw in slots):
            raise ValueError(f"every keyslot is {SLOT_SIZE} bytes")
        self._verifier = verifier
        self._slots = list(slots)

    @classmethod
    def create(
        cls,
        master: MasterKey,
        *,
        keyfile_secret: BytesLike | None = None,
        passphrase: str | None = None,
        scrypt: ScryptParams = DEFAULT_SCRYPT,
    ) -> "KeyslotArea":
        """Create an area wrapping ``master``, with a keyfile slot, a passphrase slot or both.

        Args:
            master: the array's master key.
            keyfile_secret: the content of a key file (at least 32 bytes); goes in slot 0.
            passphrase: a passphrase; goes in the next free slot.
            scrypt: the cost of the passphrase slot.

        Returns:
            The new area.

        Raises:
            ValueError: neither secret is given, or one is invalid.
        """
        if keyfile_secret is None and passphrase is None:
            raise ValueError("a keyslot area needs a key file secret, a passphrase or both")
        _check_master(master)
        area = cls(_verifier(master), [bytes(SLOT_SIZE)] * SLOT_COUNT)
        if keyfile_secret is not None:
            area.add_keyfile(master, keyfile_secret)
        if passphrase is not None:
            area.add_passphrase(master, passphrase, scrypt=scrypt)
        return area

    @classmethod
    def from_bytes(cls, data: BytesLike) -> "KeyslotArea":
        """Parse an area written by to_bytes().

        A corrupt slot does not fail the parse: slots() lists it as "corrupt"
        and the unlock methods skip it, so the other slots still open.

        Raises:
            CorruptKeyslotArea: wrong size, magic, geometry or header checksum.
            UnsupportedVersion: the area's version is not 1.
        """
        raw = bytes(data)
        if len(raw) != KEYSLOT_AREA_SIZE:
            raise CorruptKeyslotArea(
                f"keyslot area is {len(raw)} bytes, expected {KEYSLOT_AREA_SIZE}"
            )
        magic, version, count, size, reserved, verifier, checksum = HEADER_FORMAT.unpack_from(raw)
        if magic != AREA_MAGIC:
            raise CorruptKeyslotArea(
                f"keyslot area has magic {magic!r}, expected {AREA_MAGIC!r}: "
                "it is corrupt or not a keyslot area"
            )
        if version != AREA_VERSION:
            raise UnsupportedVersion("keyslot area", version, (AREA_VERSION,))
        expected = hashlib.sha256(raw[:HEADER_CHECKSUM_OFFSET]).digest()[:16]
        if checksum != expected:
            raise CorruptKeyslotArea(
                "keyslot area header fails its checksum: restore it from another superblock copy"
            )
        if (count, size, reserved) != (SLOT_COUNT, SLOT_SIZE, 0):
            raise CorruptKeyslotArea(
                f"keyslot area header lists {count} slots of {size} bytes (reserved {reserved}), "
                f"expected {SLOT_COUNT} of {SLOT_SIZE} (reserved 0)"
            )
        slots = [
            raw[HEADER_SIZE + number * SLOT_SIZE : HEADER_SIZE + (number + 1) * SLOT_SIZE]
            for number in range(SLOT_COUNT)
        ]
        return cls(verifier, slots)

    def to_bytes(self) -> bytes:
        """Serialize the area: exactly KEYSLOT_AREA_SIZE bytes."""
        head = HEADER_FORMAT.pack(
            AREA_MAGIC, AREA_VERSION, SLOT_COUNT, SLOT_SIZE, 0, self._verifier, bytes(16)
        )[:HEADER_CHECKSUM_OFFSET]
        header = head + hashlib.sha256(head).digest()[:16]
        return header + b"".join(self._slots)

    def add_keyfile(self, master: MasterKey, secret: BytesLike) -> int:
        """Add a slot that opens with the content of a key file.

        Args:
            master: the master key this area wraps.
            secret: the whole key file content, as read_keyfile() returns it.

        Returns:
            The new slot's number.

        Raises:
            MasterKeyMismatch: ``master`` is not this area's master key.
            KeyslotAreaFull: all 8 slots are in use.
            ValueError: ``secret`` is shorter than 32 bytes.
        """
        number = self._free_slot(master)
        self._slots[number] = self._keyfile_slot(master, secret)
        return number

    def add_passphrase(
        self, master: MasterKey, passphrase: str, *, scrypt: ScryptParams = DEFAULT_SCRYPT
    ) -> int:
        """Add a slot that opens with a passphrase (NFC-normalized, UTF-8).

        Args:
            master: the master key this area wraps.
            passphrase: a non-empty passphrase.
            scrypt: the slot's scrypt cost, stored in the slot.

        Returns:
            The new slot's number.

        Raises:
            MasterKeyMismatch: ``master`` is not this area's master key.
            KeyslotAreaFull: all 8 slots are in use.
            ValueError: ``passphrase`` is empty.
        """
        number = self._free_slot(master)
        self._slots[number] = self._passphrase_slot(master, passphrase, scrypt)
        return number

    def change(
        self,
        number: int,
        master: MasterKey,
        *,
        keyfile_secret: BytesLike | None = None,
        passphrase: str | None = None,
        scrypt: ScryptParams = DEFAULT_SCRYPT,
    ) -> None:
        """Replace the secret of slot ``number`` in place (a new salt, nonce and KEK).

        Exactly one of ``keyfile_secret`` and ``passphrase`` is given; the
        slot may change kind. The old secret no longer opens this slot.

        Raises:
            KeyslotNotFound: the slot is out of range or empty.
            MasterKeyMismatch: ``master`` is not this area's master key.
            ValueError: not exactly one secret is given, or it is invalid.
        """
        self._check_used(number)
        self._check_master_matches(master)
        if (keyfile_secret is None) == (passphrase is None):
            raise ValueError("change() needs exactly one of keyfile_secret and passphrase")
        if keyfile_secret is not None:
            self._slots[number] = self._keyfile_slot(master, keyfile_secret)
        else:
            assert passphrase is not None
            self._slots[number] = self._passphrase_slot(master, passphrase, scrypt)

    def remove(self, number: int) -> None:
        """Remove slot ``number``, overwriting all its bytes with zeros.

        This does not revoke a secret that leaked: see the class docstring.

        Raises:
            KeyslotNotFound: the slot is out of range or empty.
            LastKeyslot: no other intact keyfile or passphrase slot would remain.
        """
        self._check_used(number)
        others = [
            info.number
            for info in self.slots()
            if info.number != number and info.kind in ("keyfile", "passphrase")
        ]
        if not others:
            raise LastKeyslot(
                f"keyslot {number} is the last intact keyslot: add another key before "
                "removing it, or the array can no longer be unlocked"
            )
        self._slots[number] = bytes(SLOT_SIZE)

    def slots(self) -> list[SlotInfo]:
        """List the non-empty slots in slot order."""
        listed: list[SlotInfo] = []
        for number, raw in enumerate(self._slots):
            if not any(raw):
                continue
            try:
                parsed = _parse_slot(raw)
            except ValueError as error:
                listed.append(SlotInfo(number, "corrupt", detail=str(error)))
                continue
            kind = KIND_NAMES.get(parsed.kind, "unknown")
            listed.append(SlotInfo(number, kind, parsed.scrypt))
        return listed

    def unlock_keyfile(self, secret: BytesLike) -> MasterKey:
        """Unwrap the master key with the content of a key file.

        Raises:
            NoKeyslotOpens: no intact keyfile slot opens with ``secret``.
            CorruptKeyslot: no intact slot opens, and a slot is corrupt
                (it may be the one this key file belongs to).
        """
        if len(secret) < MIN_KEYFILE_SIZE:
            raise NoKeyslotOpens(
                f"no keyslot opens with this key file: it is {len(secret)} bytes, "
                f"and a key file has at least {MIN_KEYFILE_SIZE}"
            )
        return self._unlock(KIND_KEYFILE, "key file", lambda slot: _keyfile_kek(secret, slot.salt))

    def unlock_passphrase(self, passphrase: str) -> MasterKey:
        """Unwrap the master key with a passphrase, trying each passphrase slot.

        Each passphrase slot tried costs one scrypt run at that slot's cost.

        Raises:
            NoKeyslotOpens: no intact passphrase slot opens with ``passphrase``.
            CorruptKeyslot: no intact slot opens, and a slot is corrupt.
        """
        if not passphrase:
            raise NoKeyslotOpens("no keyslot opens with an empty passphrase")
        return self._unlock(
            KIND_PASSPHRASE,
            "passphrase",
            lambda slot: _passphrase_kek(passphrase, slot.salt, slot.scrypt or DEFAULT_SCRYPT),
        )

    def _unlock(self, kind: int, what: str, kek_for: "_KekFunction") -> MasterKey:
        corrupt: list[int] = []
        for number, raw in enumerate(self._slots):
            if not any(raw):
                continue
            try:
                parsed = _parse_slot(raw)
            except ValueError:
                corrupt.append(number)
                continue
            if parsed.kind != kind:
                continue
            material = _unwrap(raw, parsed, kek_for(parsed))
            if material is None:
                continue
            master = MasterKey(material)
            if not hmac.compare_digest(_verifier(master), self._verifier):
                master.wipe()
                raise CorruptKeyslot(
                    number,
                    f"keyslot {number} opens with this {what} but wraps a different master key "
                    "than the keyslot area's: remove the slot and add the key again",
                )
            return master
        if corrupt:
            listed = ", ".join(str(number) for number in corrupt)
            raise CorruptKeyslot(
                corrupt[0],
                f"no intact keyslot opens with this {what}, and keyslot {listed} is corrupt "
                "(it may be the one for this key): restore the superblock from another copy, "
                "or unlock with another key",
            )
        raise NoKeyslotOpens(f"no keyslot opens with this {what}")

    def _free_slot(self, master: MasterKey) -> int:
        self._check_master_matches(master)
        for number, raw in enumerate(self._slots):
            if not any(raw):
                return number
        raise KeyslotAreaFull(
            f"all {SLOT_COUNT} keyslots are in use: remove one before adding another"
        )

    def _check_used(self, number: int) -> None:
        if not isinstance(number, int) or not 0 <= number < SLOT_COUNT:
            raise KeyslotNotFound(
                f"keyslot {number} does not exist: slots are 0 to {SLOT_COUNT - 1}"
            )
        if not any(self._slots[number]):
            raise KeyslotNotFound(f"keyslot {number} is empty")

    def _check_master_matches(self, master: MasterKey) -> None:
        _check_master(master)
        if not hmac.compare_digest(_verifier(master), self._verifier):
            raise MasterKeyMismatch("this master key is not the one the keyslot area wraps")

    @staticmethod
    def _keyfile_slot(master: MasterKey, secret: BytesLike) -> bytes:
        salt = _random_bytes(SALT_SIZE)
        return _build_slot(KIND_KEYFILE, None, salt, _keyfile_kek(secret, salt), master)

    @staticmethod
    def _passphrase_slot(master: MasterKey, passphrase: str, scrypt: ScryptParams) -> bytes:
        salt = _random_bytes(SALT_SIZE)
        kek = _passphrase_kek(passphrase, salt, scrypt)
        return _build_slot(KIND_PASSPHRASE, scrypt, salt, kek, master)

    def __repr__(self) -> str:
        described = ", ".join(f"{info.number}:{info.kind}" for info in self.slots())
        return f"<KeyslotArea slots [{described}]>"


_KekFunction = Callable[[_ParsedSlot], bytes]


def _check_master(master: MasterKey) -> None:
    if not isinstance(master, MasterKey):
        raise TypeError(f"expected a MasterKey, got {type(master).__name__}")


def _random_bytes(size: int) -> bytes:
    buffer = bytearray(size)
    fill_random(buffer)
    return bytes(buffer)
