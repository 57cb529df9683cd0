"""The byte layout of the keyslot area and the key wrapping of one slot.

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
from dataclasses import dataclass
from typing import Literal

from Crypto.Cipher import AES

from crypto import hkdf
from crypto._types import BytesLike
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


MAX_SCRYPT_MEMORY = 4 * 1024**3


@dataclass(frozen=True)
class ScryptParams:
    """The cost of a passphrase keyslot's scrypt: N = 2^log_n, memory = 128 * r * N bytes.

    The default (N = 2^16, r = 8, p = 1) costs 64 MiB of memory and took
    0.27 s on one AMD EPYC core. Lower costs exist for tests, and arrays
    keep the default.
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


def verifier(master: MasterKey) -> bytes:
    """Compute the header's master key verifier, HMAC-SHA256(master, VERIFIER_LABEL)."""
    return hmac.digest(master.view(), VERIFIER_LABEL, "sha256")


def passphrase_bytes(passphrase: str) -> bytearray:
    """Encode a passphrase as UTF-8 after Unicode NFC normalization.

    NFC makes a passphrase typed on systems that compose accents differently
    give the same bytes.
    """
    if not isinstance(passphrase, str):
        raise TypeError(f"passphrase must be a str, got {type(passphrase).__name__}")
    if not passphrase:
        raise ValueError("passphrase must not be empty")
    return bytearray(unicodedata.normalize("NFC", passphrase), "utf-8")


def keyfile_kek(secret: BytesLike, salt: bytes) -> bytes:
    """Derive a keyfile slot's KEK: HKDF-SHA256(IKM = secret, salt, KEYFILE_KEK_LABEL)."""
    if len(secret) < MIN_KEYFILE_SIZE:
        raise ValueError(f"key file secret must be at least {MIN_KEYFILE_SIZE} bytes")
    return hkdf.derive(secret, salt, KEYFILE_KEK_LABEL, KEY_SIZE)


def passphrase_kek(passphrase: str, salt: bytes, params: ScryptParams) -> bytes:
    """Derive a passphrase slot's KEK with scrypt at the cost ``params``."""
    secret = passphrase_bytes(passphrase)
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
class ParsedSlot:
    """The fields of an intact, non-empty slot."""

    kind: int
    kdf: int
    scrypt: ScryptParams | None
    salt: bytes
    nonce: bytes
    wrapped: bytes
    tag: bytes


def parse_slot(raw: bytes) -> ParsedSlot:
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
    return ParsedSlot(kind, kdf, scrypt, salt, nonce, wrapped, tag)


def build_slot(
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


def unwrap_master(raw: bytes, parsed: ParsedSlot, kek: bytes) -> bytearray | None:
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


def check_master(master: MasterKey) -> None:
    """Raise TypeError unless ``master`` is a MasterKey."""
    if not isinstance(master, MasterKey):
        raise TypeError(f"expected a MasterKey, got {type(master).__name__}")


def random_bytes(size: int) -> bytes:
    """Return ``size`` bytes from the kernel's CSPRNG (for salts and nonces, not keys)."""
    buffer = bytearray(size)
    fill_random(buffer)
    return bytes(buffer)
