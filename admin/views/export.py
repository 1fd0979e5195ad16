"""CSV exports of a list page: exactly the rows its filter matches, streamed as they are read
(keyset chunks), so a 100,000-row export never sits in memory."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from flask import Response, stream_with_context

from admin.money import to_major
from admin.timeutil import utcnow

_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    """A cell as written: empty for None; text a spreadsheet would run as a formula (a donor named
    "=HYPERLINK(...)") gets a leading apostrophe; numbers (-12.50 included) are left alone."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA):
        try:
            float(value)
        except ValueError:
            return "'" + value
    return value


def _lines(
    header: Iterable[str], rows: Iterator[dict[str, Any]], to_row: Callable[[dict], list]
) -> Iterator[str]:
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(list(header))
    n = 0
    for row in rows:
        out.writerow([_cell(v) for v in to_row(row)])
        n += 1
        if n % 500 == 0:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


def csv_response(
    name: str, header: Iterable[str], rows: Iterator[dict[str, Any]], to_row: Callable[[dict], list]
) -> Response:
    """``rows`` (dicts, read lazily) as a CSV download ``<name>-<UTC time>.csv``."""
    filename = f"{name}-{utcnow().strftime('%Y%m%d-%H%M%S')}.csv"
    response = Response(stream_with_context(_lines(header, rows, to_row)), mimetype="text/csv")
    response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def _plain(value: Any) -> Any:
    """A cell for a dict's value: lists as space-separated words, mappings as JSON, the rest as is."""
    if isinstance(value, list | tuple):
        return " ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def filter_csv(
    name: str,
    columns: Sequence[str],
    rows: Iterator[dict[str, Any]],
    *,
    money: Sequence[str] = ("amount",),
    convert: dict[str, Callable[[Any], Any]] | None = None,
) -> Response:
    """The CSV of a list page: ``rows`` (a filter's ``*_rows(flt)``, dicts read lazily) as the named ``columns``;
    the ``money`` columns in major units of the row's ``currency`` (12.50, as staff type them), ``convert``
    for any other column that needs it."""
    convert = convert or {}

    def to_row(d: dict[str, Any]) -> list[Any]:
        out = []
        for c in columns:
            value = d.get(c)
            if c in money and value is not None:
                value = to_major(value, d.get("currency") or "usd")
            elif c in convert:
                value = convert[c](value)
            out.append(_plain(value))
        return out

    return csv_response(name, columns, rows, to_row)
