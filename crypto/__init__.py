"""crypto: AES-256-GCM block sealing, key derivation and keyslots.

Nouns:
    master key: the random 256-bit key of one array (MasterKey).
    subkey: a key for one purpose (chunk sealing, chunk ids, the chunker's
        seed, metadata, audit log), derived from the master key with HKDF.
    sealed block: the output of seal(): version, salt, ciphertext and tag.
    associated data: bytes the caller binds a sealed block to (raidd uses
        the array UUID and the object id); authenticated, not stored.
    keyslot: the master key wrapped under a key derived from one passphrase
        or key file; the keyslot area holds 8 of them, for the superblock.
    key file: a file whose whole raw content is a keyslot's secret.

The library depends on pycryptodome and the standard library only, and does
no I/O beyond reading and writing key files.

Typical use:

    write_new_keyfile(path)                       # raidd create --new-keyfile
    master = MasterKey.generate()
    area = KeyslotArea.create(master, keyfile_secret=read_keyfile(path))
    keyslot_bytes = area.to_bytes()               # KEYSLOT_AREA_SIZE bytes, into each superblock

    master = KeyslotArea.from_bytes(keyslot_bytes).unlock_keyfile(read_keyfile(path))
    keys = derive_subkeys(master)
    sealed = seal(keys.chunk, chunk, array_uuid + object_id)
    chunk = open(keys.chunk, sealed, array_uuid + object_id)
"""

from crypto.errors import (
    AuthenticationError,
    CorruptKeyslot,
    CorruptKeyslotArea,
    CryptoError,
    KeyFileError,
    KeyslotAreaFull,
    KeyslotNotFound,
    LastKeyslot,
    MasterKeyMismatch,
    NoKeyslotOpens,
    SelfTestFailed,
    UnsupportedSealedVersion,
    UnsupportedVersion,
)
from crypto.keyfile import MIN_KEYFILE_SIZE, read_keyfile, write_new_keyfile
from crypto.keys import KEY_SIZE, MasterKey, SecretKey, Subkeys, chunk_id, derive_subkeys
from crypto.keyslot_format import DEFAULT_SCRYPT, KEYSLOT_AREA_SIZE, ScryptParams, SlotInfo
from crypto.keyslots import KeyslotArea
from crypto.sealing import SEAL_OVERHEAD, open, seal
from crypto.selftest import self_test

__all__ = [
    "DEFAULT_SCRYPT",
    "KEYSLOT_AREA_SIZE",
    "KEY_SIZE",
    "MIN_KEYFILE_SIZE",
    "SEAL_OVERHEAD",
    "AuthenticationError",
    "CorruptKeyslot",
    "CorruptKeyslotArea",
    "CryptoError",
    "KeyFileError",
    "KeyslotArea",
    "KeyslotAreaFull",
    "KeyslotNotFound",
    "LastKeyslot",
    "MasterKey",
    "MasterKeyMismatch",
    "NoKeyslotOpens",
    "ScryptParams",
    "SecretKey",
    "SelfTestFailed",
    "SlotInfo",
    "Subkeys",
    "UnsupportedSealedVersion",
    "UnsupportedVersion",
    "chunk_id",
    "derive_subkeys",
    "open",
    "read_keyfile",
    "seal",
    "self_test",
    "write_new_keyfile",
]
