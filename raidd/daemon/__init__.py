"""The long-running service's parts: main loop, supervisor notification, device events.

Nouns:

- notification: one sd_notify datagram to the service manager (`READY=1`,
  `STATUS=`, `WATCHDOG=1`, ...).
- watchdog ping: the `WATCHDOG=1` notification the main loop owes systemd at
  least once per `WatchdogSec=`.
- block event: a block device that gained (ADDED) or lost (REMOVED) its media,
  as the udev monitor reports it.
"""

from raidd.credentials import key_file_path
from raidd.daemon.devices import BlockEvent, Change, DeviceMonitor, udev_running
from raidd.daemon.lifecycle import Lifecycle
from raidd.daemon.notify import Notifier, WatchdogPinger, watchdog_interval

__all__ = [
    "BlockEvent",
    "Change",
    "DeviceMonitor",
    "Lifecycle",
    "Notifier",
    "WatchdogPinger",
    "key_file_path",
    "udev_running",
    "watchdog_interval",
]
