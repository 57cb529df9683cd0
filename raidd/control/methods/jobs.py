"""Job methods: `jobs`, `job.progress` (read access) and `job.cancel` (root)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from raidd.control.jobs import JobRegistry, JobState
from raidd.control.peer import Access
from raidd.control.registry import Registry

if TYPE_CHECKING:
    from raidd.control.server import Call


def register(registry: Registry, jobs: JobRegistry) -> None:
    """Register `jobs`, `job.progress` (read access) and `job.cancel` (root)."""

    def list_jobs(call: Call, *, finished: bool = False) -> list[dict[str, Any]]:
        """List running jobs, and the finished ones kept too with finished=true."""
        return [
            job.to_json() for job in jobs.all_jobs() if finished or job.state is JobState.RUNNING
        ]

    def job_progress(call: Call, *, job: int, follow: bool = False) -> dict[str, Any]:
        """Return a job's state; with follow=true, stream progress until it ends."""
        found = jobs.get(job)
        sent_version = -1
        while follow and found.state is JobState.RUNNING:
            call.check_connected()
            if found.version != sent_version:
                sent_version = found.version
                call.emit("progress", {"job": found.to_json()})
            found.wait_finished(call.progress_interval)
        return found.to_json()

    def cancel_job(call: Call, *, job: int) -> dict[str, Any]:
        """Request that a running job stop at its next consistent point."""
        return jobs.cancel(job).to_json()

    registry.add("jobs", list_jobs, Access.READ)
    registry.add("job.progress", job_progress, Access.READ)
    registry.add("job.cancel", cancel_job, Access.ADMIN)
