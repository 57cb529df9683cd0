"""The schema check shared by the local SQLite caches in the state directory."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from raidd.errors import IntegrityError


def check_schema_version(
    db: sqlite3.Connection, version: int, kind: str, path: Path | str
) -> None:
    """Record `version` in a new database's `meta` table, or check an existing one's.

    Raises:
        IntegrityError: the file has another schema version; `db` is closed,
            and the message says to delete the file so it is rebuilt.
    """
    row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None:
        db.execute("INSERT INTO meta (key, value) VALUES ('schema_version', ?)", (str(version),))
    elif int(row[0]) != version:
        db.close()
        raise IntegrityError(
            f"{kind} {str(path)!r} has schema version {row[0]}, this raidd uses {version}: "
            "delete the file and it is rebuilt from the array"
        )
