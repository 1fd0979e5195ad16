"""admin.dbutil's readers of numbers typed by people: ASCII digits within bounds, or None."""

from __future__ import annotations

import pytest

from admin.dbutil import MAX_ID, parse_id, parse_whole


@pytest.mark.parametrize(
    "value, expected",
    [
        ("7", 7),
        (" 42 ", 42),
        ("0007", 7),
        (7, 7),
        (str(MAX_ID), MAX_ID),
        ("0", None),
        ("-1", None),
        ("+1", None),
        ("1.5", None),
        ("1e3", None),
        ("", None),
        (None, None),
        ("\u00b2", None),
        ("\u0663", None),
        (str(MAX_ID + 1), None),
        ("3000000000", None),
        ("99999999999999999999", None),
        ("9" * 5000, None),
        (True, None),
        (0, None),
        (MAX_ID + 1, None),
        (7.0, None),
    ],
)
def test_parse_id_takes_ascii_digits_that_fit_an_id_column(value, expected):
    assert parse_id(value) == expected


def test_parse_whole_has_its_own_bounds():
    assert (
        parse_whole("0", 0, 10) == 0 and parse_whole("10", 0, 10) == 10 and parse_whole("11", 0, 10) is None
    )
    assert parse_whole("5", 6, 10) is None and parse_whole("1000000", 1, 1_000_000) == 1_000_000
    assert (
        parse_whole(str(2**63 - 1), 1, 2**63 - 1) == 2**63 - 1
        and parse_whole(str(2**63), 1, 2**63 - 1) is None
    )


def test_sqlite_planner_statistics_are_refreshed_once_a_day_by_housekeeping(app):
    """Without ANALYZE, SQLite cannot tell which index narrows a list page filtered by processor (it then
    sorts all of that processor's rows): the worker's housekeeping runs it, at most once a day per process."""
    from sqlalchemy import text

    from admin.dbutil import STATISTICS_SECONDS, _statistics_at, refresh_statistics
    from admin.extensions import db
    from admin.worker.loop import housekeeping

    if db.engine.dialect.name != "sqlite":
        assert refresh_statistics() is False  # PostgreSQL's autovacuum keeps its own
        return
    _statistics_at.clear()
    stats = "SELECT count(*) FROM sqlite_master WHERE name = 'sqlite_stat1'"
    assert db.session.execute(text(stats)).scalar() == 0
    housekeeping()
    assert db.session.execute(text(stats)).scalar() == 1
    assert refresh_statistics() is False  # ran a moment ago
    later = max(_statistics_at.values()) + STATISTICS_SECONDS + 1
    assert refresh_statistics(now=later) is True
