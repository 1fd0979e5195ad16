"""The Stripe account's webhook endpoints, as a processor's admin sees them: which one points at this paydesk
(``/webhooks/stripe/<ppid>``) and which recommended event types it lacks; create one with the recommended
types (its signing secret stored beside the processor's old ones, so a rotation drops no event), disable,
enable or delete one. Every change goes through the gateway and is audited with Stripe's request id."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from flask import current_app, has_request_context, url_for

from admin.dbutil import immediate
from admin.errors import ServiceError, stripe_failure
from admin.extensions import db
from admin.models import PaymentProcessor
from admin.services.core import audit
from admin.services.core.idempotency import idempotency_key
from admin.services.settings import processors
from admin.stripe_event_types import RECOMMENDED
from admin.stripe_gateway import GatewayError

ENDPOINT_ID = re.compile(r"we_[A-Za-z0-9_]{1,250}")


@dataclass
class Endpoint:
    id: str
    url: str
    status: str
    enabled_events: list[str]
    description: str | None
    created: int | None
    ours: bool  # points at this paydesk's address for this processor
    missing: list[str] = field(default_factory=list)  # recommended types it is not sent

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "url": self.url,
            "status": self.status,
            "ours": self.ours,
            "enabled_events": self.enabled_events,
            "missing": self.missing,
            "description": self.description,
            "created": self.created,
        }


@dataclass
class Endpoints:
    rows: list[Endpoint]
    our_url: str
    request_id: str | None

    @property
    def ours(self) -> list[Endpoint]:
        return [e for e in self.rows if e.ours]


def our_path(proc: PaymentProcessor) -> str:
    if has_request_context():
        return url_for("webhooks.receive", ppid=proc.id)
    with current_app.test_request_context():
        return url_for("webhooks.receive", ppid=proc.id)


def our_url(proc: PaymentProcessor) -> str:
    """Where Stripe should send this processor's events: ``BASE_URL`` + ``/webhooks/stripe/<ppid>``."""
    return current_app.config["BASE_URL"].rstrip("/") + our_path(proc)


def _endpoint(proc: PaymentProcessor, data: dict) -> Endpoint:
    events = list(data.get("enabled_events") or [])
    ours = urlsplit(data.get("url") or "").path.rstrip("/") == our_path(proc)
    missing = [] if "*" in events else [t for t in RECOMMENDED if t not in events]
    return Endpoint(
        id=data["id"],
        url=data.get("url") or "",
        status=data.get("status") or "enabled",
        enabled_events=events,
        description=data.get("description"),
        created=data.get("created"),
        ours=ours,
        missing=missing,
    )


def list_endpoints(proc: PaymentProcessor) -> Endpoints:
    """The account's endpoints (Stripe allows 16, so one page of 100 holds them all), ours first."""
    try:
        page = processors.gateway(proc).list("webhook_endpoints", limit=100)
    except GatewayError as err:
        raise stripe_failure(err, "webhook endpoint list", with_request=True) from None
    rows = [_endpoint(proc, d) for d in page.get("data") or []]
    rows.sort(key=lambda e: (not e.ours, -(e.created or 0)))
    return Endpoints(rows=rows, our_url=our_url(proc), request_id=page.request_id)


def check_endpoint_id(endpoint_id: str) -> str:
    endpoint_id = (endpoint_id or "").strip()
    if not ENDPOINT_ID.fullmatch(endpoint_id):
        raise ServiceError(
            f"{endpoint_id[:60]!r} is not a webhook endpoint id (they start with we_)", field="endpoint"
        )
    return endpoint_id


def _host_port(parts) -> tuple[str, int | None]:
    """A parsed address's host (lower case) and port (the scheme's own when left out)."""
    try:
        port = parts.port
    except ValueError:
        port = -1  # a port that is not a number: matches nothing
    if port is None:
        port = {"http": 80, "https": 443}.get(parts.scheme)
    return (parts.hostname or "").lower().rstrip("."), port


def _check_url(proc: PaymentProcessor, url: str | None) -> str:
    url = (url or "").strip() or our_url(proc)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or len(url) > 2048:
        raise ServiceError(f"{url[:80]!r} is not a web address (https://...)", field="url")
    if proc.livemode and parts.scheme != "https":
        raise ServiceError("Stripe sends live events only to https:// addresses", field="url")
    base = urlsplit(current_app.config["BASE_URL"])
    if parts.username is not None or _host_port(parts) != _host_port(base):
        raise ServiceError(
            f"the address must be on this paydesk's host, {base.netloc} (BASE_URL), so that its events "
            "reach this paydesk and no one else",
            field="url",
        )
    if parts.path.rstrip("/") != our_path(proc):
        raise ServiceError(
            f"the address must end in {our_path(proc)} (this processor's webhook address), so that "
            "paydesk can store its signing secret for it",
            field="url",
        )
    return url


def create_endpoint(
    proc: PaymentProcessor, *, url: str | None = None, action_key: str | None = None
) -> Endpoint:
    """A new endpoint at this paydesk's address with the recommended types; its signing secret is added beside
    the processor's others (events signed with either verify while Stripe switches over)."""
    url = _check_url(proc, url)
    params = {
        "url": url,
        "enabled_events": list(RECOMMENDED),
        "description": f"paydesk ({current_app.config.get('SITE_NAME') or 'paydesk'}), processor {proc.id}",
        "metadata": {"paydesk_ppid": str(proc.id)},
    }
    try:
        created = processors.gateway(proc).create(
            "webhook_endpoints",
            params,
            idempotency_key=idempotency_key("webhook-endpoint", str(proc.id), action_key),
        )
    except GatewayError as err:
        raise audit.stripe_failed(
            "webhook_endpoint.create",
            err,
            processor_id=proc.id,
            object_type="webhook_endpoint",
            parameters={"url": url},
            what="webhook endpoint",
            with_request=True,
        ) from None
    secret = created.get("secret")
    immediate()
    if secret:
        current = list(proc.webhook_secrets)
        if secret not in current:
            proc.webhook_secrets = [*current, secret]
    audit.record(
        "webhook_endpoint.create",
        object_type="webhook_endpoint",
        object_id=created["id"],
        processor_id=proc.id,
        parameters={"url": url, "enabled_events": len(RECOMMENDED), "secret_stored": bool(secret)},
        stripe_request_id=created.request_id,
        commit=False,
    )
    db.session.commit()
    processors.forget_processor_ref(proc.id)
    return _endpoint(proc, created)


def set_disabled(proc: PaymentProcessor, endpoint_id: str, disabled: bool) -> Endpoint:
    endpoint_id = check_endpoint_id(endpoint_id)
    action = "webhook_endpoint.disable" if disabled else "webhook_endpoint.enable"
    try:
        updated = processors.gateway(proc).update("webhook_endpoints", endpoint_id, {"disabled": disabled})
    except GatewayError as err:
        raise audit.stripe_failed(
            action,
            err,
            processor_id=proc.id,
            object_type="webhook_endpoint",
            object_id=endpoint_id,
            what="webhook endpoint",
            with_request=True,
        ) from None
    audit.record(
        action,
        object_type="webhook_endpoint",
        object_id=endpoint_id,
        processor_id=proc.id,
        stripe_request_id=updated.request_id,
        commit=True,
    )
    return _endpoint(proc, updated)


def delete_endpoint(proc: PaymentProcessor, endpoint_id: str) -> str | None:
    """Delete an endpoint in Stripe; returns the request id. Its signing secret stays with the processor
    until an admin removes it (``processor set --remove-webhook-secret``), so events already sent verify."""
    endpoint_id = check_endpoint_id(endpoint_id)
    try:
        gone = processors.gateway(proc).call("webhook_endpoints", "delete", endpoint_id)
    except GatewayError as err:
        raise audit.stripe_failed(
            "webhook_endpoint.delete",
            err,
            processor_id=proc.id,
            object_type="webhook_endpoint",
            object_id=endpoint_id,
            what="webhook endpoint",
            with_request=True,
        ) from None
    audit.record(
        "webhook_endpoint.delete",
        object_type="webhook_endpoint",
        object_id=endpoint_id,
        processor_id=proc.id,
        stripe_request_id=gone.request_id,
        commit=True,
    )
    return gone.request_id
