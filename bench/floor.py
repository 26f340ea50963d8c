"""The SQL floor: apicrud's own SQL statements of an operation, run with the driver alone.

``capture(target, op, ...)`` runs one request of ``op`` through apicrud in this process and
records every statement it sends with its parameters, exactly as SQLAlchemy hands them to
the DBAPI cursor. ``replay(engine, statements, n)`` then sends those statements ``n`` times
on one raw driver connection (sqlite3 or psycopg): reads in autocommit, writes in a
transaction that is rolled back, so every round finds the same rows (the same INSERT id,
the same row version). What a request costs below that is the database's and the
driver's; what it costs above it, in the served figures, is the serving stack's.
"""

from __future__ import annotations

import re
import statistics
import time
from typing import Any

import probe


def capture(t: probe.Target, op: str, ds, st: probe.OpState) -> list[tuple[str, Any, bool]]:
    """(statement, parameters, executemany) of one request of ``op`` on ``t``."""
    from sqlalchemy import event

    seen: list[tuple[str, Any, bool]] = []

    def record(_conn, _cursor, statement, parameters, _context, executemany):
        seen.append((statement, parameters, executemany))

    event.listen(t.engine, "before_cursor_execute", record)
    try:
        probe.run_op(t, op, ds, st)
    finally:
        event.remove(t.engine, "before_cursor_execute", record)
    return seen


_INSERT = re.compile(r"\s*INSERT INTO (\w+) \(([^)]*)\) VALUES \((.*)", re.IGNORECASE | re.DOTALL)
#: a parameter's place in VALUES: psycopg's %(name)s, a named :name, or a positional ?
_PLACE = re.compile(r"%\((\w+)\)s|(?<!:):(\w+)|\?")


def undo_inserts(engine, statements: list[tuple[str, Any, bool]]) -> None:
    """Delete the rows the captured request inserted (committed by apicrud), by id, so
    that the replay's INSERTs find their ids free again."""
    from sqlalchemy import text

    with engine.begin() as conn:
        for statement, params, many in statements:
            m = _INSERT.match(statement)
            columns = [c.strip().lower() for c in m.group(2).split(",")] if m else []
            if "id" not in columns:
                continue
            # the id's parameter: by position, or by the name in its place in VALUES
            # (a statement built with bind parameters names them as it likes)
            place = list(_PLACE.finditer(m.group(3)))[columns.index("id")]
            key = place.group(1) or place.group(2) or "id"
            for p in (params if many else [params]):
                rid = p[key] if isinstance(p, dict) else p[columns.index("id")]
                conn.execute(text(f"DELETE FROM {m.group(1)} WHERE id = :id"), {"id": rid})


def replay(engine, statements: list[tuple[str, Any, bool]], n: int) -> dict[str, float]:
    """Median wall and CPU ms of the statements of one request, sent ``n`` times."""
    writes = any(not s.lstrip().upper().startswith(("SELECT", "WITH", "EXPLAIN"))
                 for s, _, _ in statements)
    raw = engine.raw_connection()
    dbapi = raw.driver_connection
    pg = engine.dialect.name == "postgresql"
    try:
        if pg:
            dbapi.autocommit = not writes
        walls, cpus = [], []
        for _ in range(n):
            w0, c0 = time.perf_counter(), time.process_time()
            cur = dbapi.cursor()
            for statement, params, many in statements:
                if many:
                    cur.executemany(statement, params)
                else:
                    cur.execute(statement, params)
                    if cur.description is not None:
                        cur.fetchall()
            cur.close()
            if writes or not pg:
                dbapi.rollback()
            walls.append((time.perf_counter() - w0) * 1e3)
            cpus.append((time.process_time() - c0) * 1e3)
    finally:
        if pg:
            dbapi.autocommit = False
        raw.close()
    return {"wall_ms": round(statistics.median(walls), 3),
            "cpu_ms": round(statistics.median(cpus), 3), "statements": len(statements),
            "writes": writes}


def measure(t: probe.Target, ds, st: probe.OpState, ops: list[str], n: int) -> dict:
    """{op: replay figures} for apicrud's statements of each operation."""
    out = {}
    for op in ops:
        statements = capture(t, op, ds, st)
        undo_inserts(t.engine, statements)
        out[op] = replay(t.engine, statements, n)
        out[op]["sql"] = [s for s, _, _ in statements]
    return out
