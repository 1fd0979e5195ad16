"""The floor for the ingest benchmark: the least a correct Stripe webhook endpoint can do.

It verifies the ``Stripe-Signature`` header as Stripe documents it
(``v1 = hmac_sha256(secret, f"{t}.{body}")``, 300 s tolerance), parses the
JSON, does ONE ``INSERT ... ON CONFLICT DO NOTHING`` of (event id, type, raw
body) with the raw database driver, and answers 200. No ORM, no processor
lookup, no object ids: whatever paydesk does on top of this is its overhead.

Configured by environment (the benchmark creates the ``floor_event`` table):

    FLOOR_DATABASE_URL   sqlite:////abs/path.sqlite3 or postgresql://...
    FLOOR_WEBHOOK_SECRET whsec_...

    gunicorn -w 2 -b 127.0.0.1:8000 --chdir bench floor_app:app
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
import threading
import time

from flask import Flask, jsonify, request

DATABASE_URL = os.environ.get("FLOOR_DATABASE_URL", "")
SECRET = os.environ.get("FLOOR_WEBHOOK_SECRET", "").encode()
TOLERANCE = 300
MAX_BYTES = 1024 * 1024

SQLITE_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS floor_event (id INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE, "
    "type TEXT NOT NULL, raw TEXT NOT NULL)"
)
PG_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS floor_event (id BIGSERIAL PRIMARY KEY, event_id VARCHAR(255) NOT NULL UNIQUE, "
    "type VARCHAR(100) NOT NULL, raw TEXT NOT NULL)"
)

app = Flask(__name__)
_local = threading.local()


def connect(url: str):
    """A raw DBAPI connection in autocommit mode (SQLite: WAL, synchronous=NORMAL, as paydesk)."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(
            url[len("sqlite:///") :], timeout=30, isolation_level=None, check_same_thread=False
        )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn
    import psycopg

    return psycopg.connect(url, autocommit=True)


def create_schema(url: str) -> None:
    conn = connect(url)
    try:
        conn.execute(SQLITE_SCHEMA if url.startswith("sqlite") else PG_SCHEMA)
    finally:
        conn.close()


def _conn():
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = connect(DATABASE_URL)
    return conn


def _insert_sql() -> str:
    mark = "?" if DATABASE_URL.startswith("sqlite") else "%s"
    return (
        f"INSERT INTO floor_event (event_id, type, raw) VALUES ({mark}, {mark}, {mark}) "
        "ON CONFLICT (event_id) DO NOTHING"
    )


INSERT = _insert_sql()


def verify(body: bytes, header: str | None) -> str | None:
    """None when the header carries a valid, fresh v1 signature of ``body``; else the reason."""
    if not header:
        return "missing Stripe-Signature header"
    ts = None
    sigs = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            ts = value
        elif key == "v1":
            sigs.append(value)
    if ts is None or not ts.isdigit() or not sigs:
        return "malformed Stripe-Signature header"
    if abs(time.time() - int(ts)) > TOLERANCE:
        return "timestamp outside tolerance"
    expected = hmac.new(SECRET, ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, s) for s in sigs):
        return "signature mismatch"
    return None


@app.post("/webhook")
def webhook():
    body = request.get_data()
    if len(body) > MAX_BYTES:
        return jsonify(error="payload too large"), 413
    reason = verify(body, request.headers.get("Stripe-Signature"))
    if reason:
        return jsonify(error=reason), 400
    try:
        event = json.loads(body)
        event_id, event_type = str(event["id"]), str(event["type"])
    except (ValueError, KeyError, TypeError):
        return jsonify(error="not a Stripe event"), 400
    _conn().execute(INSERT, (event_id, event_type, body.decode("utf-8")))
    return jsonify(received=True)
