"""The long-running service's parts: supervisor notification and device events.

Nouns:

- notification: one sd_notify datagram to the service manager (`READY=1`,
  `STATUS=`, `WATCHDOG=1`, ...).
- watchdog ping: the `WATCHDOG=1` notification the main loop owes systemd at
  least once per `WatchdogSec=`.
"""

from raidd.daemon.notify import Notifier, WatchdogPinger, watchdog_interval

__all__ = ["Notifier", "WatchdogPinger", "watchdog_interval"]
