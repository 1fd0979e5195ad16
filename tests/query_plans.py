"""The query plans of what a list view runs: which index each statement reads.

``plans_of(call)`` runs ``call()`` and returns each SELECT it sent with SQLite's ``EXPLAIN QUERY PLAN`` of that
statement with the same parameters. A test's few rows have no statistics (no ``ANALYZE``), as on a fresh install,
so SQLite plans by its rules, which these tests pin. PostgreSQL plans by costs, and on a test's few rows reads
whatever is cheapest there; bench/list_statements.py prints both databases' plans on a large organisation's data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import event, text

from admin.extensions import db


@dataclass
class Plan:
    sql: str
    plan: str

    def __str__(self) -> str:
        return f"{' '.join(self.sql.split())[:300]}\n  -> {self.plan}"


def plans_of(call: Callable[[], object]) -> list[Plan]:
    """Every SELECT ``call()`` runs, with its plan (one line, steps joined by " | ")."""
    seen: list[tuple[str, object]] = []

    def note(conn, cursor, statement, params, context, executemany):
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, params))

    db.session.execute(text("ANALYZE sqlite_schema"))  # this connection plans with the statistics there are
    event.listen(db.engine, "before_cursor_execute", note)
    try:
        call()
    finally:
        event.remove(db.engine, "before_cursor_execute", note)
    raw = db.session.connection().connection.driver_connection
    out = []
    for sql, params in seen:
        rows = raw.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()
        out.append(Plan(sql, " | ".join(str(r[-1]) for r in rows)))
    db.session.rollback()
    return out


def analyze() -> None:
    """Gather the planner's statistics (``ANALYZE``) for the rows a test made (``plans_of`` has the connection it
    plans on read them)."""
    db.session.commit()
    db.session.execute(text("ANALYZE"))
    db.session.commit()


def recreate_last(*names: str) -> None:
    """Make the indexes ``names`` again, in that order, after every other: the order a migration made them in.
    Of two indexes that serve a statement equally well by its equality columns, SQLite 3.40 plans with the one made
    last, and ``create_all`` makes a table's indexes in no fixed order."""
    for name in names:
        sql = db.session.execute(
            text("SELECT sql FROM sqlite_master WHERE name = :n"), {"n": name}
        ).scalar_one()
        db.session.execute(text(f"DROP INDEX {name}"))
        db.session.execute(text(sql))
    db.session.commit()


def statement(plans: list[Plan], *words: str) -> Plan:
    """The one statement whose SQL holds every word of ``words``."""
    found = [p for p in plans if all(w in " ".join(p.sql.split()) for w in words)]
    assert len(found) == 1, f"{len(found)} statements hold {words}:\n" + "\n".join(map(str, plans))
    return found[0]
