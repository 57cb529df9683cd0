"""Audit helpers without a daemon: result summaries, path resolution and raidctl's lines."""

from __future__ import annotations

import pytest

from raidd.ctl.audit import describe_report, record_line
from raidd.daemon.audit import summarize
from raidd.errors import UsageError
from raidd.store.audit import resolve_path

ROOTS = {"data": "/srv/crm/data", "mail": "/srv/mail"}


def test_summarize_keeps_scalars_and_counts_lists() -> None:
    ls = {"commit": 4, "entries": [{"path": "secret.csv"}], "truncated": False}
    assert summarize(ls) == {"ok": True, "commit": 4, "entries_count": 1, "truncated": False}
    fail = {"member": {"path": "/dev/loop3", "errors": {"read": 1}}, "state": "degraded"}
    assert summarize(fail) == {"ok": True, "member": {"path": "/dev/loop3"}, "state": "degraded"}
    assert summarize([1, 2, 3]) == {"ok": True, "count": 3}
    assert summarize(None) == {"ok": True}
    assert summarize({"note": "x" * 500})["note"] == "x" * 200


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("data", ("data", b"")),
        ("data/ledger/a.csv", ("data", b"ledger/a.csv")),
        ("/srv/crm/data/ledger/a.csv", ("data", b"ledger/a.csv")),
        ("/srv/crm/data", ("data", b"")),
        ("/srv/mail/inbox/", ("mail", b"inbox")),
    ],
)
def test_resolve_path_as_restore(path: str, expected: tuple[str, bytes]) -> None:
    assert resolve_path(path, ROOTS) == expected


def test_resolve_path_outside_roots() -> None:
    with pytest.raises(UsageError, match="not a watched root"):
        resolve_path("/etc/passwd", ROOTS)


def test_record_line_and_report() -> None:
    record = {
        "number": 7,
        "time": "2026-12-04T13:20:01.250Z",
        "actor": {"kind": "client", "uid": 1000, "gid": 1000, "pid": 4242},
        "action": "restore",
        "result": {"ok": False, "code": -32001, "message": "(path) is not a watched root"},
    }
    line = record_line(record)
    assert line.startswith("2026-12-04T13:20:01.250Z        #7  uid 1000 pid 4242")
    assert line.endswith("restore            error -32001: (path) is not a watched root")
    pending = {**record, "number": None, "actor": {"kind": "daemon", "uid": 0, "gid": 0, "pid": 1}}
    assert "pending  daemon" in record_line(pending)
    whole = {"ok": True, "records": 9, "objects": 3, "head": "ab" * 32, "pending": 0}
    assert (
        describe_report(whole)
        == "audit chain whole: 9 records in 3 objects, head abababababababab"
    )
    broken = {
        "ok": False,
        "broken": {"position": 1, "object": "cd" * 32, "record": 4, "reason": "does not open"},
    }
    assert describe_report(broken) == (
        "audit chain broken at record 4 (audit object 1, id cdcdcdcdcdcdcdcd): does not open"
    )
