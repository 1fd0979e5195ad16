"""Liveness, readiness and metrics: ``/healthz``, ``/readyz``, ``/metrics``. No sign-in; ``/metrics`` answers
internal addresses, or a bearer token (``PAYDESK_METRICS_TOKEN``)."""

import hmac
import ipaddress

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import text

from admin.extensions import db
from admin.services.monitoring import health, metrics

bp = Blueprint("health", __name__)

# What "internal" means for /metrics: loopback, the private IPv4 ranges (RFC 1918) and IPv6 unique-local
# addresses. Not Python's is_private, which also takes the documentation ranges (203.0.113.0/24, ...).
INTERNAL_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1/128", "fc00::/7")
)


@bp.get("/healthz")
def healthz():
    try:
        db.session.execute(text("SELECT 1"))
        return jsonify(status="ok", database="ok")
    except Exception as exc:  # the point of a health check is to say so, not to raise
        return jsonify(status="error", database=type(exc).__name__), 503


@bp.get("/readyz")
def readyz():
    """200 when paydesk can do its work (database, schema, queue moving, a worker alive), else 503; each check
    says what it found."""
    ready, checks = health.readiness()
    reasons = [f"{name}: {found}" for name, found in checks.items() if not found.startswith("ok")]
    return jsonify(
        status="ready" if ready else "not ready", checks=checks, reasons=reasons
    ), 200 if ready else 503


def internal_client() -> bool:
    """The client (as ``PAYDESK_TRUSTED_PROXIES`` lets paydesk see it) is on loopback or a private network. A
    request forwarded by a proxy paydesk does not trust for addresses (X-Forwarded-For with
    ``TRUSTED_PROXIES=0``) is not: its peer is the proxy, not the client."""
    if not current_app.config.get("TRUSTED_PROXIES") and request.headers.get("X-Forwarded-For"):
        return False
    try:
        addr = ipaddress.ip_address((request.remote_addr or "").split("%", 1)[0])
    except ValueError:
        return False
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr in net for net in INTERNAL_NETWORKS)


def _token_ok() -> bool:
    token = current_app.config.get("METRICS_TOKEN")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return (
        bool(token)
        and scheme.lower() == "bearer"
        and hmac.compare_digest(given.strip().encode(), str(token).encode())
    )


@bp.get("/metrics")
def prometheus_metrics():
    if not (internal_client() or _token_ok()):
        response = jsonify(
            error="unauthorized",
            message="/metrics needs Authorization: Bearer <PAYDESK_METRICS_TOKEN> "
            "from outside the internal network",
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="paydesk metrics"'
        return response, 401
    body, content_type = metrics.render()
    return Response(body, content_type=content_type)
