"""The job registry, and jobs followed and cancelled over the socket."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from raidd.control import ControlClient, Frame, Job, JobRegistry, JobState, RemoteError
from raidd.control.protocol import JOB_NOT_FOUND, RpcError
from raidd.errors import MemberError
from tests.control.conftest import ServerFactory


def test_job_runs_to_done() -> None:
    jobs = JobRegistry()

    def work(job: Job) -> dict[str, int]:
        job.progress(0.5, stripes=10)
        return {"stripes": 20}

    job = jobs.wait(jobs.start("scrub", work, {"repair": True}).id, timeout=30)
    record = job.to_json()
    assert record["state"] == "done"
    assert record["done"] == 1.0
    assert record["result"] == {"stripes": 20}
    assert record["detail"] == {"stripes": 10}
    assert record["kind"] == "scrub"
    assert job.params == {"repair": True}


def test_job_ids_increase() -> None:
    jobs = JobRegistry()
    first = jobs.start("a", lambda job: None)
    second = jobs.start("b", lambda job: None)
    assert second.id == first.id + 1
    jobs.shutdown()


def test_job_failure_states() -> None:
    jobs = JobRegistry()

    def member_gone(job: Job) -> None:
        raise MemberError("member /dev/loop3 (UUID a93e) is gone")

    def crash(job: Job) -> None:
        raise KeyError("bug")

    failed = jobs.wait(jobs.start("rebuild", member_gone).id, timeout=30)
    crashed = jobs.wait(jobs.start("rebuild", crash).id, timeout=30)
    assert failed.state is JobState.FAILED
    assert failed.error == "member /dev/loop3 (UUID a93e) is gone"
    assert crashed.state is JobState.FAILED
    assert crashed.error == "internal error: KeyError"


def test_job_cancel_at_step() -> None:
    jobs = JobRegistry()
    started = threading.Event()
    release = threading.Event()

    def work(job: Job) -> None:
        started.set()
        release.wait(30)
        job.check_cancelled()
        raise AssertionError("the job went on after cancel")

    job = jobs.start("scrub", work)
    assert started.wait(30)
    jobs.cancel(job.id)
    assert job.to_json()["cancel_requested"] is True
    release.set()
    jobs.wait(job.id, timeout=30)
    assert job.state is JobState.CANCELLED
    assert job.error == f"job {job.id} was cancelled"


def test_cancel_finished_job_unchanged() -> None:
    jobs = JobRegistry()
    job = jobs.wait(jobs.start("a", lambda job: 1).id, timeout=30)
    assert jobs.cancel(job.id).state is JobState.DONE


def test_unknown_job() -> None:
    with pytest.raises(RpcError, match="job 42 not found") as raised:
        JobRegistry().get(42)
    assert raised.value.code == JOB_NOT_FOUND


def test_finished_jobs_pruned() -> None:
    jobs = JobRegistry(keep_finished=3)
    ids = [jobs.wait(jobs.start("a", lambda job: None).id, timeout=30).id for _ in range(6)]
    assert [job.id for job in jobs.all_jobs()] == ids[-3:]


def test_progress_clamped() -> None:
    job = Job(1, "a", {})
    job.progress(1.7)
    assert job.done == 1.0
    job.progress(-2)
    assert job.done == 0.0


def test_shutdown_cancels_running() -> None:
    jobs = JobRegistry()

    def endless(job: Job) -> None:
        while True:
            job.check_cancelled()
            job.wait_finished(0.01)

    job = jobs.start("scrub", endless)
    assert jobs.shutdown(timeout=30) == []
    assert job.state is JobState.CANCELLED


def test_job_followed_over_socket(make_server: ServerFactory) -> None:
    server = make_server()
    frames: list[Frame] = []
    with ControlClient(server.path) as client:
        job_id = client.call("sleep", {"steps": 20, "step_seconds": 0.01})["job"]
        final = client.call(
            "job.progress", {"job": job_id, "follow": True}, on_frame=frames.append
        )
        listed = client.call("jobs", {"finished": True})
        running = client.call("jobs")
    assert final["state"] == "done"
    assert final["result"] == {"steps": 20}
    assert frames, "no progress frame arrived"
    assert [frame.seq for frame in frames] == list(range(len(frames)))
    assert all(frame.kind == "progress" for frame in frames)
    assert all(frame.params["job"]["state"] == "running" for frame in frames)
    assert all(frame.params["job"]["kind"] == "sleep" for frame in frames)
    done = [frame.params["job"]["done"] for frame in frames]
    assert done == sorted(done)
    assert [job["id"] for job in listed] == [job_id]
    assert running == []


def test_job_cancelled_over_socket(make_server: ServerFactory) -> None:
    server = make_server()
    with ControlClient(server.path) as client:
        job_id = client.call("sleep", {"steps": 100_000, "step_seconds": 0.001})["job"]
        record = client.call("job.cancel", {"job": job_id})
        assert record["id"] == job_id
        final = client.call("job.progress", {"job": job_id, "follow": True})
        assert final["state"] == "cancelled"
        with pytest.raises(RemoteError, match="job 99999 not found") as raised:
            client.call("job.progress", {"job": 99_999})
        assert raised.value.code == JOB_NOT_FOUND


def test_follow_ends_when_server_closes(make_server: ServerFactory) -> None:
    server = make_server(close_grace=0.2)
    outcome: dict[str, Any] = {}
    with ControlClient(server.path, timeout=30) as client:
        job_id = client.call("sleep", {"steps": 100_000, "step_seconds": 0.001})["job"]
        ready = threading.Event()

        def follow() -> None:
            try:
                client.call(
                    "job.progress",
                    {"job": job_id, "follow": True},
                    on_frame=lambda frame: ready.set(),
                )
            except RemoteError as error:
                outcome["error"] = str(error)

        thread = threading.Thread(target=follow)
        thread.start()
        assert ready.wait(30)
        server.close()
        thread.join(30)
    assert outcome["error"].startswith("raidd is shutting down")
