"""The daemon: start-up in order, the main loop's work, reload and stop.

Start-up order, each step logged, and the first failure ends the start
with its error's exit code:

1. the configuration is read and validated (by `raidd serve`);
2. parity and sealing are self-tested on known vectors;
3. the candidates' superblocks are read and the newest commit chosen;
4. a keyslot is unlocked with the credential `raidd.key` or `array.keyfile`;
5. the array is assembled, degraded if it must be, and rejected beyond its
   tolerance; a rebuild, resync or scrub recorded in the superblocks resumes;
6. the watchers start, before the start-up scan, so that no change made
   during the scan is missed;
7. every root is reconciled with the catalog (a full rescan);
8. the control socket opens;
9. `READY=1`.

The main loop then checks members for presence, hands due batches to the
backup and runs the schedule; SIGHUP reloads, SIGTERM stops (see
`raidd.daemon.lifecycle`).
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import structlog

import crypto
from raidd.config import Config, load_config, prepare_state_directory
from raidd.control import ControlServer, JobRegistry, Registry, resolve_group
from raidd.control.methods import (
    array_jobs,
    audit,
    backups,
    introspection,
    jobs,
    keys,
    members,
    status,
)
from raidd.daemon.arrayservice import ArrayService
from raidd.daemon.audit import AuditTrail, summarize
from raidd.daemon.backups import BackupService
from raidd.daemon.devices import DeviceMonitor
from raidd.daemon.lifecycle import Lifecycle
from raidd.daemon.selftest import run_self_tests
from raidd.daemon.startup import (
    assemble_array,
    expand_member_paths,
    newest_superblock,
    unlock,
)
from raidd.daemon.udev import DeviceFollower
from raidd.daemon.watcher import Watcher
from raidd.errors import ConfigError, RaiddError
from raidd.events import EventHook
from raidd.store.store import Store

log = structlog.get_logger(__name__)

# Tables that a reload cannot change: the array and the socket stay as started.
RESTART_TABLES = ("array", "control", "state")


@dataclasses.dataclass(frozen=True)
class Overrides:
    """Command-line values that win over the configuration file."""

    socket: Path | None = None
    state_dir: Path | None = None

    def apply(self, config: Config) -> Config:
        if self.socket is not None:
            control = dataclasses.replace(config.control, socket=self.socket)
            config = dataclasses.replace(config, control=control)
        if self.state_dir is not None:
            state = dataclasses.replace(config.state, directory=self.state_dir)
            config = dataclasses.replace(config, state=state)
        return config


def control_group(config: Config) -> int | None:
    """Return the control group's gid, or None (root only) when `[control] group` is unset."""
    if config.control.group is None:
        return None
    return resolve_group(config.control.group)


class Daemon:
    """One `raidd serve` process: one array, its watchers and its control socket."""

    def __init__(
        self,
        config: Config,
        *,
        overrides: Overrides | None = None,
        environ: MutableMapping[str, str] | None = None,
    ) -> None:
        self.environ = os.environ if environ is None else environ
        self.overrides = overrides or Overrides()
        self.config = self.overrides.apply(config)
        self.lifecycle = Lifecycle(self.environ)
        self.jobs = JobRegistry()
        self.events = EventHook(self.config.events.program, timeout=self.config.events.timeout)
        self.service: ArrayService | None = None
        self.backups: BackupService | None = None
        self.audit: AuditTrail | None = None
        self._maintenance: threading.Thread | None = None
        self._next_retention = 0.0
        self._next_gc = 0.0
        self.watcher: Watcher | None = None
        self.devices: DeviceMonitor | None = None
        self.server: ControlServer | None = None
        self.started = time.time()
        self.restart_pending: list[str] = []

    # -- start-up --------------------------------------------------------------------

    def start(self) -> None:
        """Run start-up steps 2 to 8; on a failure, undo what was done and raise."""
        try:
            self._start()
        except BaseException:
            self._close_parts()
            raise

    def _start(self) -> None:
        config = self.config
        group = control_group(config)
        prepare_state_directory(config.state.directory)
        self.lifecycle.set_status("self-test")
        run_self_tests()
        self.lifecycle.set_status("reading superblocks")
        paths = expand_member_paths([*config.array.members, *config.array.spares])
        newest = newest_superblock(paths, config)
        unlocked = unlock(newest.keyslot_area, config, self.environ)
        self.lifecycle.set_status("assembling")
        try:
            array = assemble_array(paths, config, newest)
        except BaseException:
            unlocked.wipe()
            raise
        self.service = ArrayService(array, unlocked, self.jobs, config.limits, self.events)
        if self.service.state() != "clean":
            self.events.emit("array_degraded", array=str(array.uuid), state=self.service.state())
        # Opening the store reads the manifest the metadata root points at,
        # which verifies the root; the store wipes the key copy it gets.
        master_copy = crypto.MasterKey(bytearray(unlocked.master.view()))

        def open_store() -> Store:
            return Store(array, master_copy, config.state.directory, config, temporary=False)

        behind_after = max(2 * config.watcher.max_delay, 60.0)
        self.backups = BackupService(open_store, self.events, behind_after=behind_after)
        self.audit = AuditTrail(self.backups, self._watched_roots)
        self.service.audit = self.audit.action
        self.audit.action(
            "daemon_started", {"array_state": self.service.state(), "event": array.event}
        )
        if self.service.resume() is None:
            self.service.start_pending()
        now = time.monotonic()
        self._next_retention = now + config.schedule.retention_interval
        self._next_gc = now + config.schedule.gc_interval
        self._start_device_monitor()
        self.watcher = Watcher(config.watches, config.watcher, on_pending=self.lifecycle.wake)
        self.watcher.start()
        self.lifecycle.set_status("reconciling watched roots")
        with self.lifecycle.extending_start():
            self._reconcile()
        registry = self._build_registry()
        self.server = ControlServer(
            config.control.socket,
            registry,
            group=group,
            jobs=self.jobs,
            on_request=self.audit.on_request,
        )
        self.server.start()

    def _watched_roots(self) -> dict[str, str]:
        return {watch.name: str(watch.path) for watch in self.config.watches}

    def _start_device_monitor(self) -> None:
        assert self.service is not None
        follower = DeviceFollower(self.service, self.config.array.spares)
        try:
            monitor = DeviceMonitor(follower.handle)
            monitor.start()
        except OSError as error:
            # A container without netlink access: vanished members are still
            # found by the presence check of every main-loop pass.
            log.error("device_monitor_failed", error=str(error))
            return
        self.devices = monitor

    def _reconcile(self) -> None:
        assert self.watcher is not None and self.backups is not None
        names = list(self.watcher.watches)
        if names:
            try:
                self.backups.backup_now(names)
            except RaiddError as error:
                # A full array still serves restores, forget and gc; status shows the error.
                log.error("reconcile_failed", roots=names, error=str(error))
        for name in names:
            self.watcher.mark_rescanned(name)

    def _build_registry(self) -> Registry:
        assert self.service is not None
        registry = Registry()
        introspection.register(registry)
        jobs.register(registry, self.jobs)
        status.register(registry, self.status)
        members.register(registry, self.service)
        array_jobs.register(registry, self.service)
        keys.register(registry, self.service)
        assert self.backups is not None
        backups.register(registry, self.backups, lambda: [w.name for w in self.config.watches])
        audit.register(registry, self.backups, self._watched_roots)
        return registry

    # -- main loop -------------------------------------------------------------------

    def run(self) -> int:
        """Report ready and serve until SIGTERM; return the exit status."""
        self.lifecycle.install_signal_handlers()
        return self.lifecycle.run(
            ready_status=self._ready_status(),
            on_tick=self.tick,
            on_reload=self.reload,
            on_stop=self.stop,
        )

    def _ready_status(self) -> str:
        assert self.service is not None
        array = self.service.array
        text = (
            f"serving array {array.name or array.uuid} ({self.service.state()}), "
            f"{len(self.config.watches)} watched roots"
        )
        last = self.backups.last_commit() if self.backups is not None else None
        if last is not None:
            text += f", last commit {last['id']} at {last['time']}"
        return text

    def tick(self) -> float | None:
        """Check the members, back up the due batches, and return the seconds until the next."""
        assert self.service is not None and self.watcher is not None
        self.service.check_members()
        self.service.check_fill(self.config.events.full_threshold)
        status = self._ready_status()
        if status != self.lifecycle.status:
            self.lifecycle.set_status(status)
        assert self.backups is not None
        batches = self.watcher.due_batches()
        if batches:
            paths: dict[str, set[bytes]] = {}
            for batch in batches:
                if not batch.rescan:
                    paths.setdefault(batch.root, set()).update(self.watcher.relative_paths(batch))
            self.backups.submit({batch.root for batch in batches}, paths)
        # Work that waits too long makes the backups behind, also without a status request.
        self.backups.behind()
        self._run_schedule()
        return self.watcher.seconds_until_due()

    def _run_schedule(self) -> None:
        """Start retention or garbage collection in a thread when due and none runs."""
        now = time.monotonic()
        if self._maintenance is not None and self._maintenance.is_alive():
            return
        schedule = self.config.schedule
        tasks = []
        if now >= self._next_retention:
            self._next_retention = now + schedule.retention_interval
            tasks.append("forget")
        if now >= self._next_gc:
            self._next_gc = now + schedule.gc_interval
            tasks.append("gc")
        if tasks:
            self._maintenance = threading.Thread(
                target=self._maintain, args=(tasks,), name="maintenance", daemon=True
            )
            self._maintenance.start()

    def _maintain(self, tasks: list[str]) -> None:
        assert self.backups is not None
        for task in tasks:
            try:
                if task == "forget":
                    result = self.backups.forget(dry_run=False)
                else:
                    result = self.backups.gc(dry_run=False)
            except RaiddError as error:
                log.error("scheduled_task_failed", task=task, error=str(error))
                self._record(task, {"ok": False, "error": str(error)})
            else:
                log.info("scheduled_task_done", task=task, result=result)
                self._record(task, {"ok": True, **summarize(result)})

    def _record(self, task: str, details: dict[str, Any]) -> None:
        trail = self.audit  # read once: stop() clears it from the main thread
        if trail is not None:
            action = "retention" if task == "forget" else task
            trail.action(action, {k: v for k, v in details.items() if k != "roots"})

    # -- reload and stop -------------------------------------------------------------

    def reload(self) -> None:
        """Reload watch roots, retention, rate limits, watcher timing and the event hook.

        Raises:
            ConfigError: the file is invalid; the old configuration stays.
        """
        assert self.service is not None and self.watcher is not None
        source = self.config.source
        if source is None:
            raise ConfigError("raidd serve was started without a configuration file to reload")
        new = self.overrides.apply(load_config(source))
        control_group(new)  # a group that vanished is an error now, not at the next start
        needs_restart = [
            name for name in RESTART_TABLES if getattr(new, name) != getattr(self.config, name)
        ]
        if needs_restart:
            log.error(
                "reload_needs_restart",
                tables=needs_restart,
                reason="changes to these tables take effect only after a restart",
            )
            keep = {name: getattr(self.config, name) for name in needs_restart}
            new = dataclasses.replace(new, **keep)
        self.restart_pending = needs_restart
        added = self.watcher.reload(new.watches, new.watcher)
        if new.limits != self.config.limits:
            self.service.set_rates(
                float(new.limits.rebuild_min_mib_s), float(new.limits.rebuild_max_mib_s)
            )
        if new.events != self.config.events:
            self.events.close(timeout=1.0)
            self.events = EventHook(new.events.program, timeout=new.events.timeout)
            self.service.events = self.events
            if self.backups is not None:
                self.backups.events = self.events
        if self.backups is not None:
            # The store reads the watched roots (exclude, retention, pre_backup and
            # post_backup) from its own copy: the next backup, forget and gc use these.
            self.backups.use_config(new)
        if new.schedule != self.config.schedule:
            now = time.monotonic()
            self._next_retention = min(self._next_retention, now + new.schedule.retention_interval)
            self._next_gc = min(self._next_gc, now + new.schedule.gc_interval)
        self.config = new
        log.info("configuration_reloaded", roots=len(new.watches), added_roots=added)

    def stop(self) -> None:
        """Close the socket, stop the watchers and jobs, commit the audit records, close."""
        if self.audit is not None:
            self.audit.action("daemon_stopping")
        self._close_parts()

    def _close_parts(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.devices is not None:
            self.devices.stop()
            self.devices = None
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        if self.service is not None:
            self.service.stop_jobs()
        if self.audit is not None:
            # After the jobs stopped, so that their last records are committed too.
            self.audit.stop()
            self.audit = None
        if self.backups is not None:
            self.backups.stop()
            self.backups = None
        if self.service is not None:
            self.service.stop()
            self.service = None
        self.jobs.shutdown(timeout=5.0)
        self.events.close(timeout=5.0)

    # -- status ----------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Return the result of the `status` method (docs/PROTOCOL.md)."""
        assert self.service is not None
        jobs = [
            {"id": job.id, "kind": job.kind, "done": round(job.done, 4), **_job_detail(job)}
            for job in self.jobs.running()
        ]
        watcher = self.watcher.status() if self.watcher is not None else []
        return {
            "array": self.service.status(),
            "jobs": jobs,
            "last_commit": self.backups.last_commit() if self.backups else None,
            "backups": self.backups.status() if self.backups else {"available": False},
            "watcher": watcher,
            "limits": self.service.rates(),
            "daemon": {
                "pid": os.getpid(),
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
                "restart_pending": self.restart_pending,
            },
        }


def _job_detail(job: Any) -> dict[str, Any]:
    detail = job.detail
    return {
        key: detail[key]
        for key in ("rate_mib_s", "eta_seconds", "stripes_done", "stripes_total")
        if key in detail
    }
