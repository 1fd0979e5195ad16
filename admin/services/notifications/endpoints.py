"""The URLs that receive notifications: registered, rotated and removed by admins (page and CLI alike).

A URL is http(s) and, unless ``NOTIFY_ALLOW_PRIVATE``, reaches only public addresses (never loopback,
private, link-local or reserved ones: paydesk must not be a way into its own network); ``delivery`` checks
the address again at every send. Each URL has its own secret, shown once, kept encrypted
(``admin.crypto``, like processor keys) and shown masked afterwards. Rotating makes a new one; the old one
keeps signing beside it (two ``v1=`` in the header) for ``NOTIFY_ROTATION_HOURS`` so receivers can switch.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import delete, event, select
from sqlalchemy.orm import Session, UOWTransaction

from admin import crypto
from admin.dbutil import immediate
from admin.errors import ServiceError, check_text
from admin.extensions import db
from admin.models import NOTIFICATION_TYPES, NotificationDelivery, NotificationEndpoint
from admin.services.core import audit
from admin.services.notifications import signing
from admin.timeutil import utcnow

MAX_ROTATION_HOURS = 7 * 24

# "No URL wants notifications" is remembered per process and database for NONE_CACHE_SECONDS, so a
# payment's commit does not query notification_endpoint when nobody listens. A URL added in this process
# clears it at once (on flush and on commit); one added by another process is seen within that bound:
# changes committed in those seconds do not notify it. A non-empty answer is never cached (a URL removed
# elsewhere must not get deliveries pointing at a row that is gone).
NONE_CACHE_SECONDS = 5.0
_none_until: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # engine -> monotonic deadline
_none_lock = threading.Lock()


@dataclass
class NewSecret:
    endpoint: NotificationEndpoint
    secret: str  # shown once


def parse_events(events: list[str] | str | None) -> str:
    """ "*" (every type) or the chosen types, comma-separated in their usual order."""
    items = events.split(",") if isinstance(events, str) else list(events or [])
    items = [e.strip() for e in items if e and e.strip()]
    if not items or "*" in items or "all" in items:
        return "*"
    bad = [e for e in items if e not in NOTIFICATION_TYPES]
    if bad:
        raise ServiceError(
            f"{bad[0][:40]!r} is not a notification type: one of {', '.join(NOTIFICATION_TYPES)}",
            field="events",
        )
    chosen = [e for e in NOTIFICATION_TYPES if e in items]
    return "*" if len(chosen) == len(NOTIFICATION_TYPES) else ",".join(chosen)


def _blocked(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


def resolve(url: str) -> tuple[str, int, list[str]]:
    """(host, port, addresses) the URL reaches; a ``ServiceError`` when it may not be used."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ServiceError("the port is not a number between 1 and 65535", field="url") from None
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise ServiceError(f"cannot find the address of {host[:100]!r} ({exc})", field="url") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))  # an IP address (str) for TCP
    if not current_app.config.get("NOTIFY_ALLOW_PRIVATE"):
        bad = [a for a in addresses if _blocked(ipaddress.ip_address(a.split("%")[0]))]
        if bad:
            raise ServiceError(
                f"{host[:100]} is a private, loopback or reserved address ({bad[0]}): paydesk sends "
                "notifications only to public addresses (PAYDESK_NOTIFY_ALLOW_PRIVATE allows others)",
                field="url",
            )
    return host, port, addresses


def check_url(url: str | None) -> str:
    url = check_text(url, "URL", "url")
    if not url:
        raise ServiceError("give the URL that receives notifications", field="url")
    if len(url) > 2048:
        raise ServiceError("at most 2048 characters, please", field="url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServiceError("a web address starting with https:// (or http://)", field="url")
    if parts.username or parts.password:
        raise ServiceError("no user name or password in the URL (it would be shown on pages)", field="url")
    if parts.fragment:
        raise ServiceError("no #fragment: it is never sent", field="url")
    resolve(url)
    return url


def add_endpoint(
    url: str, events: list[str] | str | None = None, description: str | None = None
) -> NewSecret:
    """Register a URL; returns it with its secret (shown once). Commits, audited."""
    url = check_url(url)
    description = check_text(description, "Description", "description") or None
    if description and len(description) > 255:
        raise ServiceError("at most 255 characters, please", field="description")
    chosen = parse_events(events)
    secret = signing.new_secret()
    immediate()
    endpoint = NotificationEndpoint(
        url=url,
        description=description,
        events=chosen,
        secrets=crypto.encrypt_list([secret]),
        secret_hint=crypto.mask(secret),
        created_by=audit.current_actor()[1],
    )
    db.session.add(endpoint)
    db.session.flush()
    audit.record(
        "notification.add",
        object_type="notification_endpoint",
        object_id=str(endpoint.id),
        parameters={"url": url, "events": endpoint.event_list},
        commit=False,
    )
    db.session.commit()
    return NewSecret(endpoint, secret)


def wanting(session: Session) -> list[tuple[int, list[str]]]:
    """(id, event types) of every URL, for queueing a change; [] is cached briefly (``NONE_CACHE_SECONDS``)."""
    engine = session.get_bind()
    now = time.monotonic()
    if _none_until.get(engine, 0.0) > now:
        return []
    rows = session.execute(select(NotificationEndpoint.id, NotificationEndpoint.events)).all()
    if not rows:
        with _none_lock:
            _none_until[engine] = now + NONE_CACHE_SECONDS
    return [(id_, NotificationEndpoint(events=events).event_list) for id_, events in rows]


def forget_cached(*_args) -> None:
    with _none_lock:
        _none_until.clear()


_ENDPOINTS = NotificationEndpoint.__mapper__


def _note_change(session: Session, flush_context: UOWTransaction) -> None:
    if flush_context.mappers.get(_ENDPOINTS):  # this flush writes a URL: added, changed or removed
        forget_cached()
        session.info["paydesk_endpoints_changed"] = True


def _after_commit(session: Session) -> None:
    if session.info.pop("paydesk_endpoints_changed", False):
        forget_cached()  # a read racing the flush may have cached the state before this commit


for _name, _fn in (("after_flush", _note_change), ("after_commit", _after_commit)):
    if not event.contains(Session, _name, _fn):
        event.listen(Session, _name, _fn)


def list_endpoints() -> list[NotificationEndpoint]:
    return list(db.session.scalars(select(NotificationEndpoint).order_by(NotificationEndpoint.id)))


def find_endpoint(ref: int | str) -> NotificationEndpoint:
    text = str(ref).strip()
    endpoint = db.session.get(NotificationEndpoint, int(text)) if text.isdigit() and len(text) < 12 else None
    if endpoint is None:
        err = ServiceError(f"no notification URL {text[:40]!r}", field="endpoint")
        err.not_found = True
        raise err
    return endpoint


def remove_endpoint(ref: int | str) -> NotificationEndpoint:
    """Remove a URL and its history; deliveries still queued for it are not sent. Commits, audited."""
    immediate()
    endpoint = find_endpoint(ref)
    audit.record(
        "notification.remove",
        object_type="notification_endpoint",
        object_id=str(endpoint.id),
        parameters={"url": endpoint.url},
        commit=False,
    )
    db.session.execute(delete(NotificationDelivery).where(NotificationDelivery.endpoint_id == endpoint.id))
    db.session.delete(endpoint)
    db.session.commit()
    return endpoint


def rotate_secret(ref: int | str, keep_old_hours: int | None = None) -> NewSecret:
    """A new secret for the URL (shown once); the current one keeps signing beside it for ``keep_old_hours``
    (default ``NOTIFY_ROTATION_HOURS``; 0: it stops at once). Commits, audited."""
    hours = current_app.config["NOTIFY_ROTATION_HOURS"] if keep_old_hours is None else keep_old_hours
    if not 0 <= hours <= MAX_ROTATION_HOURS:
        raise ServiceError(f"keep the old secret between 0 and {MAX_ROTATION_HOURS} hours", field="hours")
    immediate()
    endpoint = find_endpoint(ref)
    current = crypto.decrypt_list(endpoint.secrets)[0]
    secret = signing.new_secret()
    endpoint.secrets = crypto.encrypt_list([secret, current] if hours else [secret])
    endpoint.previous_hint = endpoint.secret_hint if hours else None
    endpoint.previous_expires_at = utcnow() + timedelta(hours=hours) if hours else None
    endpoint.secret_hint = crypto.mask(secret)
    audit.record(
        "notification.rotate",
        object_type="notification_endpoint",
        object_id=str(endpoint.id),
        parameters={"url": endpoint.url, "old_secret_signs_for_hours": hours},
        commit=False,
    )
    db.session.commit()
    return NewSecret(endpoint, secret)


def signing_secrets(endpoint: NotificationEndpoint, now: datetime | None = None) -> list[str]:
    """The secrets that sign now: the current one, and the previous one until its rotation ends."""
    values = crypto.decrypt_list(endpoint.secrets)
    if len(values) > 1 and (
        endpoint.previous_expires_at is None or endpoint.previous_expires_at <= (now or utcnow())
    ):
        values = values[:1]
    return values


def previous_active(endpoint: NotificationEndpoint, now: datetime | None = None) -> bool:
    return bool(endpoint.previous_expires_at and endpoint.previous_expires_at > (now or utcnow()))
