"""Real loop devices: create, detach, re-attach in another order under new names, assemble."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import structlog

from raidd.array import assemble, create_array
from raidd.array.member import MemberClaimedError, open_member
from tests.array.conftest import MiB, write_random

LOSETUP = shutil.which("losetup")
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/loop-control") or LOSETUP is None,
    reason="loop devices need root, /dev/loop-control and losetup",
)


@pytest.fixture
def loop() -> Iterator[Callable[[Path], str]]:
    """Attach image files with `losetup -f --show`; detach whatever is left at the end."""
    attached: list[str] = []

    def attach(image: Path) -> str:
        assert LOSETUP is not None
        result = subprocess.run(
            [LOSETUP, "-f", "--show", str(image)], capture_output=True, text=True, check=True
        )
        device = result.stdout.strip()
        attached.append(device)
        return device

    yield attach
    for device in attached:
        detach(device)


def detach(device: str) -> None:
    assert LOSETUP is not None
    subprocess.run([LOSETUP, "-d", device], capture_output=True, check=False)


def make_images(tmp_path: Path, count: int, size: int = 20 * MiB) -> list[Path]:
    images = []
    for i in range(count):
        path = tmp_path / f"disk{i}.img"
        with open(path, "wb") as image:
            image.truncate(size)
        images.append(path)
    return images


def test_reattached_in_other_order(loop: Callable[[Path], str], tmp_path: Path) -> None:
    images = make_images(tmp_path, 4)
    devices = [loop(image) for image in images]
    created = create_array(devices, level=6, strip_size=16384)
    with assemble(devices, lock_dir=tmp_path) as array:
        assert array.slots[0].member is not None
        assert array.slots[0].member.is_block
        assert array.slots[0].member.size == 20 * MiB
        written = write_random(array, random.Random(1), 20)
        array.commit(b"loop")
    for device in devices:
        detach(device)
    # Take the freed names first, so the members come back under other names.
    filler = tmp_path / "filler.img"
    filler.write_bytes(bytes(1 << 20))
    taken = [loop(filler) for _ in range(2)]
    again = [loop(image) for image in reversed(images)]
    with assemble(
        again, array_uuid=created.array_uuid, lock_dir=tmp_path, search_recorded_paths=False
    ) as array:
        assert not array.report.degraded
        assert array.metadata_root == b"loop"
        for stripe, data in written.items():
            assert array.read(stripe) == data
        roles = {slot.role: slot.path for slot in array.slots}
        assert roles[0] == again[3]
    for device in taken:
        detach(device)


def test_block_member_claimed_exclusively(loop: Callable[[Path], str], tmp_path: Path) -> None:
    (image,) = make_images(tmp_path, 1)
    device = loop(image)
    first = open_member(device, writable=True)
    try:
        with pytest.raises(MemberClaimedError, match=device):
            open_member(device, writable=True)
        reader = open_member(device, writable=False)
        assert reader.size == 20 * MiB
        reader.close()
    finally:
        first.close()


def test_commands_on_loop_devices(
    loop: Callable[[Path], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """raidd create, examine, key and header-backup work on block devices too."""
    from raidd.cli import main

    monkeypatch.setenv("RAIDD_LOCK_DIR", str(tmp_path / "lock"))
    saved = structlog.get_config()
    try:
        run_commands(loop, tmp_path, capsys, main)
    finally:
        structlog.configure(**saved)


def run_commands(
    loop: Callable[[Path], str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    main: Callable[[list[str]], int],
) -> None:
    import json

    devices = [loop(image) for image in make_images(tmp_path, 3)]
    key = tmp_path / "k"
    assert main(["create", "--level", "5", "--new-keyfile", str(key), *devices]) == 0
    capsys.readouterr()
    assert main(["examine", "--json", *devices]) == 0
    examined = json.loads(capsys.readouterr().out)
    assert [item["role"] for item in examined] == [0, 1, 2]
    assert all(item["level"] == 5 for item in examined)
    second = tmp_path / "k2"
    assert main(["key", "add", "--keyfile", str(key), "--new-keyfile", str(second), *devices]) == 0
    capsys.readouterr()
    assert main(["key", "list", "--json", *devices]) == 0
    assert [row["slot"] for row in json.loads(capsys.readouterr().out)] == [0, 1]
    backup = tmp_path / "headers"
    members = [arg for device in devices for arg in ("--member", device)]
    assert main(["header-backup", *members, str(backup)]) == 0
    assert backup.stat().st_size > 3 * 3 * 65536
