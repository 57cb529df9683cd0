"""`raidd backup` with files it really cannot read: mode 000 without DAC capabilities, vanished.

The tests run as root, which reads every file through CAP_DAC_OVERRIDE and
CAP_DAC_READ_SEARCH. setpriv (util-linux) drops both from the inheritable
and bounding sets, so the backup process runs as uid 0 bound by the
permission bits like any user.
"""

import ctypes
import os
import select
import shutil
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from raidd.store.store import Store
from tests.store.storekit import Setup, make_setup

DROP = "-dac_override,-dac_read_search"
READ_FILES = 10

# fanotify(7): a FAN_CLASS_CONTENT listener allows or denies each FAN_OPEN_PERM event.
FAN_CLOEXEC = 0x01
FAN_CLASS_CONTENT = 0x04
FAN_MARK_ADD = 0x01
FAN_OPEN_PERM = 0x00010000
FAN_EVENT_ON_CHILD = 0x08000000
FAN_ALLOW = 0x01
AT_FDCWD = -100
# struct fanotify_event_metadata: event_len, vers, reserved, metadata_len, mask, fd, pid
EVENT = struct.Struct("<IBBHQii")
# struct fanotify_response: fd, response
RESPONSE = struct.Struct("<iI")


@pytest.fixture
def setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Setup:
    monkeypatch.setenv("RAIDD_LOCK_DIR", str(tmp_path / "lock"))
    setup = make_setup(tmp_path / "array")
    for index in range(READ_FILES):
        (setup.data / f"a{index}.txt").write_text(f"readable {index}\n")
    return setup


def backup_command(setup: Setup) -> list[str]:
    command = [sys.executable, "-m", "raidd.cli", "backup", "--config", str(setup.config_path)]
    if os.geteuid() != 0:
        return command
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    return [setpriv, f"--inh-caps={DROP}", f"--bounding-set={DROP}", *command]


def run_backup_process(setup: Setup) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        backup_command(setup),
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )


def committed_paths(setup: Setup) -> set[bytes]:
    with Store.open(setup.config(), read_only=True) as store:
        return {version.path for version in store.ls("data", 1)}


def test_mode_000_file_is_reported_and_skipped(setup: Setup) -> None:
    secret = setup.data / "secret"
    secret.write_text("no access")
    secret.chmod(0)
    process = run_backup_process(setup)
    assert process.returncode == 1, process.stderr
    assert "data: 'secret': unreadable: Permission denied" in process.stderr
    paths = committed_paths(setup)
    assert b"secret" not in paths
    assert {f"a{index}.txt".encode() for index in range(READ_FILES)} <= paths


@pytest.fixture
def fanotify_listener() -> Iterator[int]:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
    libc.fanotify_mark.argtypes = [
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint64,
        ctypes.c_int,
        ctypes.c_char_p,
    ]
    descriptor = libc.fanotify_init(FAN_CLASS_CONTENT | FAN_CLOEXEC, os.O_RDONLY)
    if descriptor < 0:
        pytest.skip(f"fanotify permission events unavailable: {os.strerror(ctypes.get_errno())}")
    try:
        yield descriptor
    finally:
        # Closing the listener allows every open still waiting for a response.
        os.close(descriptor)


def test_file_vanished_between_scan_and_read(setup: Setup, fanotify_listener: int) -> None:
    """The first file open after the scan waits until the test deletes the last file.

    The scan only lists and stats, so the first open under the root is a
    read. The reader's workers (at most four) take files in scan order, so
    a worker takes `zz-vanishing` only after finishing an earlier file,
    whose open waited for the delete. So `zz-vanishing` is gone when it is
    opened.
    """
    vanishing = setup.data / "zz-vanishing"
    vanishing.write_text("deleted after the scan")
    libc = ctypes.CDLL(None, use_errno=True)
    mask = FAN_OPEN_PERM | FAN_EVENT_ON_CHILD
    if libc.fanotify_mark(fanotify_listener, FAN_MARK_ADD, mask, AT_FDCWD, bytes(setup.data)):
        pytest.skip(f"fanotify_mark failed: {os.strerror(ctypes.get_errno())}")
    stop = threading.Event()
    opened: list[str] = []

    def allow_opens() -> None:
        while not stop.is_set():
            ready, _, _ = select.select([fanotify_listener], [], [], 0.1)
            if not ready:
                continue
            data = os.read(fanotify_listener, 4096)
            for offset in range(0, len(data), EVENT.size):
                _length, _version, _, _, _mask, fd, _pid = EVENT.unpack_from(data, offset)
                opened.append(os.readlink(f"/proc/self/fd/{fd}"))
                vanishing.unlink(missing_ok=True)
                os.write(fanotify_listener, RESPONSE.pack(fd, FAN_ALLOW))
                os.close(fd)

    listener = threading.Thread(target=allow_opens)
    listener.start()
    try:
        process = run_backup_process(setup)
    finally:
        stop.set()
        listener.join()
    assert process.returncode == 1, process.stderr
    assert "data: 'zz-vanishing': unreadable: No such file or directory" in process.stderr
    assert opened, "no open under the root reached the listener"
    assert not opened[0].endswith("zz-vanishing")
    paths = committed_paths(setup)
    assert b"zz-vanishing" not in paths
    assert {f"a{index}.txt".encode() for index in range(READ_FILES)} <= paths
