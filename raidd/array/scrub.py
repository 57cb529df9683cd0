"""Scrub: read every allocated stripe, check strip checksums and parity, repair.

Errors are attributed to members by the strip checksums; on RAID6 the
syndromes name a single bad strip whose checksum does not catch it. The
check-only mode reports and writes nothing.
"""

from __future__ import annotations

import uuid

import numpy as np
import structlog

from parity import Level, Verification
from raidd.array.array import Array
from raidd.array.codec import strip_checksum
from raidd.array.jobs import Job, JobResult, StripeError, _is_data
from raidd.array.superblock import Checkpoint, CheckpointKind, MemberState
from raidd.errors import IntegrityError

log = structlog.get_logger(__name__)


class Scrub(Job):
    """Read every allocated stripe, check strip checksums and parity, repair what is wrong."""

    kind = CheckpointKind.SCRUB

    def __init__(self, array: Array, *, repair: bool = True, **kwargs: object) -> None:
        super().__init__(array, **kwargs)  # type: ignore[arg-type]
        self.repair = repair and not array.read_only
        # Whether a lost mark was set, which the end of the scrub commits.
        self._marked_lost = False

    def checkpoint(self) -> Checkpoint | None:
        if not self.repair:
            return None
        return Checkpoint(CheckpointKind.SCRUB, -1, uuid.UUID(int=0), self.next_stripe(), 0)

    def process_run(self, run: list[int]) -> int:
        done = self._scrub_run_at_once(run)
        if done is not None:
            return done
        return self._scrub_stripes(run)

    def _scrub_run_at_once(self, run: list[int]) -> int | None:
        """Check a run with array operations when every member is present and nothing is lost.

        Returns the bytes read, or None when a strip or the parity needs the
        per-stripe path (which then finds, counts and repairs the fault).
        """
        array, io = self.array, self.array.io
        members = len(array.slots)
        if any(s.state is not MemberState.ACTIVE or s.member is None for s in array.slots):
            return None
        rows = array.map.entries[run[0] : run[-1] + 1]
        if rows["lost"].any():
            return None
        fetched = self._fetched if self._fetched is not None else io.fetch_run(run[0], len(run))
        self._fetched = fetched
        buffers = {role: data for role, data in fetched.items() if _is_data(data)}
        if len(buffers) < members:
            return None
        size = io.strip_size

        def checksums(role: int) -> list[int]:
            view = memoryview(buffers[role])
            return [strip_checksum(view[i * size : (i + 1) * size]) for i in range(len(run))]

        level = array.codec.level
        futures = [io.submit(checksums, role) for role in range(members)]
        parity_check = None
        if level is Level.RAID5:
            # The parity XOR runs beside the checksums (numpy releases the GIL).
            everything: list[tuple[int, list[bytes | None]]] = [(stripe, []) for stripe in run]
            parity_check = io.submit(self._drop_consistent, run, everything, buffers)
        found = np.array([future.result() for future in futures], dtype=np.uint64).T
        if parity_check is not None and parity_check.result():
            return None
        if not np.array_equal(found, rows["checksums"]):
            return None
        if level is Level.RAID6:
            views = {role: memoryview(data) for role, data in buffers.items()}
            checks = [
                (stripe, [views[r][i * size : (i + 1) * size] for r in range(members)])
                for i, stripe in enumerate(run)
            ]
            verdicts = io.submit(self._verify_all, checks).result()
            if not all(v.ok for v in verdicts):  # type: ignore[attr-defined]
                return None
        if level in (Level.RAID1, Level.RAID10):
            # Equal checksums of the copies are the mirror check.
            for holders in array.codec.data_roles(run[0]):
                if not all(np.array_equal(found[:, holders[0]], found[:, r]) for r in holders):
                    return None
        return size * members * len(run)

    def _scrub_stripes(self, run: list[int]) -> int:
        io = self.array.io
        rows = self.entries(run)
        strips, faults, buffers = io.read_run(
            run[0], [(w, c) for w, c, _ in rows], self._fetched_for(run)
        )
        for fault in faults:
            self._report(fault.stripe, fault.role, fault.path, fault.kind)
        checks = []
        for i, stripe in enumerate(run):
            written_at, checksums, lost = rows[i]
            known = strips[i]
            bad = [role for role, strip in known.items() if strip is None]
            if bad:
                try:
                    io.reconstruct_stripe(
                        stripe, written_at, checksums, lost, repair=self.repair, known=known
                    )
                    self.result.repaired += len(bad) if self.repair else 0
                except IntegrityError as error:
                    self._record_lost(stripe, known, lost, str(error))
            elif len(known) == len(self.array.slots):
                checks.append((stripe, [known[role] for role in range(len(self.array.slots))]))
        checks = self._drop_consistent(run, checks, buffers)
        # One task per run, so the thread hand-off costs once per run, not per stripe.
        verdicts = io.submit(self._verify_all, checks).result()
        for (stripe, _), verdict in zip(checks, verdicts, strict=True):  # type: ignore[call-overload]
            self._check_parity(stripe, verdict)
        return io.strip_size * sum(len(known) for known in strips)

    def _drop_consistent(
        self,
        run: list[int],
        checks: list[tuple[int, list[bytes | None]]],
        buffers: dict[int, bytes | memoryview],
    ) -> list[tuple[int, list[bytes | None]]]:
        """Check RAID5 parity of a whole run at once; return the checks still to run.

        In a RAID5 stripe P is the XOR of the data strips, so the XOR of all
        of a stripe's strips is zero whichever member holds P: one XOR over the
        members' runs clears every consistent stripe.
        """
        members = len(self.array.slots)
        if self.array.codec.level is not Level.RAID5 or len(buffers) < members or not checks:
            return checks
        words = self.array.io.strip_size // 8
        views = [np.frombuffer(buffers[role], dtype=np.uint64) for role in range(members)]
        total = np.bitwise_xor(views[0], views[1], out=self._scratch[: views[0].size])
        for view in views[2:]:
            np.bitwise_xor(total, view, out=total)
        if not total.any():
            return []
        nonzero = total.reshape(len(run), words).any(axis=1)
        return [(stripe, strips) for stripe, strips in checks if nonzero[stripe - run[0]]]

    def _verify_all(self, checks: list[tuple[int, list[bytes | None]]]) -> list[Verification]:
        return [self.array.codec.verify(stripe, strips) for stripe, strips in checks]  # type: ignore[arg-type]

    def _check_parity(self, stripe: int, verdict: Verification) -> None:
        if verdict.ok:
            return
        # Every strip matches its checksum, yet parity disagrees: the map entry or a
        # checksum collision is wrong. RAID6 syndromes name the strip; nothing is rewritten.
        role = -1
        if verdict.bad_index is not None:
            role = self.array.codec.role_of_logical(stripe, verdict.bad_index)
        self.result.errors += 1
        path = self.array.slots[role].path if role >= 0 else ""
        self.result.details.append(StripeError(stripe, role, path, "parity"))
        log.error("scrub_parity_mismatch", stripe=stripe, role=role)

    def _record_lost(
        self, stripe: int, known: dict[int, bytes | None], lost: int, error: str
    ) -> None:
        """Report a stripe beyond the tolerance, and (when repairing) mark its bad strips lost.

        Only strips read from a present member and found wrong are marked: a
        member that is merely away may still hold its strip, and the mark
        would keep its return from helping.
        """
        mask = lost
        for role, strip in known.items():
            if strip is None and self.array.slots[role].member is not None:
                mask |= 1 << role
        if stripe not in self.result.lost_stripes:
            self.result.lost_stripes.append(stripe)
        if self.repair and mask != lost:
            self.array.mark_lost(stripe, mask)
            self._marked_lost = True
        log.error("scrub_stripe_lost", stripe=stripe, roles_mask=mask, error=error)

    def _report(self, stripe: int, role: int, path: str, kind: str) -> None:
        self.result.errors += 1
        self.result.details.append(StripeError(stripe, role, path, kind))
        log.warning("scrub_error", stripe=stripe, role=role, member=path, kind=kind)

    def write_checkpoint(self) -> None:
        if self._marked_lost and not self.array.read_only:
            with self.array.lock:
                self.array.commit_job_changes()
            self._marked_lost = False
        super().write_checkpoint()

    def finish(self) -> None:
        with self.array.lock:
            if self.repair and self.array.checkpoint.kind is CheckpointKind.SCRUB:
                self.array.checkpoint = Checkpoint()
                self.array.commit_job_changes()
            elif self._marked_lost:
                self.array.commit_job_changes()
        log.info(
            "scrub_finished",
            errors=self.result.errors,
            repaired=self.result.repaired,
            lost=len(self.result.lost_stripes),
        )


def scrub(array: Array, *, repair: bool = True) -> JobResult:
    """Scrub the whole array in the calling thread and return what it found."""
    job = Scrub(array, repair=repair, min_rate=0, max_rate=0, checkpoint_interval=float("inf"))
    return job.run()
