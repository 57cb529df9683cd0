"""The keyslot area: the master key wrapped once per passphrase or key file, as in LUKS."""

import hashlib
import hmac
from collections.abc import Callable

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
from crypto.keys import MasterKey
from crypto.keyslot_format import (
    AREA_MAGIC,
    AREA_VERSION,
    DEFAULT_SCRYPT,
    HEADER_CHECKSUM_OFFSET,
    HEADER_FORMAT,
    HEADER_SIZE,
    KEYSLOT_AREA_SIZE,
    KIND_KEYFILE,
    KIND_NAMES,
    KIND_PASSPHRASE,
    SALT_SIZE,
    SLOT_COUNT,
    SLOT_SIZE,
    ParsedSlot,
    ScryptParams,
    SlotInfo,
    build_slot,
    check_master,
    keyfile_kek,
    parse_slot,
    passphrase_kek,
    random_bytes,
    unwrap_master,
    verifier,
)

KekFunction = Callable[[ParsedSlot], bytes]


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
        check_master(master)
        area = cls(verifier(master), [bytes(SLOT_SIZE)] * SLOT_COUNT)
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
        elif passphrase is not None:
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
                parsed = parse_slot(raw)
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
        return self._unlock(KIND_KEYFILE, "key file", lambda slot: keyfile_kek(secret, slot.salt))

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
            lambda slot: passphrase_kek(passphrase, slot.salt, slot.scrypt or DEFAULT_SCRYPT),
        )

    def _unlock(self, kind: int, what: str, kek_for: KekFunction) -> MasterKey:
        corrupt: list[int] = []
        for number, raw in enumerate(self._slots):
            if not any(raw):
                continue
            try:
                parsed = parse_slot(raw)
            except ValueError:
                corrupt.append(number)
                continue
            if parsed.kind != kind:
                continue
            material = unwrap_master(raw, parsed, kek_for(parsed))
            if material is None:
                continue
            master = MasterKey(material)
            if not hmac.compare_digest(verifier(master), self._verifier):
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
        check_master(master)
        if not hmac.compare_digest(verifier(master), self._verifier):
            raise MasterKeyMismatch("this master key is not the one the keyslot area wraps")

    @staticmethod
    def _keyfile_slot(master: MasterKey, secret: BytesLike) -> bytes:
        salt = random_bytes(SALT_SIZE)
        return build_slot(KIND_KEYFILE, None, salt, keyfile_kek(secret, salt), master)

    @staticmethod
    def _passphrase_slot(master: MasterKey, passphrase: str, scrypt: ScryptParams) -> bytes:
        salt = random_bytes(SALT_SIZE)
        kek = passphrase_kek(passphrase, salt, scrypt)
        return build_slot(KIND_PASSPHRASE, scrypt, salt, kek, master)

    def __repr__(self) -> str:
        described = ", ".join(f"{info.number}:{info.kind}" for info in self.slots())
        return f"<KeyslotArea slots [{described}]>"
