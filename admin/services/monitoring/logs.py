"""Structured logs: with ``PAYDESK_LOG_FORMAT=json`` every log line is one JSON object on stderr.

Besides paydesk's usual messages, JSON mode writes one line per HTTP request (logger ``paydesk.requests``:
method, path without its query string, status, duration, request id, client address, and where they apply
the processor, the stored event's id and the Stripe request ids) and one per processed event (logger
``paydesk.events``: event id, type, processor, status, attempt, duration, Stripe request ids). In the default
text mode those two loggers are silent (gunicorn's access log covers requests).

Never in a line: secrets, card numbers, donor emails, whole webhook bodies. The fields above are chosen
not to carry them, and :func:`redact` masks what a message could still carry (an email address, a long run
of digits that could be a card number, a Stripe secret key or webhook secret) in every line.

Request ids: the client's ``X-Request-ID`` when it is a plain token (letters, digits, ``._-``, at most 64),
else a new one; answered in the response's ``X-Request-ID``.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from datetime import UTC, datetime

from flask import Flask, g, has_request_context, request

REQUESTS = logging.getLogger("paydesk.requests")
EVENTS = logging.getLogger("paydesk.events")
FIELDS = "paydesk"  # the LogRecord attribute holding a line's structured fields (``extra={FIELDS: {...}}``)

_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)+")
_CARD = re.compile(r"(?<![\w.])\d(?:[ \-]?\d){12,18}(?![\w.])")
_SECRET = re.compile(r"\b((?:sk|rk)_(?:live|test)_|whsec_)[A-Za-z0-9]+")
_TOKEN = re.compile(r"\b(pdk_)[A-Za-z0-9_\-]+")  # paydesk API tokens (``settings.tokens``: pdk_ + urlsafe)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._\-]{1,64}")


def redact(text: str) -> str:
    """``text`` with email addresses, card-like numbers, Stripe secrets and paydesk API tokens masked."""
    text = _SECRET.sub(lambda m: m.group(1) + "[redacted]", text)
    text = _TOKEN.sub(lambda m: m.group(1) + "[redacted]", text)
    text = _EMAIL.sub("[email]", text)
    return _CARD.sub("[number]", text)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the record's structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        out = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            out.update({k: v for k, v in fields.items() if v is not None and k not in out})
        if "request_id" not in out and has_request_context() and g.get("request_id"):
            out["request_id"] = g.request_id
        if record.exc_info:
            out["exception"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exception"] = redact(record.exc_text)
        return json.dumps(out, default=str, ensure_ascii=False)


def json_logs(app: Flask) -> bool:
    return str(app.config.get("LOG_FORMAT") or "text").lower() == "json"


def configure(app: Flask) -> None:
    """JSON mode: one root handler on stderr writing :class:`JsonFormatter` lines (replacing a text one set up
    by paydesk before), the request and event loggers at INFO. Text mode: those two loggers silent."""
    root = logging.getLogger()
    if not json_logs(app):
        for logger in (REQUESTS, EVENTS):
            logger.setLevel(logging.WARNING)
        return
    if not any(getattr(h, "_paydesk_json", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JsonFormatter())
        handler._paydesk_json = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        if root.level == logging.NOTSET or root.level > logging.WARNING:
            root.setLevel(logging.WARNING)
    for logger in (REQUESTS, EVENTS):
        logger.setLevel(logging.INFO)


def init_app(app: Flask) -> None:
    """Request ids on every request; in JSON mode, one log line per request."""

    @app.before_request
    def _start() -> None:
        given = request.headers.get("X-Request-ID", "")
        g.request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        g.request_started = time.perf_counter()

    @app.after_request
    def _finish(response):
        rid = g.get("request_id")
        if rid:
            response.headers["X-Request-ID"] = rid
        if REQUESTS.isEnabledFor(logging.INFO):
            started = g.get("request_started")
            fields = {
                "request_id": rid,
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1) if started else None,
                "client": request.remote_addr,
                "processor": (request.view_args or {}).get("ppid"),
                "event_id": g.get("event_id"),
                "stripe_request_ids": g.get("stripe_request_ids") or None,
            }
            REQUESTS.info(
                "%s %s %s", request.method, request.path, response.status_code, extra={FIELDS: fields}
            )
        return response


def stripe_request_seen(request_id: str | None) -> None:
    """The gateway's observer calls this: a Stripe request id made while serving this request."""
    if request_id and has_request_context():
        g.setdefault("stripe_request_ids", []).append(request_id)


def event_processed(
    *,
    row_id: int,
    event_id: str,
    event_type: str,
    processor_id: int,
    status: str,
    attempt: int,
    seconds: float,
    request_ids: list[str],
    worker: str,
    actor: str | None,
    error: str | None,
) -> None:
    if not EVENTS.isEnabledFor(logging.INFO):
        return
    fields = {
        "event_id": event_id,
        "event_row_id": row_id,
        "event_type": event_type,
        "processor": processor_id,
        "status": status,
        "attempt": attempt,
        "duration_ms": round(seconds * 1000, 1),
        "worker": worker,
        "actor": actor,
        "stripe_request_ids": list(dict.fromkeys(request_ids)) or None,
        "error": redact(error)[:500] if error else None,
    }
    EVENTS.info("event %s (%s) %s", event_id, event_type, status, extra={FIELDS: fields})
