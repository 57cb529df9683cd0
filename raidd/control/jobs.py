"""Jobs: long operations (rebuild, scrub, replace) that run after their request returns.

A method starts a job and returns its id at once. The job runs its work
function in a thread of its own, reports progress as a fraction from 0 to
1, and ends `done`, `failed` or `cancelled`. Cancelling sets a flag that
the work function checks between steps (`job.check_cancelled()`), so a job
stops at a point where its work is consistent.
"""

from __future__ import annotations

import enum
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import structlog

from raidd.control.protocol import JOB_CANCELLED, JOB_NOT_FOUND, RpcError
from raidd.errors import RaiddError

log = structlog.get_logger(__name__)


class JobState(enum.Enum):
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class JobCancelledError(RpcError):
    """Raised inside a job's work function once the job is cancelled."""

    def __init__(self, job_id: int) -> None:
        super().__init__(JOB_CANCELLED, f"job {job_id} was cancelled")


class Job:
    """One long operation: its kind, state, progress and outcome."""

    def __init__(self, job_id: int, kind: str, params: dict[str, Any]) -> None:
        self.id = job_id
        self.kind = kind
        self.params = params
        self.state = JobState.RUNNING
        self.done = 0.0
        self.detail: dict[str, Any] = {}
        self.result: Any = None
        self.error: str | None = None
        self.started = time.time()
        self.finished: float | None = None
        self._cancel = threading.Event()
        self._changed = threading.Condition()
        self._version = 0

    def progress(self, done: float, **detail: Any) -> None:
        """Record progress: `done` from 0 to 1, and detail such as `stripes` or `rate`."""
        with self._changed:
            self.done = min(max(float(done), 0.0), 1.0)
            self.detail.update(detail)
            self._version += 1
            self._changed.notify_all()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        """Raise JobCancelledError when the job was cancelled; call it between steps."""
        if self._cancel.is_set():
            raise JobCancelledError(self.id)

    def request_cancel(self) -> None:
        self._cancel.set()
        with self._changed:
            self._version += 1
            self._changed.notify_all()

    def finish(self, state: JobState, result: Any = None, error: str | None = None) -> None:
        with self._changed:
            self.state = state
            self.result = result
            self.error = error
            if state is JobState.DONE:
                self.done = 1.0
            self.finished = time.time()
            self._version += 1
            self._changed.notify_all()

    def wait_finished(self, timeout: float | None) -> bool:
        """Wait until the job has ended or `timeout` seconds passed; tell whether it ended."""
        with self._changed:
            return self._changed.wait_for(lambda: self.state is not JobState.RUNNING, timeout)

    @property
    def version(self) -> int:
        return self._version

    def to_json(self) -> dict[str, Any]:
        with self._changed:
            record: dict[str, Any] = {
                "id": self.id,
                "kind": self.kind,
                "state": self.state.value,
                "done": round(self.done, 4),
                "started": _iso(self.started),
            }
            if self.detail:
                record["detail"] = dict(self.detail)
            if self.finished is not None:
                record["finished"] = _iso(self.finished)
            if self.result is not None:
                record["result"] = self.result
            if self.error is not None:
                record["error"] = self.error
            if self.cancel_requested and self.state is JobState.RUNNING:
                record["cancel_requested"] = True
            return record


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))


Work = Callable[[Job], Any]


class JobRegistry:
    """The daemon's jobs: running ones, and the last `keep_finished` that ended."""

    def __init__(self, keep_finished: int = 100) -> None:
        self.keep_finished = keep_finished
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._jobs: OrderedDict[int, Job] = OrderedDict()
        self._threads: dict[int, threading.Thread] = {}

    def start(self, kind: str, work: Work, params: dict[str, Any] | None = None) -> Job:
        """Start `work(job)` in a new thread and return its job at once.

        The work function's return value (JSON-serializable) becomes the
        job's result. JobCancelledError ends it `cancelled`, a RaiddError
        ends it `failed` with the message, and any other exception ends it
        `failed` and is logged with its traceback.
        """
        with self._lock:
            job = Job(next(self._ids), kind, dict(params or {}))
            self._jobs[job.id] = job
            thread = threading.Thread(
                target=self._run, args=(job, work), name=f"job-{job.id}-{kind}", daemon=True
            )
            self._threads[job.id] = thread
        log.info("job_started", job=job.id, kind=kind)
        thread.start()
        return job

    def _run(self, job: Job, work: Work) -> None:
        try:
            result = work(job)
        except JobCancelledError:
            job.finish(JobState.CANCELLED, error=f"job {job.id} was cancelled")
            log.info("job_cancelled", job=job.id, kind=job.kind)
        except RaiddError as error:
            job.finish(JobState.FAILED, error=str(error))
            log.error("job_failed", job=job.id, kind=job.kind, error=str(error))
        except Exception as error:
            job.finish(JobState.FAILED, error=f"internal error: {type(error).__name__}")
            log.exception("job_crashed", job=job.id, kind=job.kind)
        else:
            job.finish(JobState.DONE, result=result)
            log.info("job_done", job=job.id, kind=job.kind)
        finally:
            with self._lock:
                self._threads.pop(job.id, None)
                self._prune()

    def _prune(self) -> None:
        finished = [job.id for job in self._jobs.values() if job.state is not JobState.RUNNING]
        for job_id in finished[: max(len(finished) - self.keep_finished, 0)]:
            del self._jobs[job_id]

    def get(self, job_id: int) -> Job:
        """Look a job up.

        Raises:
            RpcError: `JOB_NOT_FOUND` naming the id.
        """
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            raise RpcError(JOB_NOT_FOUND, f"job {job_id} not found; 'jobs' lists the known jobs")
        return job

    def all_jobs(self) -> list[Job]:
        """Return every job kept, running and finished, oldest first."""
        with self._lock:
            return list(self._jobs.values())

    def running(self) -> Iterator[Job]:
        return (job for job in self.all_jobs() if job.state is JobState.RUNNING)

    def cancel(self, job_id: int) -> Job:
        """Request that a running job stop; a finished job is returned unchanged."""
        job = self.get(job_id)
        if job.state is JobState.RUNNING:
            job.request_cancel()
            log.info("job_cancel_requested", job=job.id, kind=job.kind)
        return job

    def wait(self, job_id: int, timeout: float | None = None) -> Job:
        """Wait until a job has ended or `timeout` seconds passed; return it."""
        job = self.get(job_id)
        job.wait_finished(timeout)
        return job

    def shutdown(self, timeout: float = 30.0) -> list[Job]:
        """Cancel every running job and wait for each; return those still running."""
        for job in self.running():
            job.request_cancel()
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads.values())
        for thread in threads:
            thread.join(max(deadline - time.monotonic(), 0))
        return list(self.running())
