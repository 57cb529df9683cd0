"""Helpers shared by the store tests: POSIX ACL bytes and running code as another user."""

import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

ACL_USER_OBJ = 0x01
ACL_USER = 0x02
ACL_GROUP_OBJ = 0x04
ACL_MASK = 0x10
ACL_OTHER = 0x20
ACL_UNDEFINED_ID = 0xFFFFFFFF
NOBODY = 65534


def posix_acl(named_user: int, permissions: int = 4) -> bytes:
    """Return a system.posix_acl_access value (Linux xattr format, version 2).

    The layout is a little-endian u32 version, then (u16 tag, u16 perm,
    u32 id) entries sorted by tag, as in the kernel's posix_acl_xattr.h.
    """
    entries = [
        (ACL_USER_OBJ, 6, ACL_UNDEFINED_ID),
        (ACL_USER, permissions, named_user),
        (ACL_GROUP_OBJ, 4, ACL_UNDEFINED_ID),
        (ACL_MASK, 6, ACL_UNDEFINED_ID),
        (ACL_OTHER, 4, ACL_UNDEFINED_ID),
    ]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory of mode 0755 under /tmp that an unprivileged user can reach.

    pytest's tmp_path is not usable: every pytest session that starts
    resets /tmp/pytest-of-<user> to mode 0700, so opening it up for one
    test is undone by any other session running on the host.
    """
    path = Path(tempfile.mkdtemp(prefix="raidd-shared-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def run_as_nobody(imports: str, code: str) -> object:
    """Run Python `code` as uid/gid 65534 and return the JSON it prints last.

    `imports` runs first, as root, because the interpreter's own files may be
    unreadable to the unprivileged user.
    """
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to the unprivileged user")
    drop = (
        "import os\n"
        "os.setgroups([])\n"
        f"os.setresgid({NOBODY}, {NOBODY}, {NOBODY})\n"
        f"os.setresuid({NOBODY}, {NOBODY}, {NOBODY})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import json\n" + imports + "\n" + drop + code],
        capture_output=True,
        text=True,
        cwd="/",
        timeout=60,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"the child running as uid {NOBODY} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])
