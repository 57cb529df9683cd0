"""The `array_nearly_full` event: emitted when a real backup fills the array past the threshold."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.serve.conftest import wait_for

MiB = 1024 * 1024


def test_nearly_full_event_once_per_crossing(make_daemon, tmp_path: Path) -> None:
    """The event comes once at the crossing, and again only after the level dropped below."""
    hook_output = tmp_path / "hook_output"
    hook = tmp_path / "hook.sh"
    hook.write_text(
        f'#!/bin/sh\nprintf "%s\\n" "$*" >> "{hook_output}.argv"\ncat >> "{hook_output}.jsonl"\n'
    )
    hook.chmod(0o755)
    data = tmp_path / "data"
    data.mkdir()
    daemon = make_daemon(
        events=f'program = ["{hook}", "--from-raidd"]\nfull_threshold = 0.1',
        watch=f'path = "{data}"\n[watch.retention]\nkeep_last = 1',
    )
    daemon.start()

    def nearly_full_records() -> list[dict]:
        if not Path(f"{hook_output}.jsonl").exists():
            return []
        records = [
            json.loads(line) for line in Path(f"{hook_output}.jsonl").read_text().splitlines()
        ]
        return [record for record in records if record["event"] == "array_nearly_full"]

    array = daemon.call("status")["array"]
    assert array["used_fraction"] < 0.1
    # 16 MiB members, less their superblocks and maps, 3 data strips a stripe: 6 MiB of
    # random data is over 10 % of it.
    size = array["size_bytes"]
    assert 40 * MiB < size <= 48 * MiB
    (data / "scan.bin").write_bytes(os.urandom(6 * MiB))
    assert daemon.raidctl("sync").returncode == 0
    [record] = wait_for(nearly_full_records, what="the array_nearly_full event")
    assert record["threshold"] == 0.1
    assert record["used_fraction"] >= 0.1
    # The check may run while the commit is under way, so the count can be
    # short of the whole file: it is only sure to have crossed the threshold.
    assert record["used_bytes"] >= 0.1 * size
    assert record["size_bytes"] == size
    assert "--from-raidd array_nearly_full" in Path(f"{hook_output}.argv").read_text().splitlines()
    status = daemon.raidctl("status")
    assert "space: " in status.stdout
    assert f"MiB used of {size / MiB:.1f} MiB" in status.stdout

    # Still over the threshold: a second backup emits nothing more.
    (data / "note.txt").write_text("still full\n")
    assert daemon.raidctl("sync").returncode == 0
    (data / "scan.bin").unlink()
    assert daemon.raidctl("sync").returncode == 0
    assert daemon.raidctl("forget").returncode == 0
    assert daemon.raidctl("gc").returncode == 0
    wait_for(
        lambda: any(e["event"] == "array_below_full_threshold" for e in daemon.events()),
        what="the fill level to drop below the threshold",
    )
    assert len(nearly_full_records()) == 1
    assert daemon.call("status")["array"]["used_fraction"] < 0.1

    (data / "scan-2.bin").write_bytes(os.urandom(6 * MiB))
    assert daemon.raidctl("sync").returncode == 0
    wait_for(lambda: len(nearly_full_records()) == 2, what="a second array_nearly_full event")
    assert daemon.stop() == 0
