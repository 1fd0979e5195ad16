"""Sending notifications through the outbox, each URL's history, and resending one by hand.

A change that notifies (``changes``) writes one ``notification_delivery`` per URL that wants it, with the
exact JSON body, and an outbox task of kind ``notification`` — in the transaction of the change. The
worker posts the body with a fresh ``Paydesk-Signature``; any answer but 2xx, or none within
``NOTIFY_TIMEOUT``, is retried with backoff (``NOTIFY_BACKOFF_BASE`` doubling up to ``NOTIFY_BACKOFF_MAX``)
for ``NOTIFY_RETRY_SECONDS`` (three days), then the delivery is failed. A resend queues the same body (same
notification id, so receivers can drop a repeat) for a fresh three days.
"""

from __future__ import annotations

import http.client
import json
import logging
import secrets
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session

from admin.config import VERSION
from admin.dbutil import immediate, parse_id
from admin.errors import ServiceError
from admin.extensions import db
from admin.listing import Filter, Page, keyset_page
from admin.models import (
    EV_ERROR,
    EV_PROCESSING,
    EV_QUEUED,
    EV_SUCCESS,
    NotificationDelivery,
    NotificationEndpoint,
    OutboxTask,
)
from admin.services.core import audit, outbox
from admin.services.notifications import endpoints, signing
from admin.timeutil import to_unix, utcnow

log = logging.getLogger(__name__)

KIND = "notification"
DELIVERY_STATUSES = ("queued", "retrying", "sending", "delivered", "failed")


class DeliveryFailed(ConnectionError):
    """The receiver did not take the notification (an answer other than 2xx, or none): tried again later."""


# -- queueing (inside the transaction of the change) ----------------------------------------


@dataclass
class Change:
    type: str  # one of NOTIFICATION_TYPES
    object_type: str  # "contribution" or "recurring_contribution"
    object_id: int
    processor_id: int | None
    data: dict[str, Any]  # the record as it is now
    previous: dict[str, Any] = field(default_factory=dict)  # the attributes that changed, as they were


def queue(session: Session, changes: Iterable[Change]) -> int:
    """One delivery (and outbox task) per change and URL that wants it; returns how many. Does not commit.
    ``changes`` is read only when a URL wants notifications (and all of it before the first delivery is added)."""
    hooks = endpoints.wanting(session)
    if not hooks:
        return 0
    changes = list(changes)
    made: list[tuple[NotificationDelivery, int | None]] = []
    for change in changes:
        wanted = [id_ for id_, types in hooks if change.type in types]
        if not wanted:
            continue
        nid = "ntf_" + secrets.token_hex(12)
        body = json.dumps(
            {
                "id": nid,
                "object": "notification",
                "type": change.type,
                "created": to_unix(utcnow()),
                "data": {"object": change.data, "previous_attributes": change.previous},
            },
            separators=(",", ":"),
        )
        for endpoint_id in wanted:
            d = NotificationDelivery(
                endpoint_id=endpoint_id,
                notification_id=nid,
                type=change.type,
                object_type=change.object_type,
                object_id=change.object_id,
                body=body,
            )
            session.add(d)
            made.append((d, change.processor_id))
    if not made:
        return 0
    session.flush()
    for d, processor_id in made:
        outbox.enqueue(KIND, str(d.id), {"delivery_id": d.id}, processor_id=processor_id)
    task_ids = dict(
        session.execute(
            select(OutboxTask.key, OutboxTask.id).where(
                OutboxTask.key.in_([f"{KIND}:{d.id}" for d, _ in made])
            )
        ).all()
    )
    for d, _ in made:
        d.task_id = task_ids.get(f"{KIND}:{d.id}")
    return len(made)


# -- sending (the outbox runner) ---------------------------------------------------------------


def _window() -> timedelta:
    return timedelta(seconds=float(current_app.config["NOTIFY_RETRY_SECONDS"]))


def backoff(attempts: int) -> timedelta:
    cfg = current_app.config
    base, most = float(cfg["NOTIFY_BACKOFF_BASE"]), float(cfg["NOTIFY_BACKOFF_MAX"])
    return timedelta(seconds=min(most, base * 2 ** max(0, attempts - 1)))


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the address that was checked, not to whatever the name resolves to a moment later."""

    def __init__(self, host: str, port: int, ip: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float):
        context = ssl.create_default_context()
        super().__init__(host, port, timeout=timeout, context=context)
        self._ip, self._tls = ip, context

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._tls.wrap_socket(sock, server_hostname=self.host)


def post(url: str, body: bytes, headers: dict[str, str]) -> int:
    """POST ``body`` to ``url`` (its address checked again, redirects not followed); the HTTP status."""
    host, port, addresses = endpoints.resolve(url)
    parts = urlsplit(url)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    cls = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
    conn = cls(host, port, addresses[0], float(current_app.config["NOTIFY_TIMEOUT"]))
    try:
        conn.request("POST", path, body=body, headers=headers)
        return conn.getresponse().status  # the body is never read: only the status counts
    finally:
        conn.close()


def _note_attempt(delivery_id: int, code: int | None) -> None:
    immediate()
    db.session.execute(
        update(NotificationDelivery)
        .where(NotificationDelivery.id == delivery_id)
        .values(response_code=code, last_attempt_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    db.session.commit()


@outbox.runner(KIND, retry_for=outbox.RetryFor(window=_window, backoff=backoff))
def _deliver(task: OutboxTask):
    delivery = db.session.get(NotificationDelivery, parse_id((task.payload or {}).get("delivery_id")))
    endpoint = db.session.get(NotificationEndpoint, delivery.endpoint_id) if delivery else None
    if delivery is None or endpoint is None:
        return None  # the URL was removed: nothing to send
    delivery_id, url, body = delivery.id, endpoint.url, delivery.body.encode()
    keys = endpoints.signing_secrets(endpoint)
    db.session.rollback()  # no transaction held open while the receiver answers
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "User-Agent": f"paydesk/{VERSION}",
        signing.HEADER: signing.header(keys, body),
    }
    try:
        code = post(url, body, headers)
    except ServiceError as err:  # the address is not allowed (any more): failed, not retried
        _note_attempt(delivery_id, None)
        raise ServiceError(f"not sent: {err.message}") from None
    except (OSError, http.client.HTTPException) as exc:
        _note_attempt(delivery_id, None)
        raise DeliveryFailed(f"no answer from the receiver ({type(exc).__name__}: {exc})") from None
    if not 200 <= code < 300:
        _note_attempt(delivery_id, code)
        raise DeliveryFailed(f"the receiver answered HTTP {code}")

    def record() -> None:
        now = utcnow()
        db.session.execute(
            update(NotificationDelivery)
            .where(NotificationDelivery.id == delivery_id)
            .values(response_code=code, last_attempt_at=now, delivered_at=now)
            .execution_options(synchronize_session=False)
        )

    return record


# -- history and resending ---------------------------------------------------------------------


# A delivery's status: ``delivered_at`` on the row says delivered (kept there, not only on the outbox task,
# which retention deletes after RETENTION_OUTBOX_DONE); otherwise its task says how far sending has got, and a
# task that finished without delivering, or is gone (retention deletes only finished tasks), means failed.
_UNDELIVERED = NotificationDelivery.delivered_at.is_(None)
_STATUS_WHERE = {
    "queued": and_(_UNDELIVERED, OutboxTask.status == EV_QUEUED, OutboxTask.attempts == 0),
    "retrying": and_(_UNDELIVERED, OutboxTask.status == EV_QUEUED, OutboxTask.attempts > 0),
    "sending": and_(_UNDELIVERED, OutboxTask.status.in_([EV_PROCESSING, outbox.SENDING])),
    "delivered": NotificationDelivery.delivered_at.is_not(None),
    "failed": and_(_UNDELIVERED, or_(OutboxTask.id.is_(None), OutboxTask.status.in_([EV_ERROR, EV_SUCCESS]))),
}


@dataclass
class DeliveryFilter(Filter):
    status: list[str] = field(default_factory=list, metadata={"choices": DELIVERY_STATUSES})


@dataclass
class DeliveryRow:
    delivery: NotificationDelivery
    task: OutboxTask | None

    @property
    def status(self) -> str:
        """As ``_STATUS_WHERE`` has it."""
        t = self.task
        if self.delivery.delivered_at:
            return "delivered"
        if t is None or t.status in (EV_ERROR, EV_SUCCESS):
            return "failed"
        if t.status == EV_QUEUED:
            return "retrying" if t.attempts else "queued"
        return "sending"

    @property
    def attempts(self) -> int:
        return self.task.attempts if self.task else 0

    @property
    def error(self) -> str | None:
        if not self.task or not self.task.last_error or self.status == "delivered":
            return None
        return self.task.last_error.removeprefix("DeliveryFailed: ").removeprefix("ServiceError: ")

    @property
    def next_attempt_at(self):
        return self.task.next_attempt_at if self.task and self.status in ("queued", "retrying") else None

    def as_dict(self) -> dict[str, Any]:
        d = self.delivery
        return {
            "id": d.id,
            "endpoint_id": d.endpoint_id,
            "notification_id": d.notification_id,
            "type": d.type,
            "object_type": d.object_type,
            "object_id": d.object_id,
            "status": self.status,
            "attempts": self.attempts,
            "response_code": d.response_code,
            "last_attempt_at": d.last_attempt_at,
            "delivered_at": d.delivered_at,
            "next_attempt_at": self.next_attempt_at,
            "error": self.error,
            "created_at": d.created_at,
        }


def delivery_page(endpoint_id: int, flt: DeliveryFilter) -> Page:
    q = (
        select(NotificationDelivery, OutboxTask)
        .outerjoin(OutboxTask, OutboxTask.id == NotificationDelivery.task_id)
        .where(NotificationDelivery.endpoint_id == endpoint_id)
    )
    if flt.status:
        q = q.where(or_(*(_STATUS_WHERE[s] for s in flt.status)))
    page = keyset_page(q, [NotificationDelivery.id], flt, key_of=lambda row: [row[0].id], scalars=False)
    page.rows = [DeliveryRow(d, t) for d, t in page.rows]
    return page


def find_delivery(delivery_id: int | str) -> DeliveryRow:
    d = db.session.get(NotificationDelivery, parse_id(delivery_id)) if parse_id(delivery_id) else None
    if d is None:
        err = ServiceError(f"no notification delivery {str(delivery_id)[:40]!r}", field="delivery")
        err.not_found = True
        raise err
    return DeliveryRow(d, db.session.get(OutboxTask, d.task_id) if d.task_id else None)


def resend(delivery_id: int | str) -> DeliveryRow:
    """Send a delivered or failed notification again (same body, new signature), retried for a fresh three
    days. Commits, audited."""
    immediate()
    row = find_delivery(delivery_id)
    d, task = row.delivery, row.task
    if row.status not in ("delivered", "failed"):
        db.session.rollback()
        raise ServiceError(f"this notification is {row.status}: it is sent already, nothing to resend")
    if task is None:  # its task is gone: a new one
        what = f"{d.id}.{to_unix(utcnow())}"
        outbox.enqueue(KIND, what, {"delivery_id": d.id})
        task = db.session.scalars(select(OutboxTask).where(OutboxTask.key == f"{KIND}:{what}")).one()
        d.task_id = task.id
    else:
        outbox.requeue(task)
    d.delivered_at = None
    audit.record(
        "notification.resend",
        object_type="notification_endpoint",
        object_id=str(d.endpoint_id),
        parameters={"delivery": d.id, "notification": d.notification_id, "type": d.type},
        commit=False,
    )
    db.session.commit()
    return DeliveryRow(d, task)
