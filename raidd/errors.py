"""The error hierarchy of raidd, each class with the exit code the CLI uses.

Exit codes (also listed in the README):
    0 done, 1 done with warnings, 2 usage or configuration error,
    3 integrity error (data lost beyond the fault tolerance),
    4 array busy, 5 no keyslot opens with the key given,
    130 interrupted (Ctrl-C), as shells report a SIGINT.
"""

EXIT_OK = 0
EXIT_WARNINGS = 1
EXIT_USAGE = 2
EXIT_INTEGRITY = 3
EXIT_BUSY = 4
EXIT_KEY = 5
EXIT_INTERRUPTED = 130


class RaiddError(Exception):
    """Root of every error raidd raises on purpose."""

    exit_code = EXIT_USAGE


class UsageError(RaiddError):
    """A command line that cannot be carried out as given."""

    exit_code = EXIT_USAGE


class ConfigError(RaiddError):
    """An invalid configuration file: names the key, the value and the rule."""

    exit_code = EXIT_USAGE


class MemberError(RaiddError):
    """A member that cannot be opened, claimed, read or written."""

    exit_code = EXIT_USAGE


class ArrayError(RaiddError):
    """An array that cannot be assembled or changed as requested."""

    exit_code = EXIT_USAGE


class ArrayBusyError(ArrayError):
    """Another process has claimed the array; the message names its pid."""

    exit_code = EXIT_BUSY


class ArrayFullError(ArrayError):
    """No free stripe is left outside the reserve kept for garbage collection."""

    exit_code = EXIT_USAGE


class BackupError(RaiddError):
    """A backup that committed none of its roots; the message names each root and the cause."""

    exit_code = EXIT_USAGE


class IntegrityError(RaiddError):
    """Data lost beyond the fault tolerance; the message names what is lost."""

    exit_code = EXIT_INTEGRITY


class KeyUnlockError(RaiddError):
    """No keyslot opens with the key given."""

    exit_code = EXIT_KEY


class RequestError(RaiddError):
    """A control-socket request that is malformed or not allowed."""

    exit_code = EXIT_USAGE
