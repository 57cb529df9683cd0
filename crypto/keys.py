"""Secret keys in wipeable memory, the subkeys of a master key, and chunk ids."""

import hmac
import os
from dataclasses import dataclass, fields
from typing import NoReturn

from crypto import hkdf
from crypto._types import BytesLike

KEY_SIZE = 32
CHUNK_ID_SIZE = 32

# HKDF-Expand labels, one per purpose, so that no two purposes share a key.
SUBKEY_LABELS = {
    "chunk": b"raidd/v1/subkey/chunk",
    "chunk_id": b"raidd/v1/subkey/chunk-id",
    "chunker_seed": b"raidd/v1/subkey/chunker-seed",
    "metadata": b"raidd/v1/subkey/metadata",
    "audit": b"raidd/v1/subkey/audit",
    "audit_path": b"raidd/v1/subkey/audit-path",
    "audit_chain": b"raidd/v1/subkey/audit-chain",
}


def fill_random(buffer: bytearray) -> None:
    """Fill ``buffer`` in place with bytes from the kernel's CSPRNG.

    The bytes go straight into the caller's bytearray, so no immutable copy
    of them is left behind. ``os.getrandom(1)`` first blocks until the
    kernel's pool is initialized, after which /dev/urandom equals
    getrandom(2). The kernel keeps the generator state, so a forked child
    never repeats its parent's output.

    Raises:
        OSError: /dev/urandom cannot be read.
    """
    os.getrandom(1)
    view = memoryview(buffer)
    filled = 0
    fd = os.open("/dev/urandom", os.O_RDONLY | os.O_CLOEXEC)
    try:
        while filled < len(buffer):
            count = os.readv(fd, [view[filled:]])
            if count <= 0:
                raise OSError(f"/dev/urandom returned {count} bytes")
            filled += count
    finally:
        os.close(fd)


class SecretKey:
    """A 32-byte symmetric key kept in a bytearray that is overwritten when dropped.

    The key takes ownership of the bytearray it is built from and zeroes it
    on ``wipe()`` and when the object is garbage collected. ``repr`` and
    ``str`` never show the bytes, and pickling raises TypeError, so a key
    cannot leak into a log line or a multiprocessing queue by accident.

    NOTE: libraries that take the key (hmac, pycryptodome) copy it into
    their own buffers, and derived keys pass through immutable ``bytes``
    objects; Python cannot wipe those, so the wiping covers the long-lived
    copy only.
    """

    __slots__ = ("_material", "_wiped")

    def __init__(self, material: bytearray) -> None:
        """Take ownership of ``material`` as the key.

        Args:
            material: exactly 32 bytes; the caller must not use it afterwards.

        Raises:
            TypeError: ``material`` is not a bytearray.
            ValueError: ``material`` is not 32 bytes long.
        """
        if not isinstance(material, bytearray):
            raise TypeError(f"key material must be a bytearray, got {type(material).__name__}")
        if len(material) != KEY_SIZE:
            raise ValueError(f"a key is {KEY_SIZE} bytes, got {len(material)}")
        self._material = material
        self._wiped = False

    @classmethod
    def generate(cls) -> "SecretKey":
        """Create a new random key from the kernel's CSPRNG."""
        material = bytearray(KEY_SIZE)
        fill_random(material)
        return cls(material)

    @classmethod
    def from_buffer(cls, data: BytesLike) -> "SecretKey":
        """Create a key from a copy of ``data`` (exactly 32 bytes).

        Raises:
            ValueError: ``data`` is not 32 bytes long.
        """
        return cls(bytearray(data))

    def view(self) -> memoryview:
        """Return a read-only view of the key bytes, for hmac and pycryptodome.

        The view does not keep the key alive: once the key is wiped or
        dropped, the view shows zeros. Keep a reference to the key while
        the view is in use.

        Raises:
            ValueError: the key was wiped.
        """
        if self._wiped:
            raise ValueError(f"this {type(self).__name__} was wiped and can no longer be used")
        return memoryview(self._material).toreadonly()

    def wipe(self) -> None:
        """Overwrite the key bytes with zeros; later use raises ValueError."""
        material = getattr(self, "_material", None)
        if material is not None:
            material[:] = bytes(len(material))
        self._wiped = True

    @property
    def wiped(self) -> bool:
        """Whether wipe() has run."""
        return self._wiped

    def __del__(self) -> None:
        self.wipe()

    def __repr__(self) -> str:
        state = "wiped" if getattr(self, "_wiped", True) else f"{KEY_SIZE} bytes, redacted"
        return f"<{type(self).__name__} {state}>"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SecretKey):
            return NotImplemented
        return hmac.compare_digest(self.view(), other.view())

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> NoReturn:
        raise TypeError(f"{type(self).__name__} cannot be pickled or copied")


class MasterKey(SecretKey):
    """The random 256-bit key of one array; every subkey derives from it."""


@dataclass(frozen=True, eq=False)
class Subkeys:
    """The purpose keys of one array, each derived from the master key with HKDF.

    Attributes:
        chunk: seals chunk content.
        chunk_id: keys the chunk id hash (dedup).
        chunker_seed: seeds content-defined chunking.
        metadata: seals the catalog and other metadata objects.
        audit: seals the audit log.
        audit_path: keys the hash that names a path in an audit record.
        audit_chain: keys the hash that links each audit record to the one before.
    """

    chunk: SecretKey
    chunk_id: SecretKey
    chunker_seed: SecretKey
    metadata: SecretKey
    audit: SecretKey
    audit_path: SecretKey
    audit_chain: SecretKey

    def wipe(self) -> None:
        """Wipe every subkey."""
        for field in fields(self):
            getattr(self, field.name).wipe()


def derive_subkeys(master: MasterKey) -> Subkeys:
    """Derive the purpose subkeys of ``master`` with HKDF-SHA256.

    PRK = HKDF-Extract(salt = empty, IKM = master); each subkey is
    HKDF-Expand(PRK, label, 32) with its own label from SUBKEY_LABELS. The
    master key is uniformly random, so no salt is needed (RFC 5869, 3.1).

    Args:
        master: the array's master key.

    Returns:
        Seven independent 32-byte keys; the same master always gives the same subkeys.

    Raises:
        TypeError: ``master`` is not a MasterKey.
    """
    if not isinstance(master, MasterKey):
        raise TypeError(f"derive_subkeys needs a MasterKey, got {type(master).__name__}")
    prk = hkdf.extract(b"", master.view())
    derived = {
        name: SecretKey(bytearray(hkdf.expand(prk, label, KEY_SIZE)))
        for name, label in SUBKEY_LABELS.items()
    }
    return Subkeys(**derived)


def chunk_id(id_key: SecretKey, data: BytesLike) -> bytes:
    """Compute the id of a chunk: HMAC-SHA256 keyed with the chunk-id subkey.

    Equal content gives equal ids under one array's key only, and an id
    reveals nothing about the content to anyone without the key.

    Args:
        id_key: the ``chunk_id`` subkey from derive_subkeys().
        data: the chunk's plaintext content.

    Returns:
        A 32-byte id.

    Raises:
        TypeError: ``id_key`` is not a SecretKey, or is the master key itself.
    """
    if not isinstance(id_key, SecretKey) or isinstance(id_key, MasterKey):
        raise TypeError("chunk_id needs the chunk_id subkey from derive_subkeys()")
    return hmac.digest(id_key.view(), data, hkdf.HASH_NAME)
