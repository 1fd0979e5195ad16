"""Watching paydesk run: the dashboard's counts and charts, the card-testing alarm, Prometheus metrics, structured
logs, health and readiness, the worker's heartbeat."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Request ids and request log lines; Stripe requests counted and their ids kept for the request's line."""
    from admin.services.monitoring import logs, metrics
    from admin.stripe_gateway import observe

    logs.init_app(app)
    observe(metrics.stripe_request)
    observe(_stripe_request_id)


def _stripe_request_id(
    _operation: str, _outcome: str, _seconds: float, _retrying: bool, request_id: str | None
):
    from admin.services.monitoring.logs import stripe_request_seen

    stripe_request_seen(request_id)
