"""The daemon's audit trail: control requests and automatic actions become audit records.

Every control request passes through `AuditTrail.on_request` once its
handler returned or failed (the control server's request observer), with
the caller's SO_PEERCRED credentials. Requests that change state or read
customer data are recorded; status polls, job progress, method listing
and the `audit` method itself are not. Parameters lose their secrets and
their customer paths, which become keyed path hashes. Automatic actions
(member failed, rebuild and scrub started and finished, spare taken,
scheduled retention and gc, daemon start and stop) are recorded with the
daemon as the actor.

Each record goes to the service log too (without paths) and into the
store's pending audit records. They become durable with the next store
commit; when none comes within `COMMIT_DELAY` seconds, the trail's
thread commits them alone. `stop()` commits what is pending before the
store closes.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from raidd.errors import RaiddError, UsageError
from raidd.store.audit import resolve_path
from raidd.store.audit_format import AuditRecord

if TYPE_CHECKING:
    from raidd.control.protocol import RpcError
    from raidd.control.server import Call
    from raidd.daemon.backups import BackupService
    from raidd.store.audit import AuditLog

log = structlog.get_logger(__name__)

# Seconds a record may wait for a backup commit before it is committed alone.
COMMIT_DELAY = 2.0
# Methods that neither change state nor read customer data.
NOT_AUDITED = frozenset(
    {"status", "jobs", "job.progress", "methods", "audit", "limits", "key.list"}
)
# Parameters whose values are never recorded, in any method.
SECRET_PARAMS = frozenset({"passphrase", "keyfile", "key", "secret", "password"})
REMOVED = "(removed)"
PATH_MARK = "(path)"
# Parameters that name customer paths, recorded only as path hashes.
PATH_PARAMS = frozenset({"paths", "root", "prefix", "roots", "path"})
# Result members that list customer paths or their entries; recorded as counts.
PATH_RESULTS = frozenset({"entries", "paths", "written", "unchanged", "conflicts", "lost"})
MAX_TEXT = 200

Roots = Callable[[], Mapping[str, str]]


def summarize(value: Any) -> dict[str, Any]:
    """Reduce a method's result to a small summary without customer paths."""
    if isinstance(value, list):
        return {"ok": True, "count": len(value)}
    if not isinstance(value, dict):
        return {"ok": True}
    summary: dict[str, Any] = {"ok": True}
    for key, item in value.items():
        if key in PATH_RESULTS and isinstance(item, list):
            summary[f"{key}_count"] = len(item)
        elif key in PATH_RESULTS and not isinstance(item, int):
            continue
        elif isinstance(item, list):
            summary[f"{key}_count"] = len(item)
        elif isinstance(item, dict):
            summary[key] = {k: _scalar(v) for k, v in item.items() if _is_scalar(v)}
        elif _is_scalar(item):
            summary[key] = _scalar(item)
    return summary


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _scalar(value: Any) -> Any:
    return value[:MAX_TEXT] if isinstance(value, str) else value


def _bounded(value: Any) -> Any:
    """Return a parameter value as recorded: scalars cut to MAX_TEXT, large lists as a count."""
    if _is_scalar(value):
        return _scalar(value)
    if len(json.dumps(value, default=str)) <= MAX_TEXT:
        return value
    return f"({type(value).__name__} of {len(value)} items, not recorded)"


class AuditTrail:
    """Turns requests and automatic actions into the store's audit records.

    Args:
        backups: the daemon's store service; its store's audit log takes the records.
        roots: returns each watched root's name and path now (they change on reload).
    """

    def __init__(self, backups: BackupService, roots: Roots) -> None:
        self.backups = backups
        self.log: AuditLog = backups.store.audit
        self.roots = roots
        self.daemon_actor = {
            "kind": "daemon",
            "uid": os.getuid(),
            "gid": os.getgid(),
            "pid": os.getpid(),
        }
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="audit-commit", daemon=True)
        self._thread.start()

    # -- recording -------------------------------------------------------------------

    def on_request(self, call: Call, outcome: RpcError | None) -> None:
        """Record one finished control request (the control server's request observer)."""
        # NOTE: no rate limit: a member of the control group adds a record of
        # about 300 sealed bytes on the array with every read request it sends.
        name = call.method.name
        if name in NOT_AUDITED:
            return
        params, raw_paths, hashes = self._split_paths(name, dict(call.request.params))
        if outcome is None:
            result = summarize(call.result)
            if name == "restore":
                # Some paths matched nothing, or files could not be read: the
                # request did not deliver what was asked, although it returned.
                result["ok"] = not (result.get("missing_count") or result.get("lost"))
        else:
            message = outcome.message
            for raw in sorted(raw_paths, key=len, reverse=True):
                message = message.replace(raw, PATH_MARK)
            result = {"ok": False, "code": outcome.code, "message": message[:MAX_TEXT]}
        actor = {"kind": "client", **call.peer.describe()}
        self._add(AuditRecord(time.time_ns(), actor, name, params, result, tuple(hashes)))

    def action(self, action: str, details: Mapping[str, Any] | None = None) -> None:
        """Record an automatic action of the daemon; `details` contains no path or secret."""
        params = {key: _scalar(value) for key, value in (details or {}).items()}
        self._add(AuditRecord(time.time_ns(), dict(self.daemon_actor), action, params))

    def _add(self, record: AuditRecord) -> None:
        try:
            self.log.append(record)
        except (TypeError, ValueError) as error:
            log.error("audit_record_invalid", action=record.action, error=str(error))
            return
        log.info(
            "audit",
            action=record.action,
            actor=record.actor["kind"],
            uid=record.actor["uid"],
            pid=record.actor["pid"],
            ok=record.result.get("ok"),
            code=record.result.get("code"),
            paths=len(record.paths),
        )
        self._wake.set()

    def _split_paths(
        self, method: str, params: dict[str, Any]
    ) -> tuple[dict[str, Any], list[str], list[bytes]]:
        """Return the params to record, the raw path strings and their hashes."""
        raw: list[str] = []
        named: list[tuple[str, bytes]] = []
        roots = self.roots()
        if method == "restore":
            paths = params.get("paths")
            raw = [p for p in paths if isinstance(p, str)] if isinstance(paths, list) else []
            named = [self._locate(p, roots) for p in raw] if raw else [(r, b"") for r in roots]
            # 0 requested paths restore every root; the hashes are in the record's `paths`.
            params = {"path_count": len(raw), "dry_run": False, "overwrite": False, **params}
        elif method == "ls" and isinstance(params.get("root"), str):
            prefix = params.get("prefix") if isinstance(params.get("prefix"), str) else ""
            root = params["root"]
            raw = [root, prefix] if prefix else [root]
            # `root` may be ROOT/PATH or an absolute path, as for restore.
            joined = f"{root.rstrip('/')}/{prefix.strip('/')}" if prefix else root
            named = [self._locate(joined, roots)]
        elif method == "sync":
            requested = params.get("roots")
            if not isinstance(requested, list) or not requested:
                requested = list(roots)
            raw = [r for r in requested if isinstance(r, str)]
            named = [(r, b"") for r in raw]
        recorded: dict[str, Any] = {}
        for key, value in params.items():
            if key in SECRET_PARAMS:
                recorded[key] = REMOVED
            elif key not in PATH_PARAMS:
                recorded[key] = _bounded(value)
        hashes = [self.log.hash_path(root, relative) for root, relative in named]
        return recorded, [text for text in raw if len(text) > 1], hashes

    @staticmethod
    def _locate(path: str, roots: Mapping[str, str]) -> tuple[str, bytes]:
        try:
            return resolve_path(path, roots)
        except UsageError:
            # The request failed on this path; its hash still finds the record.
            return "", os.fsencode(path)

    # -- committing ------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping:
            since = self.log.pending_since()
            if since is None:
                self._wake.wait()
                self._wake.clear()
                continue
            delay = since + COMMIT_DELAY - time.monotonic()
            if delay > 0:
                self._wake.wait(delay)
                self._wake.clear()
                continue
            try:
                committed = self.commit_now()
            except Exception:
                log.exception("audit_commit_crashed")
                committed = False
            if not committed:
                time.sleep(COMMIT_DELAY)  # retry a failed commit later, not at once

    def commit_now(self) -> bool:
        """Commit the pending records alone, if any; return False when the commit failed.

        A failure is logged, and the records stay pending.
        """
        try:
            root = self.backups.locked(lambda store: store.commit_audit())
        except RaiddError as error:
            log.error("audit_commit_failed", error=str(error), pending=len(self.log.pending()))
            return False
        if root is not None:
            log.info("audit_committed", event_counter=self.backups.store.array.event)
        return True

    def stop(self) -> None:
        """Stop the commit thread and commit what is pending; call before the store closes."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout=30)
        self.commit_now()
