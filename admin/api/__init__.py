"""``/api/v1``: paydesk's JSON API for other systems (automation tools, a CRM, a website's scripts).

Token-authenticated (``auth``), one error shape (``errors``), inputs validated by pydantic models that also
write the OpenAPI 3.1 document (``spec``, ``schemas``); the routes call the same services and filters as
the pages: ``lists`` (read-only lists), ``actions`` (customers, products), ``payments`` (charge, capture,
refund), ``triggers`` (polling feeds),
``docs`` (the document, and ``/api/docs`` for people).
"""

from __future__ import annotations

from flask import Flask

from admin.api.blueprint import bp, docs_bp

__all__ = ["bp", "docs_bp", "init_app"]


def init_app(app: Flask) -> None:
    from admin.extensions import csrf
    from admin.limiter import init_limiter

    from . import actions, docs, lists, payments, triggers  # noqa: F401  (their routes)
    from .feed import install

    if "paydesk_limiter" not in app.extensions:
        init_limiter(app)
    app.config.setdefault("API_RATE_LIMIT", "100 per 60 seconds")
    # Token-authenticated: no cookie carries these requests, so there is nothing for CSRF to protect. The
    # staff pages (including /settings/tokens) keep their CSRF checks.
    csrf.exempt(bp)
    app.register_blueprint(bp)
    app.register_blueprint(docs_bp)
    install()
