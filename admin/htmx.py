"""htmx 4 request helpers.

htmx 4 sends ``HX-Request: true`` on every request it makes, ``HX-Boosted: true`` for
boosted links and forms, ``HX-Request-Type: full`` when the target is ``<body>`` (or the
response will be cut down with ``hx-select``), and ``HX-History-Restore-Request: true``
when it reloads a page for the back button. Only the remaining requests want a fragment.
"""

from __future__ import annotations

from flask import request


def is_htmx() -> bool:
    """The request was made by htmx (any kind)."""
    return request.headers.get("HX-Request") == "true"


def is_partial() -> bool:
    """Render just the fragment: an htmx request that is not boosted, not a history
    restore and not targeting the whole page."""
    h = request.headers
    return (
        is_htmx()
        and h.get("HX-Boosted") != "true"
        and h.get("HX-History-Restore-Request") != "true"
        and h.get("HX-Request-Type") != "full"
    )
