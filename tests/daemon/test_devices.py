"""The block device monitor on a real loop device, and its event rules on recorded uevents."""

from __future__ import annotations

import os
import queue
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from raidd.daemon.devices import BlockEvent, Change, DeviceMonitor, udev_running


class Attributes:
    def __init__(self, sectors: int | None) -> None:
        self.sectors = sectors

    def asint(self, name: str) -> int:
        assert name == "size"
        if self.sectors is None:
            raise KeyError(name)
        return self.sectors


class RecordedDevice:
    """A uevent's device as pyudev presents it, for the rules that need no kernel."""

    def __init__(self, sectors: int | None, diskseq: str | None = "1", links: str = "") -> None:
        self.device_node = "/dev/loop9"
        self.sys_name = "loop9"
        self.device_type = "disk"
        self.attributes = Attributes(sectors)
        self.properties: dict[str, Any] = {"DEVLINKS": links}
        if diskseq is not None:
            self.properties["DISKSEQ"] = diskseq


@pytest.fixture
def monitor() -> Iterator[DeviceMonitor]:
    """A monitor that is not started: classify() alone."""
    yield DeviceMonitor(lambda event: None, source="kernel")


def changes(events: list[BlockEvent]) -> list[Change]:
    return [event.change for event in events]


def test_media_appears_and_goes(monitor: DeviceMonitor) -> None:
    assert monitor.classify("add", RecordedDevice(0)) == []
    added = monitor.classify("change", RecordedDevice(2048))
    assert changes(added) == [Change.ADDED]
    assert added[0].size_bytes == 2048 * 512
    assert added[0].node == "/dev/loop9"
    assert monitor.classify("change", RecordedDevice(2048)) == []
    removed = monitor.classify("change", RecordedDevice(0))
    assert changes(removed) == [Change.REMOVED]
    assert removed[0].size_bytes == 2048 * 512
    assert monitor.classify("change", RecordedDevice(0)) == []


def test_add_with_media(monitor: DeviceMonitor) -> None:
    links = "/dev/disk/by-id/ata-X /dev/disk/by-path/pci-0"
    [event] = monitor.classify("add", RecordedDevice(100, links=links))
    assert event.change is Change.ADDED
    assert event.links == ("/dev/disk/by-id/ata-X", "/dev/disk/by-path/pci-0")


def test_remove_action(monitor: DeviceMonitor) -> None:
    monitor.classify("add", RecordedDevice(100))
    assert changes(monitor.classify("remove", RecordedDevice(None))) == [Change.REMOVED]
    assert changes(monitor.classify("add", RecordedDevice(100))) == [Change.ADDED]


def test_replaced_media(monitor: DeviceMonitor) -> None:
    """A new disk sequence number with media on both sides is a removal then an addition."""
    monitor.classify("add", RecordedDevice(100, diskseq="5"))
    assert changes(monitor.classify("change", RecordedDevice(200, diskseq="6"))) == [
        Change.REMOVED,
        Change.ADDED,
    ]


def test_resize_without_diskseq(monitor: DeviceMonitor) -> None:
    """Kernels before 5.15 send no DISKSEQ: a resize is no media change."""
    monitor.classify("add", RecordedDevice(100, diskseq=None))
    assert monitor.classify("change", RecordedDevice(200, diskseq=None)) == []


def test_rescan_reports_missed(monitor: DeviceMonitor) -> None:
    """A rescan of real sysfs reports a device that vanished unseen, then nothing more."""
    from raidd.daemon.devices import _Known

    monitor._known["/dev/raidd-test-gone"] = _Known(4096, None)
    first = monitor.rescan()
    gone = [event for event in first if event.node == "/dev/raidd-test-gone"]
    assert changes(gone) == [Change.REMOVED]
    assert gone[0].size_bytes == 4096
    assert all(event.change is Change.ADDED for event in first if event not in gone)
    assert monitor.rescan() == []


def test_other_actions_ignored(monitor: DeviceMonitor) -> None:
    assert monitor.classify("bind", RecordedDevice(100)) == []
    assert monitor.classify("online", RecordedDevice(100)) == []


def test_invalid_source() -> None:
    with pytest.raises(ValueError, match="'udev' or 'kernel'"):
        DeviceMonitor(lambda event: None, source="hal")


def test_udev_running_by_control_socket(tmp_path: Path) -> None:
    control = tmp_path / "control"
    assert not udev_running(control)
    control.touch()
    assert udev_running(control)


def test_callback_failure_logged(monitor: DeviceMonitor) -> None:
    def broken(event: BlockEvent) -> None:
        raise RuntimeError("handler bug")

    monitor._callback = broken
    [event] = monitor.classify("add", RecordedDevice(100))
    with capture_logs() as logs:
        monitor._deliver(event)
    assert [entry["event"] for entry in logs] == ["block_device_added", "device_callback_failed"]
    # Every device of the host passes here; the callback logs those that concern it at info.
    assert logs[0]["log_level"] == "debug"


def next_event(events: queue.Queue[BlockEvent], node: str, change: Change) -> BlockEvent:
    """Wait for the event of `node`; other helpers' loop devices come and go meanwhile."""
    while True:
        event = events.get(timeout=30)
        if event.node == node and event.change is change:
            return event


@pytest.fixture
def image(tmp_path: Path) -> Path:
    if os.geteuid() != 0 or not Path("/dev/loop-control").exists():
        pytest.skip("loop devices need root and /dev/loop-control")
    if shutil.which("losetup") is None:
        pytest.skip("losetup is not installed (Debian package mount)")
    path = tmp_path / "member.img"
    with path.open("wb") as handle:
        handle.truncate(8 * 1024 * 1024)
    return path


def test_loop_attach_detach_reported(image: Path) -> None:
    events: queue.Queue[BlockEvent] = queue.Queue()
    monitor = DeviceMonitor(events.put)
    monitor.start()
    node = None
    try:
        node = subprocess.run(
            ["losetup", "-f", "--show", str(image)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        added = next_event(events, node, Change.ADDED)
        assert added.size_bytes == 8 * 1024 * 1024
        assert added.devtype == "disk"
        subprocess.run(["losetup", "-d", node], check=True)
        detached_node, node = node, None
        removed = next_event(events, detached_node, Change.REMOVED)
        assert removed.size_bytes == 8 * 1024 * 1024
    finally:
        if node is not None:
            subprocess.run(["losetup", "-d", node], check=False)
        monitor.stop()
    assert monitor.source == ("udev" if udev_running() else "kernel")
