"""Time raidd's backup and restore beside restic and borg on a generated CRM dataset.

    .venv/bin/python bench/backup.py [--repeat 3] [--workdir DIR] [--json]

One run builds the dataset with make-crm-dataset (found beside the
repository as shared/tools/make-crm-dataset, or --dataset-tool) and then, for
every repetition, on a fresh copy of it and fresh repositories: first backup,
no-change backup, `make-crm-dataset mutate`, backup after the change, and a
full restore into an empty directory that is compared with the dataset. Each
figure is the best of the repetitions; peak RSS is the largest.

Every timed step starts with the page cache dropped (as root; the report
says when it could not be) and ends with a syncfs of the work directory's
filesystem inside the timing, for every tool alike. raidd makes restored
files durable before it reports success, and the syncfs charges every tool
for writing its data to disk.

restic and borg are the Debian packages `restic` and `borgbackup`,
installed with apt-get when missing (as root), or skipped with the reason.
Both use local, encrypted repositories in the work directory: restic with
its defaults, borg with `repokey-blake2` and `--compression zstd,3`. raidd
runs on a RAID5 of four image files in the same work directory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _backup_report import MIB, STEPS, ToolRecord, build_report, print_report, targets
from _common import (
    Measurement,
    command_output,
    compare_trees,
    drop_page_caches,
    find_tree_root,
    machine_info,
    run_measured,
    tree_size,
)

REPOSITORY = Path(__file__).resolve().parents[1]
DATASET_TOOL = REPOSITORY.parent / "shared" / "tools" / "make-crm-dataset"
BUILD_ARGUMENTS = ["--orders-scale", "20", "--attachments-mb", "100", "--scans-mb", "200"]
# A file every copy of the dataset has, to find the root inside a restore.
DATASET_MARKER = "db/northwind.db"
PASSWORD = "benchmark passphrase"


class StepFailed(Exception):
    """A tool's step that did not complete; its message is the reason."""


def checked(measurement: Measurement, what: str, allowed: Sequence[int] = (0,)) -> Measurement:
    """Return the measurement, or raise StepFailed with the end of its stderr."""
    if measurement.returncode not in allowed:
        tail = (measurement.stderr.strip() or measurement.stdout.strip())[-600:]
        raise StepFailed(f"{what} exited with {measurement.returncode}: {tail}")
    return measurement


def run_checked(command: Sequence[str | os.PathLike[str]], **kwargs: object) -> str:
    """Run an untimed setup command and return its stdout; raise StepFailed on failure."""
    completed = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, **kwargs
    )
    if completed.returncode != 0:
        tail = (completed.stderr.strip() or completed.stdout.strip())[-600:]
        raise StepFailed(
            f"{' '.join(map(str, command))} exited with {completed.returncode}: {tail}"
        )
    return completed.stdout


def directory_bytes(path: Path) -> int:
    return tree_size(path)[0]


class Tool:
    """One backup program: set up a repository, back up, restore."""

    name = ""

    def __init__(self, home: Path, data: Path) -> None:
        self.home = home  # this tool's part of the work directory
        self.data = data
        self.repository = home / "repository"

    def reset(self) -> None:
        """Remove the previous repetition's repository and create a new one."""
        shutil.rmtree(self.home, ignore_errors=True)
        self.home.mkdir(parents=True)
        self.setup()

    def setup(self) -> None:
        raise NotImplementedError

    def backup(self) -> Measurement:
        raise NotImplementedError

    def restore(self, target: Path) -> tuple[Measurement, Path]:
        """Restore the newest backup into `target`; return the measurement and the tree's root."""
        raise NotImplementedError

    def stored_bytes(self, before: int, measurement: Measurement) -> tuple[int, str]:
        """Return the bytes one backup added to the repository and how they were found."""
        return directory_bytes(self.repository) - before, "repository growth"

    def repository_bytes(self) -> int:
        return directory_bytes(self.repository)


class Restic(Tool):
    name = "restic"

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "RESTIC_REPOSITORY": str(self.repository),
            "RESTIC_PASSWORD": PASSWORD,
            "RESTIC_CACHE_DIR": str(self.home / "cache"),
        }

    def setup(self) -> None:
        run_checked(["restic", "init"], env=self.environment())

    def backup(self) -> Measurement:
        command = ["restic", "backup", "--host", "bench", str(self.data)]
        measurement = run_measured(command, env=self.environment(), sync_path=self.home)
        return checked(measurement, "restic backup")

    def restore(self, target: Path) -> tuple[Measurement, Path]:
        command = ["restic", "restore", "latest", "--target", str(target)]
        measurement = run_measured(command, env=self.environment(), sync_path=target)
        checked(measurement, "restic restore")
        return measurement, find_tree_root(target, DATASET_MARKER) or target


class Borg(Tool):
    name = "borg"

    def __init__(self, home: Path, data: Path) -> None:
        super().__init__(home, data)
        self.archives = 0

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "BORG_REPO": str(self.repository),
            "BORG_PASSPHRASE": PASSWORD,
            "BORG_BASE_DIR": str(self.home / "base"),
            "BORG_DISPLAY_PASSPHRASE": "no",
        }

    def setup(self) -> None:
        self.archives = 0
        run_checked(["borg", "init", "--encryption", "repokey-blake2"], env=self.environment())

    def backup(self) -> Measurement:
        self.archives += 1
        command = ["borg", "create", "--compression", "zstd,3", f"::a{self.archives}", "."]
        measurement = run_measured(
            command, env=self.environment(), cwd=self.data, sync_path=self.home
        )
        # Exit code 1 is borg's "completed with warnings".
        return checked(measurement, "borg create", allowed=(0, 1))

    def restore(self, target: Path) -> tuple[Measurement, Path]:
        command = ["borg", "extract", f"::a{self.archives}"]
        measurement = run_measured(command, env=self.environment(), cwd=target, sync_path=target)
        checked(measurement, "borg extract", allowed=(0, 1))
        return measurement, find_tree_root(target, DATASET_MARKER) or target


class Raidd(Tool):
    name = "raidd"
    root_name = "crm"

    def __init__(self, home: Path, data: Path, command: list[str], member_size: str) -> None:
        super().__init__(home, data)
        self.command = command
        self.member_size = member_size
        self.config = home / "raidd.toml"
        self.members = [home / f"member{index}.img" for index in range(4)]

    def environment(self) -> dict[str, str]:
        # The array lock file goes beside the members, not into the host's /run/raidd.
        return {**os.environ, "RAIDD_LOCK_DIR": str(self.home / "lock")}

    def setup(self) -> None:
        keyfile = self.home / "array.key"
        run_checked(
            [
                *self.command,
                *("create", "--level", "5", "--size", self.member_size),
                *("--new-keyfile", str(keyfile), *map(str, self.members)),
            ],
            env=self.environment(),
        )
        self.config.write_text(
            "[array]\n"
            f"members = {json.dumps([str(self.home / 'member*.img')])}\n"
            f"keyfile = {json.dumps(str(keyfile))}\n\n"
            "[[watch]]\n"
            f"path = {json.dumps(str(self.data))}\n"
            f"name = {json.dumps(self.root_name)}\n\n"
            "[state]\n"
            f"directory = {json.dumps(str(self.home / 'state'))}\n",
            encoding="utf-8",
        )

    def backup(self) -> Measurement:
        command = [*self.command, "backup", "--config", str(self.config), "--json"]
        measurement = run_measured(command, env=self.environment(), sync_path=self.home)
        # Exit code 1 is "done with warnings" (a file skipped or changed during read).
        return checked(measurement, "raidd backup", allowed=(0, 1))

    def restore(self, target: Path) -> tuple[Measurement, Path]:
        command = [*self.command, "restore", "--config", str(self.config), "--to", str(target)]
        measurement = run_measured(command, env=self.environment(), sync_path=target)
        checked(measurement, "raidd restore", allowed=(0, 1))
        return measurement, target / self.root_name

    def stored_bytes(self, before: int, measurement: Measurement) -> tuple[int, str]:
        try:
            report = json.loads(measurement.stdout)
        except json.JSONDecodeError as error:
            raise StepFailed(f"raidd backup --json printed no JSON: {error}") from error
        for key, value in walk_json(report):
            if key in STORED_KEYS and isinstance(value, int):
                return value, f"`{key}` in `raidd backup --json`"
        raise StepFailed(
            f"raidd backup --json reports none of {', '.join(STORED_KEYS)}: "
            f"{measurement.stdout[:300]}"
        )

    def repository_bytes(self) -> int:
        """Return the bytes allocated to the sparse image files, times 3/4 to leave out parity.

        The allocation grows by whole strips, and it counts the catalog and
        the array's metadata that `bytes_stored` leaves out.
        """
        allocated = sum(member.stat().st_blocks * 512 for member in self.members)
        return allocated * (len(self.members) - 1) // len(self.members)


# Names under which `raidd backup --json` may report the bytes of new objects
# before parity, most specific first.
STORED_KEYS = ("stored_bytes", "bytes_stored", "new_object_bytes", "new_bytes", "stored")


def walk_json(value: object) -> Iterator[tuple[str, object]]:
    """Yield every (key, value) pair of a parsed JSON document, outer keys first."""
    if isinstance(value, dict):
        yield from value.items()
        for item in value.values():
            yield from walk_json(item)
    elif isinstance(value, list):
        for item in value:
            yield from walk_json(item)


class Installer:
    """Install missing Debian packages with apt-get, running `apt-get update` once."""

    def __init__(self, allowed: bool) -> None:
        self.allowed = allowed
        self.updated = False

    def ensure(self, package: str, program: str) -> str | None:
        """Return None when `program` is on PATH (installing it if needed), else the reason."""
        if shutil.which(program):
            return None
        if not self.allowed:
            return f"{program} not found and --no-install given"
        if os.geteuid() != 0:
            return f"{program} not found, and installing {package} needs root"
        if not shutil.which("apt-get"):
            return f"{program} not found, and there is no apt-get to install {package}"
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        if not self.updated:
            log("running apt-get update")
            subprocess.run(["apt-get", "update"], env=env, capture_output=True, check=False)
            self.updated = True
        log(f"installing {package} with apt-get")
        completed = subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", package],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if completed.returncode != 0 or not shutil.which(program):
            return f"apt-get install {package} failed: {completed.stderr.strip()[-300:]}"
        return None


def log(message: str) -> None:
    print(f"bench/backup.py: {message}", file=sys.stderr, flush=True)


def raidd_reason(command: list[str]) -> str | None:
    """Return why this raidd cannot run the benchmark, or None when it can."""
    for subcommand in ("create", "backup", "restore"):
        completed = subprocess.run(
            [*command, subcommand, "--help"], capture_output=True, text=True, check=False
        )
        if completed.returncode != 0:
            last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
            log(f"raidd {subcommand} --help exited with {completed.returncode}: {last}")
            if "invalid choice" in last:
                return f"this raidd has no `{subcommand}` command"
            return f"`raidd {subcommand} --help` failed: {last[:200]}"
    return None


def compile_bytecode() -> None:
    """Compile raidd's modules to bytecode, as installing a package does.

    The repository's editable install has none, and with
    PYTHONDONTWRITEBYTECODE set (as in some CI and container environments)
    Python would compile every module again at each start: 0.18 s of a
    no-change backup's 0.88 s on the benchmark machine (cProfile,
    `builtins.compile`). `compileall` writes the files even then.
    """
    packages = [str(REPOSITORY / name) for name in ("raidd", "crypto", "parity")]
    run_checked([sys.executable, "-m", "compileall", "-q", *packages])


def make_tools(args: argparse.Namespace, workdir: Path, data: Path) -> list[Tool | ToolRecord]:
    """Return a Tool for each program that can run, else a ToolRecord with the reason."""
    installer = Installer(allowed=not args.no_install)
    tools: list[Tool | ToolRecord] = []
    raidd_command = args.raidd or [sys.executable, "-m", "raidd.cli"]
    if not args.raidd:
        compile_bytecode()
    reason = raidd_reason(raidd_command)
    if reason:
        version = command_output([*raidd_command, "--version"])
        tools.append(ToolRecord("raidd", version=version, reason=reason))
    else:
        tools.append(Raidd(workdir / "raidd", data, raidd_command, args.member_size))
    for tool_class, package in ((Restic, "restic"), (Borg, "borgbackup")):
        reason = installer.ensure(package, tool_class.name)
        if reason:
            tools.append(ToolRecord(tool_class.name, reason=reason))
        else:
            tools.append(tool_class(workdir / tool_class.name, data))
    return tools


def version_of(tool: Tool) -> str:
    if isinstance(tool, Raidd):
        return command_output([*tool.command, "--version"])
    if isinstance(tool, Restic):
        return command_output(["restic", "version"])
    return command_output(["borg", "--version"])


def timed(record: ToolRecord, step: str, action: object, drop: bool) -> Measurement | None:
    """Run one timed step and record it; a failure marks the step and returns None."""
    if record.steps[step].error:
        return None
    if drop:
        drop_page_caches()
    try:
        measurement = action()  # type: ignore[operator]
    except StepFailed as error:
        record.steps[step].error = str(error)
        log(f"{record.name} {step} failed: {error}")
        return None
    record.steps[step].add(measurement)
    log(
        f"{record.name} {step}: {measurement.seconds:.2f} s, CPU {measurement.cpu_seconds:.2f} s, "
        f"{measurement.peak_rss / MIB:.0f} MiB"
    )
    return measurement


def run_repetition(
    tools: list[Tool],
    records: dict[str, ToolRecord],
    paths: dict[str, Path],
    args: argparse.Namespace,
) -> None:
    data = paths["data"]
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(paths["pristine"], data, symlinks=True)
    drop = not args.no_drop_caches
    live = []
    for tool in tools:
        record = records[tool.name]
        try:
            tool.reset()
        except StepFailed as error:
            for step in STEPS:
                record.steps[step].error = f"setup failed: {error}"
            log(f"{tool.name} setup failed: {error}")
            continue
        live.append(tool)
        before = tool.repository_bytes()
        measurement = timed(record, "first backup", tool.backup, drop)
        if measurement is not None:
            try:
                record.stored_by_first.append(tool.stored_bytes(before, measurement)[0])
            except StepFailed as error:
                log(f"{tool.name} first backup: bytes stored unknown: {error}")
        timed(record, "no-change backup", tool.backup, drop)
    run_checked([sys.executable, str(args.dataset_tool), "mutate", str(data)])
    for tool in live:
        record = records[tool.name]
        before = tool.repository_bytes()
        measurement = timed(record, "backup after mutate", tool.backup, drop)
        if measurement is None:
            continue
        record.growth_after_mutate.append(tool.repository_bytes() - before)
        try:
            stored, record.stored_source = tool.stored_bytes(before, measurement)
        except StepFailed as error:
            record.stored_source = f"not available: {error}"
            continue
        record.stored_after_mutate.append(stored)
    for tool in live:
        target = paths["work"] / f"restore-{tool.name}"
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()

        def restore_and_verify(tool: Tool = tool, target: Path = target) -> Measurement:
            measurement, root = tool.restore(target)
            problems = compare_trees(data, root)
            if problems:
                raise StepFailed(
                    f"restored tree differs in {len(problems)} entries: {'; '.join(problems[:3])}"
                )
            return measurement

        timed(records[tool.name], "full restore", restore_and_verify, drop)
        shutil.rmtree(target, ignore_errors=True)


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--workdir",
        type=Path,
        default=Path("/tmp"),
        help="directory to create the work directory in, on the disk to measure (default /tmp)",
    )
    parser.add_argument(
        "--dataset-tool", type=Path, default=DATASET_TOOL, help="path of make-crm-dataset"
    )
    parser.add_argument("--repeat", type=int, default=2, help="repetitions per step (default 2)")
    parser.add_argument(
        "--member-size",
        default="512MiB",
        help="size of each of raidd's four image files (default 512MiB)",
    )
    parser.add_argument(
        "--raidd",
        nargs="+",
        help="command that runs raidd (default: this Python's `-m raidd.cli`)",
    )
    parser.add_argument("--no-install", action="store_true", help="never run apt-get")
    parser.add_argument(
        "--no-drop-caches", action="store_true", help="keep the page cache between steps"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--json-file", type=Path, help="also write the results as JSON to this file"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat {args.repeat} is invalid: give 1 or more")
    if not args.dataset_tool.exists():
        parser.error(f"dataset tool {args.dataset_tool} not found: pass --dataset-tool PATH")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_arguments(argv)
    args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-backup-", dir=args.workdir))
    try:
        return run(args, workdir)
    finally:
        if args.keep:
            log(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run(args: argparse.Namespace, workdir: Path) -> int:
    paths = {"work": workdir, "pristine": workdir / "pristine", "data": workdir / "data"}
    log(f"building the dataset in {paths['pristine']}")
    run_checked(
        [sys.executable, str(args.dataset_tool), "build", str(paths["pristine"]), *BUILD_ARGUMENTS]
    )
    dataset_bytes, dataset_files = tree_size(paths["pristine"])
    log(f"dataset: {dataset_bytes / 1e6:.1f} MB in {dataset_files} files")
    candidates = make_tools(args, workdir, paths["data"])
    tools = [tool for tool in candidates if isinstance(tool, Tool)]
    records = {}
    for item in candidates:
        if isinstance(item, ToolRecord):
            log(f"{item.name} skipped: not available: {item.reason}")
            records[item.name] = item
        else:
            records[item.name] = ToolRecord(item.name, version=version_of(item))
    can_drop = not args.no_drop_caches and drop_page_caches()
    if not args.no_drop_caches and not can_drop:
        log("the page cache cannot be dropped (not root): every step runs with a warm cache")
        args.no_drop_caches = True
    machine = machine_info(workdir)
    for repetition in range(args.repeat):
        log(f"repetition {repetition + 1} of {args.repeat}")
        run_repetition(tools, records, paths, args)
    machine["load_average_after"] = os.getloadavg()
    report = build_report(
        records,
        machine,
        {
            "command": " ".join(sys.argv),
            "dataset": {"bytes": dataset_bytes, "files": dataset_files, "build": BUILD_ARGUMENTS},
            "repeat": args.repeat,
            "page_cache_dropped": can_drop,
            "timed_steps_end_with_syncfs": True,
        },
    )
    report["targets"] = targets(records, dataset_bytes)
    if args.json_file:
        args.json_file.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        print_report(report, records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
