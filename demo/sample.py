"""Build the demo's sample CRM directory from the Northwind script (standard library only).

The directory contains `crm.db` (customers, orders and order lines in SQLite),
`exports/*.csv` and `attachments/` (the category pictures as JPEG files and
a text invoice per order for a few orders).
"""

from __future__ import annotations

import csv
import filecmp
import os
import sqlite3
from pathlib import Path

NORTHWIND_SQL = Path(__file__).resolve().parent / "northwind" / "create.sql"
TABLES = ("Customers", "Orders", "Order Details")
INVOICES = 5


def build(target: Path) -> None:
    """Write the sample CRM directory into `target`, which must not exist yet."""
    source = sqlite3.connect(":memory:")
    # executescript discards the rows of the SELECT statements the script also contains.
    source.executescript(NORTHWIND_SQL.read_text(encoding="utf-8"))
    (target / "exports").mkdir(parents=True)
    (target / "attachments" / "categories").mkdir(parents=True)
    (target / "attachments" / "invoices").mkdir(parents=True)
    _write_database(source, target / "crm.db")
    for table in ("Customers", "Orders"):
        _write_csv(source, table, target / "exports" / f"{table.lower()}.csv")
    for name, picture in source.execute("SELECT CategoryName, Picture FROM Categories"):
        file_name = name.lower().replace("/", "-").replace(" ", "-") + ".jpg"
        (target / "attachments" / "categories" / file_name).write_bytes(picture)
    _write_invoices(source, target / "attachments" / "invoices")
    source.close()


def _write_database(source: sqlite3.Connection, path: Path) -> None:
    database = sqlite3.connect(path)
    with database:
        for table in TABLES:
            (schema,) = source.execute(
                "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
            ).fetchone()
            database.execute(schema)
            rows = source.execute(f"SELECT * FROM [{table}]").fetchall()
            marks = ", ".join("?" * len(rows[0]))
            database.executemany(f"INSERT INTO [{table}] VALUES ({marks})", rows)
    database.close()


def _write_csv(source: sqlite3.Connection, table: str, path: Path) -> None:
    cursor = source.execute(f"SELECT * FROM [{table}]")
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(column[0] for column in cursor.description)
        writer.writerows(cursor)


def _write_invoices(source: sqlite3.Connection, directory: Path) -> None:
    orders = source.execute(
        "SELECT OrderID, CustomerID, OrderDate FROM Orders ORDER BY OrderID LIMIT ?", (INVOICES,)
    ).fetchall()
    for order_id, customer, date in orders:
        lines = [f"Invoice for order {order_id}", f"Customer: {customer}", f"Date: {date}", ""]
        total = 0.0
        for product, price, quantity, discount in source.execute(
            "SELECT p.ProductName, d.UnitPrice, d.Quantity, d.Discount "
            "FROM [Order Details] d JOIN Products p ON p.ProductID = d.ProductID "
            "WHERE d.OrderID = ?",
            (order_id,),
        ):
            amount = float(price) * quantity * (1 - float(discount))
            total += amount
            lines.append(f"{quantity:>4} x {product:<40} {amount:>10.2f}")
        lines.append(f"{'total':>47} {total:>10.2f}")
        (directory / f"order-{order_id}.txt").write_text("\n".join(lines) + "\n")


def sql_dump(path: Path) -> list[str]:
    """Return the SQL dump of a database, the form in which two copies are compared."""
    database = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(database.iterdump())
    finally:
        database.close()


def compare_trees(expected: Path, actual: Path) -> list[str]:
    """Return the differences between two CRM directories (empty when they match).

    Files named `*.db` are compared by their SQL dump, every other file by
    content. A file present on one side only is a difference.
    """
    expected_files = _files(expected)
    actual_files = _files(actual)
    problems = [f"missing: {name}" for name in sorted(expected_files - actual_files)]
    problems += [f"unexpected: {name}" for name in sorted(actual_files - expected_files)]
    for name in sorted(expected_files & actual_files):
        if name.endswith(".db"):
            same = sql_dump(expected / name) == sql_dump(actual / name)
        else:
            same = filecmp.cmp(expected / name, actual / name, shallow=False)
        if not same:
            problems.append(f"different content: {name}")
    return problems


def _files(root: Path) -> set[str]:
    return {
        os.path.relpath(os.path.join(directory, name), root)
        for directory, _, names in os.walk(root)
        for name in names
    }
