"""Device events on real loop devices: a removed member fails, a returning one is resynced.

The events are built here and handed to the follower, because `losetup -d`
on a device the array holds open only marks it for removal, so the kernel
sends no remove event while the test runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

import crypto
from raidd.array import assemble, create_array
from raidd.config import LimitsConfig
from raidd.control import JobRegistry, JobState
from raidd.daemon.arrayservice import ArrayService
from raidd.daemon.devices import BlockEvent, Change
from raidd.daemon.startup import Unlocked
from raidd.daemon.udev import DeviceFollower
from raidd.events import EventHook

MiB = 1024 * 1024
LOSETUP = shutil.which("losetup")
pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not os.path.exists("/dev/loop-control") or LOSETUP is None,
    reason="loop devices need root, /dev/loop-control and losetup",
)


@pytest.fixture
def loop_devices(tmp_path: Path) -> Iterator[Callable[[int], list[str]]]:
    """Attach image files with `losetup -f --show`; detach them all at the end."""
    attached: list[str] = []

    def attach(count: int) -> list[str]:
        assert LOSETUP is not None
        for index in range(count):
            image = tmp_path / f"disk{index}.img"
            with open(image, "wb") as file:
                file.truncate(16 * MiB)
            result = subprocess.run(
                [LOSETUP, "-f", "--show", str(image)], capture_output=True, text=True, check=True
            )
            attached.append(result.stdout.strip())
        return list(attached)

    yield attach
    for device in attached:
        subprocess.run([LOSETUP, "-d", device], capture_output=True, check=False)


def _service(devices: list[str], lock_dir: Path) -> ArrayService:
    master = crypto.MasterKey.generate()
    create_array(devices, level=5, strip_size=4096, name="udev")
    array = assemble(devices, lock_dir=lock_dir)
    unlocked = Unlocked(master, crypto.derive_subkeys(master), "test")
    return ArrayService(array, unlocked, JobRegistry(), LimitsConfig(), EventHook(None))


def _event(change: Change, node: str) -> BlockEvent:
    return BlockEvent(change, node, os.path.basename(node), "disk", (), 16 * MiB)


def test_removed_then_returning_member(loop_devices, tmp_path: Path) -> None:
    devices = loop_devices(4)
    service = _service(devices, tmp_path / "lock")
    follower = DeviceFollower(service, [])
    try:
        follower.handle(_event(Change.REMOVED, devices[2]))
        members = service.status()["members"]
        assert members[2]["state"] == "faulty"
        assert service.state() == "degraded"
        follower.handle(_event(Change.ADDED, devices[2]))
        (job,) = service.jobs.all_jobs()
        assert job.kind == "resync"
        job.wait_finished(30)
        assert job.state is JobState.DONE
        assert service.state() == "clean"
        assert service.status()["members"][2]["state"] == "in_sync"
    finally:
        service.stop()


def test_unrelated_device_is_ignored(loop_devices, tmp_path: Path) -> None:
    devices = loop_devices(5)
    service = _service(devices[:4], tmp_path / "lock")
    follower = DeviceFollower(service, [])
    try:
        follower.handle(_event(Change.REMOVED, devices[4]))
        follower.handle(_event(Change.ADDED, devices[4]))
        assert service.state() == "clean"
        assert service.status()["members"][-1]["state"] == "in_sync"
        assert service.jobs.all_jobs() == []
    finally:
        service.stop()


def test_device_at_spare_path_becomes_spare(loop_devices, tmp_path: Path) -> None:
    devices = loop_devices(5)
    service = _service(devices[:4], tmp_path / "lock")
    follower = DeviceFollower(service, [devices[4]])
    try:
        follower.handle(_event(Change.ADDED, devices[4]))
        spares = [m for m in service.status()["members"] if m["state"] == "spare"]
        assert [m["path"] for m in spares] == [devices[4]]
    finally:
        service.stop()


def test_only_possible_members_logged_at_info(loop_devices, tmp_path: Path) -> None:
    """Members and devices with a raidd superblock are logged at info, the rest at debug."""
    devices = loop_devices(7)
    service = _service(devices[:4], tmp_path / "lock")
    # A device of another array, with a raidd superblock: it could be a member.
    create_array(devices[5:7], level=1, strip_size=4096, name="other")
    follower = DeviceFollower(service, [])
    try:
        with capture_logs() as logs:
            follower.handle(_event(Change.ADDED, devices[4]))
            follower.handle(_event(Change.REMOVED, devices[4]))
            follower.handle(_event(Change.ADDED, devices[5]))
            follower.handle(_event(Change.REMOVED, devices[1]))
        device_logs = [
            (entry["event"], entry["device"])
            for entry in logs
            if entry["event"].startswith("block_device_") and entry["log_level"] == "info"
        ]
        assert device_logs == [
            ("block_device_added", devices[5]),
            ("block_device_removed", devices[1]),
        ]
        assert service.status()["members"][1]["state"] == "faulty"
    finally:
        service.stop()
