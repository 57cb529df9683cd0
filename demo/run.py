"""Run raidd end to end on image files: `make demo` (needs root, Linux, Python 3.11+).

The demo creates a RAID5 array of four image files in a demo directory,
backs up a sample CRM directory with `raidd serve`, restores an earlier
version, fails and replaces a member, scrubs, lists and verifies the audit
log and stops the daemon. Every
step prints what it does and checks its result; the exit status is 0 only
if every check held. Standard library only: raidd runs as subprocesses.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sample

MEMBER_SIZE = "32MiB"
MEMBER_BYTES = 32 * 1024 * 1024
START_TIMEOUT = 60.0
COMMIT_TIMEOUT = 30.0
STOP_TIMEOUT = 30.0
LOG_TAIL_LINES = 40
CHANGED_CUSTOMER = "ALFKI"
ADDED_FILE = "attachments/contracts/alfki-2026.txt"
DELETED_FILE = "attachments/invoices/order-10249.txt"

CONFIG = """\
# Written by demo/run.py. Relative paths resolve against this file's directory.
[array]
members = ["disk*.img"]
keyfile = "raidd.key"

[[watch]]
path = "crm"

[state]
directory = "state"

[control]
socket = "control.sock"

[watcher]
quiet_period = "500ms"
max_delay = "3s"
rescan_interval = "1h"
"""


class DemoFailure(Exception):
    """A check of the demo that did not hold."""


class Demo:
    """The demo directory, the daemon process and the commands run against it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.socket = self.directory / "control.sock"
        self.config = self.directory / "raidd.toml"
        self.crm = self.directory / "crm"
        self.log_path = self.directory / "daemon.log"
        self.daemon: subprocess.Popen[bytes] | None = None
        self.env = {**os.environ, "RAIDD_LOCK_DIR": str(self.directory / "lock")}
        for name in ("NOTIFY_SOCKET", "CREDENTIALS_DIRECTORY", "RAIDD_SOCKET"):
            self.env.pop(name, None)
        self.step_number = 0
        self.first_commit = 0

    def step(self, text: str) -> None:
        self.step_number += 1
        print(f"\n==> {self.step_number}. {text}", flush=True)

    def run(self, *argv: str, capture: bool = True) -> subprocess.CompletedProcess[str]:
        """Run `raidd` or `raidctl` from this interpreter's environment, echoing the command."""
        program = _command(argv[0])
        arguments = list(argv[1:])
        if argv[0] == "raidctl":
            arguments = ["--socket", str(self.socket), *arguments]
        print(f"$ {' '.join(argv)}", flush=True)
        return subprocess.run(
            [program, *arguments],
            cwd=self.directory,
            env=self.env,
            text=True,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
        )

    def raidctl_json(self, *argv: str) -> Any:
        result = self.run("raidctl", *argv, "--json")
        require_success(result, f"raidctl {' '.join(argv)}")
        return json.loads(result.stdout)

    def stop_daemon(self) -> int | None:
        """Stop the daemon with SIGTERM (SIGKILL after STOP_TIMEOUT) and return its exit status."""
        if self.daemon is None:
            return None
        process, self.daemon = self.daemon, None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"raidd serve did not stop within {STOP_TIMEOUT:.0f} s; killing it")
                process.kill()
                process.wait()
                return None
        return process.returncode

    def log_tail(self) -> str:
        if not self.log_path.exists():
            return "(no daemon log)"
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-LOG_TAIL_LINES:])


def _command(name: str) -> str:
    # Prefer the command installed beside this interpreter (the project's .venv).
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise DemoFailure(f"command {name} not found; run the demo with `make demo`")
    return found


def require_success(result: subprocess.CompletedProcess[str], command: str) -> None:
    if result.returncode != 0:
        raise DemoFailure(f"{command} exited {result.returncode}: {result.stderr.strip()}")


def check(condition: bool, text: str) -> None:
    """Print `ok: text` when the condition holds, else raise DemoFailure."""
    if not condition:
        raise DemoFailure(text)
    print(f"ok: {text}", flush=True)


def wait_until(predicate: Callable[[], Any], timeout: float, description: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise DemoFailure(f"timed out after {timeout:.0f} s waiting for {description}")


def create_array(demo: Demo) -> None:
    demo.step("Create a RAID5 array on four image files with a new key file")
    disks = [f"disk{index}.img" for index in range(4)]
    result = demo.run(
        "raidd",
        "create",
        "--level",
        "5",
        "--name",
        "crm",
        "--size",
        MEMBER_SIZE,
        "--new-keyfile",
        "raidd.key",
        *disks,
    )
    print(result.stdout.rstrip())
    require_success(result, "raidd create")
    check(all((demo.directory / disk).exists() for disk in disks), "four image files exist")
    check((demo.directory / "raidd.key").exists(), "the key file exists")


def write_sample(demo: Demo) -> None:
    demo.step("Write the sample CRM directory (Northwind customers and orders)")
    sample.build(demo.crm)
    shutil.copytree(demo.crm, demo.directory / "original")
    for path in sorted(demo.crm.rglob("*")):
        if path.is_file():
            print(f"  {path.relative_to(demo.directory)}  {path.stat().st_size} bytes")
    demo.config.write_text(CONFIG)
    print(f"configuration: {demo.config}")


def start_daemon(demo: Demo) -> None:
    demo.step("Start raidd serve in the background and wait for the first commit")
    print(f"$ raidd serve --config raidd.toml  (log: {demo.log_path})", flush=True)
    with demo.log_path.open("wb") as log:
        demo.daemon = subprocess.Popen(
            [_command("raidd"), "serve", "--config", str(demo.config)],
            cwd=demo.directory,
            env=demo.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def snapshots() -> list[dict[str, Any]] | None:
        if demo.daemon is not None and demo.daemon.poll() is not None:
            raise DemoFailure(f"raidd serve exited at start with status {demo.daemon.returncode}")
        if not demo.socket.exists():
            return None
        result = demo.run("raidctl", "snapshots", "--json")
        return json.loads(result.stdout) if result.returncode == 0 else None

    rows = wait_until(snapshots, START_TIMEOUT, "the daemon's first commit")
    demo.first_commit = max(row["id"] for row in rows)
    check(demo.first_commit >= 1, f"the first commit is {demo.first_commit}")


def change_data(demo: Demo) -> None:
    demo.step("Change the data: update a customer, add a file, delete a file")
    database = sqlite3.connect(demo.crm / "crm.db")
    with database:
        database.execute(
            "UPDATE Customers SET ContactName = ?, Phone = ? WHERE CustomerID = ?",
            ("Maria Anders-Lopez", "030-0076545", CHANGED_CUSTOMER),
        )
    database.close()
    print(f"  updated customer {CHANGED_CUSTOMER} in crm/crm.db")
    added = demo.crm / ADDED_FILE
    added.parent.mkdir(parents=True)
    added.write_text("Service contract for 2026, signed by Maria Anders-Lopez.\n")
    print(f"  added crm/{ADDED_FILE}")
    (demo.crm / DELETED_FILE).unlink()
    print(f"  deleted crm/{DELETED_FILE}")

    def newer_commit() -> int | None:
        newest = max(row["id"] for row in demo.raidctl_json("snapshots"))
        return newest if newest > demo.first_commit else None

    commit = wait_until(newer_commit, COMMIT_TIMEOUT, "the watcher to commit the change")
    check(commit > demo.first_commit, f"the watcher committed the change as commit {commit}")
    # The watcher may split the three changes into several commits, so sync commits the rest.
    synced = demo.raidctl_json("sync")
    print(f"  raidctl sync: commit {synced['commit']}, changed: {synced['changed']}")


def restore_earlier(demo: Demo) -> None:
    demo.step(f"Restore commit {demo.first_commit} and compare it with the original copy")
    target = demo.directory / "restored-first"
    result = demo.run(
        "raidctl", "restore", "crm", "--commit", str(demo.first_commit), "--to", str(target)
    )
    print(result.stdout.rstrip())
    require_success(result, "raidctl restore")
    problems = sample.compare_trees(demo.directory / "original", target / "crm")
    check(not problems, "the restored files match the original: " + ("; ".join(problems) or "all"))
    changed = sample.compare_trees(demo.crm, target / "crm")
    check(len(changed) == 3, f"the restore differs from the current data in 3 places: {changed}")


def status(demo: Demo) -> dict[str, Any]:
    result = demo.run("raidctl", "status")
    print(result.stdout.rstrip())
    require_success(result, "raidctl status")
    return dict(demo.raidctl_json("status"))


def fail_member(demo: Demo) -> None:
    demo.step("Fail member disk1.img and read from the degraded array")
    result = demo.run("raidctl", "fail", "disk1.img")
    print(result.stdout.rstrip())
    require_success(result, "raidctl fail")
    array = status(demo)["array"]
    check(array["state"] == "degraded", f"the array is {array['state']}")
    failed = [member for member in array["members"] if member["role"] == 1]
    check(failed[0]["state"] == "faulty", f"role 1 is {failed[0]['state']}")
    test = demo.run("raidctl", "status", "--test")
    check(test.returncode == 1, f"raidctl status --test exits {test.returncode} (degraded)")
    target = demo.directory / "restored-degraded"
    restored = demo.run("raidctl", "restore", "crm", "--to", str(target))
    print(restored.stdout.rstrip())
    require_success(restored, "raidctl restore")
    problems = sample.compare_trees(demo.crm, target / "crm")
    check(
        not problems,
        "the newest version restored degraded matches the data: "
        + ("; ".join(problems) or "all files"),
    )


def replace_member(demo: Demo) -> None:
    demo.step("Replace disk1.img with a new image file disk4.img and rebuild")
    descriptor = os.open(demo.directory / "disk4.img", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.ftruncate(descriptor, MEMBER_BYTES)
    os.close(descriptor)
    # Not captured, so that raidctl draws its progress bar when this runs on a terminal.
    result = demo.run("raidctl", "replace", "disk1.img", "disk4.img", "--wait", capture=False)
    check(result.returncode == 0, f"raidctl replace --wait exited {result.returncode}")
    array = status(demo)["array"]
    check(array["state"] == "clean", f"the array is {array['state']}")
    roles = {member["role"]: member for member in array["members"] if member["role"] is not None}
    new = roles[1]
    check(
        new["path"] == str(demo.directory / "disk4.img") and new["state"] == "in_sync",
        f"role 1 is {new['path']}, {new['state']}",
    )
    check(all(member["state"] == "in_sync" for member in roles.values()), "every role is in_sync")


def scrub(demo: Demo) -> None:
    demo.step("Scrub: check every allocated stripe")
    result = demo.run("raidctl", "scrub", "--wait", capture=False)
    check(result.returncode == 0, f"raidctl scrub --wait exited {result.returncode} (no errors)")
    jobs = [job for job in demo.raidctl_json("jobs", "--all") if job["kind"] == "scrub"]
    check(len(jobs) == 1, f"raidctl jobs --all lists {len(jobs)} scrub job")
    report = jobs[-1].get("result") or {}
    check(
        jobs[-1]["state"] == "done" and report.get("errors") == 0,
        f"the scrub ended {jobs[-1]['state']} with {report.get('errors')} errors",
    )


def audit(demo: Demo) -> None:
    demo.step("Audit log: list the recorded requests and verify the hash chain")
    records = demo.raidctl_json("audit", "--limit", "100")
    actions = {record["action"] for record in records}
    expected = {"restore", "fail", "replace", "scrub", "member_failed"}
    check(expected <= actions, f"the audit log lists {sorted(expected & actions)}")
    result = demo.run("raidctl", "audit", "--verify", capture=False)
    check(result.returncode == 0, f"raidctl audit --verify exited {result.returncode} (whole)")


def stop(demo: Demo) -> None:
    demo.step("Stop the daemon with SIGTERM")
    code = demo.stop_daemon()
    check(code == 0, f"raidd serve exited {code}")


def prepare(directory: Path) -> Demo:
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    return Demo(directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path("demo-run"),
        help="demo directory, removed and recreated at each run (default ./demo-run)",
    )
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("the demo needs root: the daemon serves raidctl's member commands to root only")
        return 2
    demo = prepare(args.dir)
    steps = (create_array, write_sample, start_daemon, change_data, restore_earlier)
    steps += (fail_member, replace_member, scrub, audit, stop)
    try:
        for run_step in steps:
            run_step(demo)
    except (DemoFailure, OSError, sqlite3.Error, json.JSONDecodeError, LookupError) as error:
        print(f"\nFAILED at step {demo.step_number}: {error}", flush=True)
        demo.stop_daemon()
        print(f"--- last {LOG_TAIL_LINES} lines of {demo.log_path} ---")
        print(demo.log_tail())
        return 1
    except KeyboardInterrupt:
        demo.stop_daemon()
        print("\ninterrupted")
        return 130
    print(f"\nThe demo passed: every check held. Files are in {demo.directory}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
