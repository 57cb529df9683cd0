"""The exceptions crypto/ raises on purpose, rooted at CryptoError.

No message contains key material, a passphrase or key file content.
Programming errors (a key of the wrong type or length, a nonce of the wrong
length) raise TypeError or ValueError instead, at once.
"""


class CryptoError(Exception):
    """Root of every error crypto/ raises on purpose."""


class AuthenticationError(CryptoError):
    """A sealed block that fails authentication.

    The cause is one of: the wrong key, different associated data (the block
    was moved, swapped or replayed from another array), or corrupted bytes.
    AES-GCM cannot tell these apart.
    """


class UnsupportedVersion(CryptoError):
    """A structure whose version this build cannot read.

    Attributes:
        found: the version stored in the structure.
        supported: the versions this build reads.
    """

    def __init__(self, what: str, found: int, supported: tuple[int, ...]) -> None:
        self.what = what
        self.found = found
        self.supported = supported
        versions = ", ".join(str(version) for version in supported)
        super().__init__(
            f"{what} has version {found}, but this build reads version {versions} only: "
            "upgrade raidd, or restore the structure from an intact copy if it is corrupt"
        )


class UnsupportedSealedVersion(UnsupportedVersion, AuthenticationError):
    """A sealed block whose version byte is unknown.

    It is also an AuthenticationError because one corrupted byte looks the
    same as a block from a newer build, so a reader that repairs blocks that
    fail authentication repairs this one too.
    """


class NoKeyslotOpens(CryptoError):
    """No keyslot opens with the passphrase or key file given."""


class CorruptKeyslot(CryptoError):
    """A keyslot whose checksum or fields are invalid.

    Attributes:
        slot: the number of the corrupt keyslot.
    """

    def __init__(self, slot: int, detail: str) -> None:
        self.slot = slot
        super().__init__(detail)


class CorruptKeyslotArea(CryptoError):
    """A keyslot area whose magic, header fields or header checksum are invalid."""


class KeyslotNotFound(CryptoError):
    """A keyslot number that is out of range or names an empty slot."""


class LastKeyslot(CryptoError):
    """Removing a keyslot that is the last one that can open the array."""


class KeyslotAreaFull(CryptoError):
    """Adding a keyslot to an area whose slots are all in use."""


class MasterKeyMismatch(CryptoError):
    """A master key that is not the one the keyslot area wraps."""


class KeyFileError(CryptoError):
    """A key file that is missing, unreadable, too open, too short or too long.

    The message names the path and, for a permission problem, the mode.
    """


class SelfTestFailed(CryptoError):
    """A primitive that returned a wrong known answer in self_test()."""
