"""The daemon's array: administration, array jobs as control jobs, status, keyslots.

`ArrayService` is what the control methods call. It serializes the array's
long jobs (one rebuild, resync, replace or scrub at a time), applies the
rate limits to the running one, turns member failures into events, and
puts a spare to work when a member fails.

Work that must wait for the running job waits in the array itself:
returning stale members, degraded roles a spare can take, and members
left rebuilding. When a job ends done, `start_pending()` starts the next
of them, so every returning member is resynced and every degraded role
gets a spare, one job after the other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import structlog

import crypto
from raidd.array import Array, Rebuild, Scrub, add_spare, fail_member, remove_member
from raidd.array import Job as ArrayJob
from raidd.array.admin import (
    find_slot,
    re_add,
    replace_member,
    resume_job,
    rewrite_spare_superblocks,
    use_spare,
)
from raidd.array.stripeio import Slot
from raidd.array.superblock import MemberState
from raidd.config import LimitsConfig
from raidd.control.jobs import Job, JobCancelledError, JobRegistry, JobState
from raidd.daemon.startup import Unlocked
from raidd.errors import ArrayBusyError, ArrayError, MemberError, RaiddError, UsageError
from raidd.events import EventHook

log = structlog.get_logger(__name__)

PROGRESS_POLL = 0.2
# The lost stripes `status` lists by number; the count covers all of them.
LOST_LISTED = 100
MEMBER_STATES = {
    MemberState.ACTIVE: "in_sync",
    MemberState.REBUILDING: "rebuilding",
    MemberState.FAILED: "faulty",
    MemberState.ABSENT: "missing",
    MemberState.EMPTY: "missing",
    MemberState.REMOVED: "missing",
    MemberState.SPARE: "spare",
}


class ArrayService:
    """The assembled array as the daemon serves it.

    Args:
        array: the assembled array, owned by the service from now on.
        unlocked: the master key, for keyslot changes.
        jobs: the control job registry the array jobs are listed in.
        limits: the rebuild rate bounds from `[limits]`.
        events: the event hook.
    """

    def __init__(
        self,
        array: Array,
        unlocked: Unlocked,
        jobs: JobRegistry,
        limits: LimitsConfig,
        events: EventHook,
    ) -> None:
        self.array = array
        self.unlocked = unlocked
        self.jobs = jobs
        self.min_rate = float(limits.rebuild_min_mib_s)
        self.max_rate = float(limits.rebuild_max_mib_s)
        self.events = events
        self._job_lock = threading.Lock()
        self._running: tuple[Job, ArrayJob] | None = None
        self._stopping = False
        # Whether the last check_fill() found the array at or over its threshold.
        self._nearly_full = False
        # Stale members whose re-add failed, by UUID; they stay stale in status.
        self._not_resynced: set[str] = set()
        # Records an automatic action in the audit log; the daemon sets it.
        self.audit: Callable[[str, Mapping[str, Any]], None] = _no_audit
        array.failure_listeners.append(self._on_member_failed)

    # -- status ----------------------------------------------------------------------

    def state(self) -> str:
        """Return `clean`, `degraded`, `rebuilding` or `failed`."""
        array = self.array
        unusable = [slot.role for slot in array.slots if slot.state is not MemberState.ACTIVE]
        if array._broken is not None or not array.geometry.survives(unusable):
            return "failed"
        if any(slot.state is MemberState.REBUILDING for slot in array.slots):
            return "rebuilding"
        return "degraded" if unusable else "clean"

    def status(self) -> dict[str, Any]:
        """Return the `array` object of the `status` method (docs/PROTOCOL.md)."""
        array = self.array
        with array.lock:
            engine = array.status()
            stripe_bytes = array.stripe_data_size
            stale = {item["member_uuid"]: item for item in array.report.stale}
            members = [self._member_json(slot, stale) for slot in array.slots]
            members += [
                {
                    "path": spare.path,
                    "uuid": str(spare.member_uuid),
                    "role": None,
                    "state": "spare",
                    "errors": {"read": 0, "write": 0, "checksum": 0},
                }
                for spare in array.spares
            ]
            return {
                "uuid": str(array.uuid),
                "name": array.name,
                "level": array.level,
                "state": self.state(),
                "event": array.event,
                "strip_size": engine["strip_size"],
                "stripes": engine["stripes"],
                "allocated_stripes": engine["allocated_stripes"],
                "free_stripes": engine["free_stripes"],
                "reserve_stripes": engine["reserve_stripes"],
                "used_bytes": engine["allocated_stripes"] * stripe_bytes,
                "size_bytes": engine["stripes"] * stripe_bytes,
                "used_fraction": _fraction(engine["allocated_stripes"], engine["stripes"]),
                "lost_stripe_count": len(engine["lost_stripes"]),
                "lost_stripes": engine["lost_stripes"][:LOST_LISTED],
                "members": members,
            }

    def check_fill(self, threshold: float) -> bool:
        """Emit `array_nearly_full` when the used fraction reaches `threshold`; return if it has.

        The event is emitted once per crossing: after the fraction dropped
        below the threshold (garbage collection freed stripes), the next
        crossing emits it again.
        """
        array = self.array
        # NOTE: read without the array lock, so that the main loop never waits
        # for a commit's fsync; a count taken during a commit may miss that
        # commit's stripes, and the next pass counts them.
        allocated = int(array.map.allocated_stripes().size)
        fraction = _fraction(allocated, array.stripe_count)
        full = fraction >= threshold
        if full and not self._nearly_full:
            description = {
                "array": str(array.uuid),
                "used_fraction": fraction,
                "threshold": threshold,
                "allocated_stripes": allocated,
                "stripes": array.stripe_count,
                "used_bytes": allocated * array.stripe_data_size,
                "size_bytes": array.stripe_count * array.stripe_data_size,
            }
            log.warning("array_nearly_full", **description)
            self.events.emit("array_nearly_full", **description)
        elif not full and self._nearly_full:
            log.info("array_below_full_threshold", array=str(array.uuid), used_fraction=fraction)
        self._nearly_full = full
        return full

    def _member_json(self, slot: Slot, stale: dict[str, dict[str, str]]) -> dict[str, Any]:
        state = MEMBER_STATES[slot.state]
        path = slot.path
        if slot.member is None and str(slot.member_uuid) in stale:
            state = "stale"
            path = stale[str(slot.member_uuid)]["path"]
        record: dict[str, Any] = {
            "path": path,
            "uuid": str(slot.member_uuid) if slot.member_uuid.int else None,
            "role": slot.role,
            "state": state,
            "errors": {
                "read": slot.counters.read,
                "write": slot.counters.write,
                "checksum": slot.counters.checksum,
            },
        }
        invalid = self.array.report.invalid_copies.get(str(slot.member_uuid), {})
        record["notes"] = [
            f"superblock copy {copy} is invalid ({error}); a commit rewrites it"
            for copy, error in sorted(invalid.items())
        ]
        return record

    # -- administration --------------------------------------------------------------

    def fail(self, member: str, *, force: bool = False) -> dict[str, Any]:
        """Fail a member by path or UUID; return its record."""
        slot = fail_member(self.array, member, force=force)
        return self._member_json(slot, {})

    def remove(self, member: str, *, force: bool = False) -> None:
        """Remove a failed or absent member (an active one only with `force`), or a spare."""
        remove_member(self.array, member, force=force)
        log.info("member_removed", array=str(self.array.uuid), member=member)

    def add(self, path: str, *, force: bool = False) -> dict[str, Any]:
        """Add a spare; a degraded role takes it at once and is rebuilt onto it."""
        spare = add_spare(self.array, path, force=force)
        record: dict[str, Any] = {"path": spare.path, "uuid": str(spare.member_uuid), "job": None}
        degraded = self._degraded_roles()
        if degraded and not self._busy():
            job = self._rebuild_onto_spare(degraded[0])
            record["job"] = job.id if job is not None else None
        return record

    def replace(self, old: str, new: str, *, force: bool = False) -> Job:
        """Replace member `old` with the new device `new`; return the rebuild job."""
        with self._job_lock:
            self._check_idle("replace")
            _, array_job = replace_member(self.array, old, new, force=force)
            return self._start("replace", array_job, {"old": old, "new": new})

    def rebuild(self, member: str | None = None) -> Job:
        """Start (or resume) the rebuild of a rebuilding member; return its job."""
        with self._job_lock:
            self._check_idle("rebuild")
            if member is not None:
                slot = find_slot(self.array, member)
            else:
                slot = next(
                    (s for s in self.array.slots if s.state is MemberState.REBUILDING), None
                )
                if slot is None:
                    raise ArrayError(
                        f"array {self.array.name or self.array.uuid} has no member to rebuild; "
                        "add a spare or replace the failed member first"
                    )
            array_job = Rebuild(self.array, slot)
            return self._start("rebuild", array_job, {"member": slot.path})

    def scrub(self, *, repair: bool = True) -> Job:
        """Start a scrub of every allocated stripe; return its job."""
        with self._job_lock:
            self._check_idle("scrub")
            array_job = Scrub(self.array, repair=repair)
            return self._start("scrub", array_job, {"repair": repair})

    def resume(self) -> Job | None:
        """Resume the rebuild, resync or scrub recorded in the superblocks, if any."""
        with self._job_lock:
            array_job = resume_job(self.array)
            if array_job is None:
                return None
            kind = "scrub" if isinstance(array_job, Scrub) else "rebuild"
            log.info("array_job_resumed", array=str(self.array.uuid), kind=kind)
            return self._start(kind, array_job, {"resumed": True})

    def start_pending(self) -> Job | None:
        """Start the next waiting array job, unless one runs; return it (or None).

        In this order: the resync of a returning stale member, the rebuild
        of a member left rebuilding (a re-add while another job ran), and a
        spare's rebuild of a degraded role.

        Only a stale member recorded absent is taken back; a failed one
        waits for the operator. A member written while away (split brain)
        is left alone and logged once: only an operator's `raidctl add
        --force` rebuilds it in full.
        """
        with self._job_lock:
            if self._busy() or self._stopping:
                return None
            job = self._resync_next_stale()
            if job is None:
                job = self._rebuild_waiting_member()
            if job is None and self.array.spares:
                degraded = self._degraded_roles()
                job = self._start_spare_rebuild(degraded[0]) if degraded else None
            return job

    def _resync_next_stale(self) -> Job | None:
        absent = {
            str(entry.member_uuid)
            for entry in self.array._table
            if entry.state is MemberState.ABSENT
        }
        for item in list(self.array.report.stale):
            if item["member_uuid"] not in absent or item["member_uuid"] in self._not_resynced:
                continue  # failed, not just away (the operator decides), or tried already
            try:
                array_job = re_add(self.array, item["path"])
            except (ArrayError, MemberError) as error:
                log.error(
                    "stale_member_not_resynced",
                    array=str(self.array.uuid),
                    member=item["path"],
                    member_uuid=item["member_uuid"],
                    error=str(error),
                )
                self._not_resynced.add(item["member_uuid"])
                continue
            self.array.report.stale.remove(item)
            return self._start("resync", array_job, {"member": item["path"]})
        return None

    def _rebuild_waiting_member(self) -> Job | None:
        for slot in self.array.slots:
            if slot.state is MemberState.REBUILDING and slot.member is not None:
                log.info("member_rebuild_continues", array=str(self.array.uuid), member=slot.path)
                return self._start("rebuild", Rebuild(self.array, slot), {"member": slot.path})
        return None

    def _degraded_roles(self) -> list[int]:
        """List the roles with no member serving or being rebuilt: failed, absent or removed."""
        working = (MemberState.ACTIVE, MemberState.REBUILDING)
        return [slot.role for slot in self.array.slots if slot.state not in working]

    def readd(self, path: str) -> Job | None:
        """Take back a stale member at `path`; resync it now unless a job runs."""
        with self._job_lock:
            array_job = re_add(self.array, path)
            if self._busy():
                # NOTE: the member stays rebuilding until start_pending() takes it up.
                log.info("resync_waits", member=path, job=self._running[0].id)
                return None
            return self._start("resync", array_job, {"member": path})

    def set_rates(self, min_rate: float, max_rate: float) -> dict[str, float]:
        """Set the rebuild and scrub rate bounds in MiB/s (0 as maximum: unlimited)."""
        if min_rate < 0 or max_rate < 0 or (max_rate and min_rate > max_rate):
            raise UsageError(
                f"invalid rate limits: minimum {min_rate}, maximum {max_rate} MiB/s; both must "
                "be 0 or more and the minimum at most the maximum (0 as maximum: unlimited)"
            )
        self.min_rate, self.max_rate = min_rate, max_rate
        running = self._running
        if running is not None:
            running[1].set_rates(min_rate, max_rate)
        log.info("rate_limits_set", min_mib_s=min_rate, max_mib_s=max_rate)
        return self.rates()

    def rates(self) -> dict[str, float]:
        return {"min_mib_s": self.min_rate, "max_mib_s": self.max_rate}

    def check_members(self) -> list[str]:
        """Fail every member whose device or image file vanished; return their paths."""
        vanished = []
        for slot in list(self.array.slots):
            if slot.member is None or slot.state not in (
                MemberState.ACTIVE,
                MemberState.REBUILDING,
            ):
                continue
            try:
                slot.member.check_present()
            except MemberError as error:
                log.error(
                    "member_vanished",
                    array=str(self.array.uuid),
                    member=slot.path,
                    member_uuid=str(slot.member_uuid),
                    error=str(error),
                )
                fail_member(self.array, str(slot.member_uuid), vanished=True)
                vanished.append(slot.path)
        return vanished

    # -- keyslots --------------------------------------------------------------------

    def key_list(self) -> list[dict[str, Any]]:
        area = crypto.KeyslotArea.from_bytes(self.array.keyslot_area)
        return [{"slot": s.number, "kind": s.kind, "detail": s.detail} for s in area.slots()]

    def key_add(self, *, keyfile_secret: bytes | None, passphrase: str | None) -> int:
        """Add a keyslot for a key file's secret or a passphrase; return its number."""
        if (keyfile_secret is None) == (passphrase is None):
            raise UsageError("key.add needs exactly one of keyfile (base64) and passphrase")
        area = crypto.KeyslotArea.from_bytes(self.array.keyslot_area)
        try:
            if keyfile_secret is not None:
                number = area.add_keyfile(self.unlocked.master, keyfile_secret)
            else:
                assert passphrase is not None
                number = area.add_passphrase(self.unlocked.master, passphrase)
        except crypto.CryptoError as error:
            raise UsageError(str(error)) from error
        self._store_keyslots(area)
        log.info("keyslot_added", array=str(self.array.uuid), keyslot=number)
        return number

    def key_remove(self, slot: int, *, force: bool = False) -> None:
        """Remove a keyslot; the last one the daemon's own key file opens only with `force`.

        Raises:
            UsageError: no such slot, the last slot, or the key file's last slot without force.
        """
        area = crypto.KeyslotArea.from_bytes(self.array.keyslot_area)
        own = self.unlocked.keyslots
        if slot in own and not own - {slot} and not force:
            raise UsageError(
                f"keyslot {slot} is the one the daemon's key file {self.unlocked.key_file} "
                "opens: without it the next start fails (exit 5) until array.keyfile names "
                "another key file; point array.keyfile at the new key first, or pass --force"
            )
        try:
            area.remove(slot)
        except crypto.CryptoError as error:
            raise UsageError(str(error)) from error
        self._store_keyslots(area)
        self.unlocked.keyslots = own - {slot}
        log.info("keyslot_removed", array=str(self.array.uuid), keyslot=slot, forced=force)

    def _store_keyslots(self, area: crypto.KeyslotArea) -> None:
        with self.array.lock:
            self.array.keyslot_area = area.to_bytes()
            # Two commits, so both alternating superblock slots hold the new area.
            self.array.commit_state()
            self.array.commit_state()
            rewrite_spare_superblocks(self.array)

    # -- jobs ------------------------------------------------------------------------

    def _busy(self) -> bool:
        """Tell whether an array job is running."""
        running = self._running
        return running is not None and running[0].state is JobState.RUNNING

    def _check_idle(self, what: str) -> None:
        running = self._running
        if running is not None and running[0].state is JobState.RUNNING:
            raise ArrayBusyError(
                f"cannot start {what}: job {running[0].id} ({running[0].kind}) is running; "
                f"wait for it or cancel it with raidctl cancel {running[0].id}"
            )

    def _start(self, kind: str, array_job: ArrayJob, params: dict[str, Any]) -> Job:
        array_job.set_rates(self.min_rate, self.max_rate)

        def work(job: Job) -> dict[str, Any]:
            try:
                return self._run_array_job(job, array_job)
            finally:
                threading.Thread(
                    target=self._continue_after, args=(job,), name="array-next", daemon=True
                ).start()

        job = self.jobs.start(kind, work, params)
        self._running = (job, array_job)
        self.audit(f"{kind}_started", {"job": job.id, **params})
        if kind in ("rebuild", "replace", "resync"):
            self.events.emit(
                "rebuild_started", array=str(self.array.uuid), job=job.id, kind=kind, **params
            )
        return job

    def _run_array_job(self, job: Job, array_job: ArrayJob) -> dict[str, Any]:
        done = threading.Event()

        def report() -> None:
            while not done.wait(PROGRESS_POLL):
                self._report_progress(job, array_job)
                if job.cancel_requested:
                    array_job.stop_event.set()

        poller = threading.Thread(target=report, name=f"job-{job.id}-progress", daemon=True)
        poller.start()
        try:
            result = array_job.run()
        except Exception as error:
            self.audit(f"{job.kind}_failed", {"job": job.id, "error": str(error)})
            raise
        finally:
            done.set()
            poller.join()
        self._report_progress(job, array_job)
        if not array_job.finished:
            self.audit(f"{job.kind}_stopped", {"job": job.id})
            raise JobCancelledError(job.id)
        summary = {
            "errors": result.errors,
            "repaired": result.repaired,
            "lost_stripes": [int(s) for s in result.lost_stripes],
            "lost": result.lost_report(),
        }
        if result.lost_stripes:
            log.error(
                "stripes_lost",
                array=str(self.array.uuid),
                job=job.id,
                kind=job.kind,
                stripes=summary["lost_stripes"],
            )
        self.audit(
            f"{job.kind}_finished",
            {
                "job": job.id,
                "errors": result.errors,
                "repaired": result.repaired,
                "lost_stripes": len(result.lost_stripes),
            },
        )
        if isinstance(array_job, Scrub):
            if result.errors or result.lost_stripes:
                self.events.emit("scrub_errors", array=str(self.array.uuid), **summary)
        else:
            self.events.emit("rebuild_finished", array=str(self.array.uuid), job=job.id, **summary)
        return summary

    def _continue_after(self, job: Job) -> None:
        """Start the next waiting job once `job` ended done; a failed or cancelled one stops here.

        An operator's cancel, or a job that failed, must not be followed by
        more automatic work until someone looks.
        """
        job.wait_finished(None)
        if job.state is not JobState.DONE:
            return
        try:
            self.start_pending()
        except RaiddError as error:
            log.error("next_array_job_failed", array=str(self.array.uuid), error=str(error))

    @staticmethod
    def _report_progress(job: Job, array_job: ArrayJob) -> None:
        progress = array_job.progress()
        fraction = progress.done / progress.total if progress.total else 1.0
        job.progress(
            fraction,
            stripes_done=progress.done,
            stripes_total=progress.total,
            rate_mib_s=round(progress.rate_mib_s, 2),
            eta_seconds=round(progress.eta_seconds, 1) if progress.eta_seconds else None,
        )

    def _on_member_failed(self, slot: Slot, reason: str) -> None:
        # Called inside the failing operation, with the array lock held.
        array = str(self.array.uuid)
        self.audit(
            "member_failed",
            {
                "role": slot.role,
                "member": slot.path,
                "member_uuid": str(slot.member_uuid),
                "reason": reason,
            },
        )
        self.events.emit(
            "member_failed",
            array=array,
            role=slot.role,
            member=slot.path,
            member_uuid=str(slot.member_uuid),
            reason=reason,
        )
        self.events.emit("array_degraded", array=array, failed_role=slot.role)
        if self.array.spares:
            role = slot.role
            threading.Thread(
                target=self._rebuild_onto_spare, args=(role,), name="spare-rebuild", daemon=True
            ).start()

    def _rebuild_onto_spare(self, role: int) -> Job | None:
        with self._job_lock:
            if self._busy():
                # NOTE: start_pending() puts a spare into this role once the job ends done.
                log.info("spare_rebuild_waits", role=role, job=self._running[0].id)
                return None
            return self._start_spare_rebuild(role)

    def _start_spare_rebuild(self, role: int) -> Job | None:
        try:
            slot = use_spare(self.array, role)
        except ArrayError as error:
            log.error("spare_rebuild_failed", role=role, error=str(error))
            return None
        if slot is None:
            return None
        self.audit("spare_taken", {"role": role, "member": slot.path})
        return self._start("rebuild", Rebuild(self.array, slot), {"member": slot.path})

    def stop_jobs(self, timeout: float = 30.0) -> None:
        """Stop the running job at its next stripe, and start no other; it records a checkpoint."""
        with self._job_lock:
            self._stopping = True
        running = self._running
        if running is not None and running[0].state is JobState.RUNNING:
            running[1].stop_event.set()
            running[0].wait_finished(timeout)

    def stop(self) -> None:
        """Stop the running job, close the array and wipe the key."""
        self.stop_jobs()
        self._write_counters()
        self.array.close()
        self.unlocked.wipe()

    def _write_counters(self) -> None:
        """Commit the error counts changed since the last commit, so that a restart keeps them."""
        array = self.array
        if array.read_only or array._broken is not None or not array.counters_changed():
            return
        try:
            array.commit_state()
        except RaiddError as error:
            log.error("error_counters_not_written", array=str(array.uuid), error=str(error))


def _fraction(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _no_audit(action: str, details: Mapping[str, Any]) -> None:
    """Record nothing: the audit hook until the daemon's store is open."""
