"""Block devices appearing and disappearing, from the kernel's uevents through pyudev.

The monitor listens on the `udev` netlink source when udevd runs, that is
when udevd's control socket /run/udev/control exists. Those events come
after udev's rules ran, and carry the `/dev/disk/by-id` links that
members are configured by. Without udevd (containers, initramfs
shells) it listens on the `kernel` source, whose events carry the device
node but no links.

A loop device or a removable disk exists while it has no media, so
"added" and "removed" here mean that the device gained or lost its media:

- `add` or `change` of a device whose size became non-zero is ADDED;
- `remove`, or `change` of a device whose size became zero, is REMOVED;
- `change` whose disk sequence number (`DISKSEQ`, Linux 5.15 and later)
  changed while the size stayed non-zero is REMOVED then ADDED, because
  the media was replaced between two events.

The size is read from sysfs when the event is handled, so two changes in
quick succession may be seen as one. The states converge: what the
monitor reports last matches the device as it is.
"""

from __future__ import annotations

import enum
import os
import selectors
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyudev
import structlog

log = structlog.get_logger(__name__)

UDEV_CONTROL = Path("/run/udev/control")


class Change(enum.Enum):
    ADDED = "added"
    REMOVED = "removed"


@dataclass(frozen=True)
class BlockEvent:
    """A block device that gained or lost its media."""

    change: Change
    node: str
    sys_name: str
    devtype: str
    links: tuple[str, ...]
    size_bytes: int


BlockCallback = Callable[[BlockEvent], None]


def udev_running(control: Path = UDEV_CONTROL) -> bool:
    """Tell whether udevd runs, by the presence of its control socket."""
    return control.exists()


@dataclass
class _Known:
    size_bytes: int
    diskseq: str | None


class DeviceMonitor:
    """A thread that reports block devices gaining or losing media to a callback.

    Args:
        callback: called in the monitor's thread with each BlockEvent. An
            exception it raises is logged and the monitor goes on.
        source: `udev` or `kernel`; by default `udev` when udevd runs.
    """

    def __init__(self, callback: BlockCallback, *, source: str | None = None) -> None:
        if source is None:
            source = "udev" if udev_running() else "kernel"
        if source not in ("udev", "kernel"):
            raise ValueError(f"netlink source must be 'udev' or 'kernel', not {source!r}")
        self.source = source
        self._callback = callback
        self._context = pyudev.Context()
        self._monitor = pyudev.Monitor.from_netlink(self._context, source=source)
        self._monitor.filter_by("block")
        self._known: dict[str, _Known] = {}
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def start(self) -> None:
        """Record the devices present now, then start reporting changes."""
        if self._thread is not None:
            raise RuntimeError("the device monitor is already running")
        self._monitor.start()
        for device in self._context.list_devices(subsystem="block"):
            size = _size_bytes(device)
            if size and device.device_node:
                self._known[device.device_node] = _Known(size, device.properties.get("DISKSEQ"))
        self._thread = threading.Thread(target=self._run, name="device-monitor", daemon=True)
        self._thread.start()
        log.info("device_monitor_started", source=self.source, devices=len(self._known))

    def stop(self) -> None:
        """Stop the thread and close the netlink socket."""
        self._stopping = True
        self._wake_writer.send(b"x")
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._wake_reader.close()
        self._wake_writer.close()
        log.info("device_monitor_stopped", source=self.source)

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._monitor.fileno(), selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while not self._stopping:
                for key, _ in selector.select():
                    if key.fileobj is not self._wake_reader:
                        self._drain()

    def _drain(self) -> None:
        while True:
            try:
                device = self._monitor.poll(timeout=0)
            except OSError as error:
                # ENOBUFS: the kernel dropped events because the socket's
                # buffer was full. Later events still arrive, and a rescan
                # reports what the dropped ones would have.
                log.error("device_monitor_receive_failed", error=str(error))
                for event in self.rescan():
                    self._deliver(event)
                return
            if device is None:
                return
            for event in self.classify(device.action, device):
                self._deliver(event)

    def rescan(self) -> list[BlockEvent]:
        """Compare sysfs with the devices known and return the events that were missed."""
        events = []
        present = set()
        for device in self._context.list_devices(subsystem="block"):
            if device.device_node:
                present.add(device.device_node)
                events.extend(self.classify("change", device))
        for node in sorted(set(self._known) - present):
            known = self._known.pop(node)
            events.append(
                BlockEvent(Change.REMOVED, node, os.path.basename(node), "", (), known.size_bytes)
            )
        return events

    def classify(self, action: str | None, device: Any) -> list[BlockEvent]:
        """Turn one uevent into the BlockEvents it means (none, one or two)."""
        node = device.device_node
        if not node:
            return []
        known = self._known.get(node)
        if action == "remove":
            self._known.pop(node, None)
            return [self._event(Change.REMOVED, device, known.size_bytes if known else 0)]
        if action not in ("add", "change"):
            return []
        size = _size_bytes(device)
        diskseq = device.properties.get("DISKSEQ")
        if size == 0:
            if known is None:
                return []
            del self._known[node]
            return [self._event(Change.REMOVED, device, known.size_bytes)]
        self._known[node] = _Known(size, diskseq)
        if known is None:
            return [self._event(Change.ADDED, device, size)]
        if diskseq is not None and known.diskseq is not None and diskseq != known.diskseq:
            return [
                self._event(Change.REMOVED, device, known.size_bytes),
                self._event(Change.ADDED, device, size),
            ]
        return []

    def _event(self, change: Change, device: Any, size: int) -> BlockEvent:
        links = tuple(str(device.properties.get("DEVLINKS") or "").split())
        return BlockEvent(
            change=change,
            node=device.device_node,
            sys_name=device.sys_name,
            devtype=str(device.device_type or ""),
            links=links,
            size_bytes=size,
        )

    def _deliver(self, event: BlockEvent) -> None:
        # Debug only: a host adds and removes block devices all the time (loop
        # devices of other programs). The callback logs those that concern it at info.
        log.debug(
            "block_device_" + event.change.value,
            device=event.node,
            size_bytes=event.size_bytes,
            links=list(event.links),
        )
        try:
            self._callback(event)
        except Exception:
            log.exception("device_callback_failed", device=event.node, change=event.change.value)


def _size_bytes(device: Any) -> int:
    """Read a block device's size from sysfs (512-byte sectors), or 0 once it is gone."""
    try:
        return int(device.attributes.asint("size")) * 512
    except (KeyError, ValueError):
        # pyudev raises KeyError when the attribute vanished with the device.
        return 0
