"""Staff access control and HTTP security headers.

Other code uses:

- ``role_required("viewer" | "operator" | "admin")`` on every staff view; viewer reads,
  operator acts, admin manages processors and users. Signed-out users are sent to the
  sign-in page (htmx requests get ``HX-Redirect``, ``/api/`` gets JSON 401); signed-in
  users below the role get 403.
- ``uses_stripe_js`` on the (few) views whose page loads Stripe.js: only those responses
  allow the ``STRIPE_JS_URL`` origin in the Content-Security-Policy.
- ``public`` marks a state-changing route that is deliberately open to anyone (a donation
  form, say); the test that walks the URL map skips only routes so marked.
- ``endpoint_url(endpoint, **values)``: ``url_for`` when that endpoint exists, else None
  (navigation and dashboard links to pages that later issues add).
- ``limit_body(endpoint, setting)``: a tighter bound on that endpoint's request body than the app's
  ``MAX_CONTENT_LENGTH``, however the body is sent (see :func:`_bound_body`).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, abort, current_app, flash, g, jsonify, make_response, redirect, request, url_for
from flask.sansio.app import App
from flask_login import current_user, login_url

from admin.extensions import login_manager
from admin.htmx import is_htmx
from admin.models import ROLES

JSON_PREFIXES = ("/webhooks/", "/api/")


def wants_json() -> bool:
    """Machine clients (webhooks, the API) get JSON errors instead of HTML pages."""
    return request.path.startswith(JSON_PREFIXES)


# -- roles ------------------------------------------------------------------------


def role_required(role: str) -> Callable:
    """Sign-in required, and ``current_user.can(role)``; 403 otherwise."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")

    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapped(*args: Any, **kwargs: Any):
            if not current_user.is_authenticated:
                return login_manager.unauthorized()
            if not current_user.can(role):
                abort(
                    403, description=f"This needs the {role} role; you are signed in as {current_user.role}."
                )
            return view(*args, **kwargs)

        wrapped.required_role = role  # type: ignore[attr-defined]
        return wrapped

    return decorator


def public(view: Callable) -> Callable:
    """Mark a view as intentionally open to signed-out visitors (e.g. a donation form)."""
    view.public = True  # type: ignore[attr-defined]
    return view


def uses_stripe_js(view: Callable) -> Callable:
    """The page this view renders loads Stripe.js: widen the CSP for this response only."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any):
        g.uses_stripe_js = True
        return view(*args, **kwargs)

    return wrapped


def endpoint_url(endpoint: str, **values: Any) -> str | None:
    """``url_for(endpoint, **values)`` if the endpoint is registered, else None."""
    if endpoint not in current_app.view_functions:
        return None
    return url_for(endpoint, **values)


def _unauthorized():
    if wants_json():
        return jsonify(error="unauthorized", message="Sign in first."), 401
    if is_htmx():
        # After sign-in, come back to the page the fragment was on, not to the fragment.
        page = urlsplit(request.headers.get("HX-Current-URL", ""))
        back = (page.path or "/") + (f"?{page.query}" if page.query else "")
        target = login_url(login_manager.login_view, next_url=back)
        response = make_response("", 401)
        response.headers["HX-Redirect"] = target
        return response
    target = login_url(login_manager.login_view, next_url=_relative_url())
    if g.get("paydesk_session_idle"):
        minutes = int(current_app.config.get("SESSION_IDLE_MINUTES") or 0)
        flash(f"You were signed out after {minutes} minutes without activity. Sign in again.", "info")
    else:
        flash("Please sign in to see that page.", "info")
    return redirect(target)


def _relative_url() -> str:
    return request.full_path.rstrip("?") if request.query_string else request.path


def safe_next(target: str | None, default: str = "/") -> str:
    """``target`` if it points at this site (same host, http/https), as a path; else ``default``."""
    if not target:
        return default
    target = target.strip().replace("\\", "/")
    parts = urlsplit(target)
    if parts.scheme and parts.scheme not in ("http", "https"):
        return default
    if parts.scheme or parts.netloc:
        if parts.netloc != request.host:
            return default
    if not parts.path.startswith("/") or parts.path.startswith("//"):
        return default
    if any(ord(c) < 32 for c in target):
        return default
    return parts.path + (f"?{parts.query}" if parts.query else "")


# -- headers ----------------------------------------------------------------------


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None  # same-origin path: already covered by 'self'
    return f"{parts.scheme}://{parts.netloc}"


def content_security_policy(stripe: bool = False) -> str:
    """The CSP header, built once per app and Stripe flag (it is sent on every response)."""
    cache: dict[tuple, str] = current_app.extensions.setdefault("paydesk_csp", {})
    key = (stripe, current_app.config.get("STRIPE_JS_URL"))
    if key not in cache:
        cache[key] = _build_csp(stripe)
    return cache[key]


def _build_csp(stripe: bool) -> str:
    script = ["'self'"]
    frame = ["'none'"]
    connect = ["'self'"]
    if stripe:
        origin = _origin(current_app.config.get("STRIPE_JS_URL"))
        frame = ["'self'"]
        if origin:
            script.append(origin)
            frame.append(origin)
            connect.append(origin)
        if origin == "https://js.stripe.com":
            frame.append("https://hooks.stripe.com")
            connect.append("https://api.stripe.com")
    directives = {
        "default-src": ["'self'"],
        "script-src": script,
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "connect-src": connect,
        "frame-src": frame,
        "object-src": ["'none'"],
        "base-uri": ["'none'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
    }
    return "; ".join(f"{k} {' '.join(v)}" for k, v in directives.items())


def _set_security_headers(response):
    h = response.headers
    h["Content-Security-Policy"] = content_security_policy(stripe=bool(g.get("uses_stripe_js")))
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    h.setdefault("Cross-Origin-Opener-Policy", "same-origin")
    if current_app.config.get("SESSION_COOKIE_SECURE"):
        h.setdefault("Strict-Transport-Security", "max-age=31536000")
    if request.endpoint != "static" and getattr(current_user, "is_authenticated", False):
        h.setdefault("Cache-Control", "no-store")  # staff pages hold donor data
    return response


def _fresh_request_state() -> None:
    """Per-request flags live on ``g``; a request inside an app context that is already
    pushed (tests hold one) shares that ``g``, so start each request clean."""
    for name in (
        "_login_user",
        "csrf_valid",
        "paydesk_session_id",
        "paydesk_session_idle",
        current_app.config.get("WTF_CSRF_FIELD_NAME", "csrf_token"),
    ):
        g.pop(name, None)  # Flask-Login's user cache, Flask-WTF's token cache and verdict
    g.uses_stripe_js = False


def session_identifier() -> str:
    """What a session is bound to ("strong" protection): the client address and browser.

    Flask-Login's own version reads ``X-Forwarded-For`` straight from the request, so anyone
    replaying a stolen cookie could claim the victim's address in that header. This one uses
    ``request.remote_addr`` only, which ProxyFix has corrected for exactly the configured
    number of trusted proxies (``PAYDESK_TRUSTED_PROXIES``) and no more.
    """
    from hashlib import sha512

    agent = request.headers.get("User-Agent", "")
    return sha512(f"{request.remote_addr}|{agent}".encode("utf-8", "replace")).hexdigest()


# -- request bodies ----------------------------------------------------------------------


def limit_body(app: App, endpoint: str, setting: str) -> None:
    """Bound ``endpoint``'s request bodies by the configuration value ``setting`` (bytes) instead of
    ``MAX_CONTENT_LENGTH`` (read at each request, so a changed setting applies at once)."""
    app.extensions.setdefault("paydesk_body_limits", {})[endpoint] = setting


def _bound_body() -> None:
    """Every request's body is at most its endpoint's limit (``limit_body``) or ``MAX_CONTENT_LENGTH``.

    With a Content-Length, Werkzeug refuses a longer body with 413 when it is first read. A chunked body
    has none, and Werkzeug would silently stop reading at the limit (a truncated form or JSON document):
    so read at most limit + 1 bytes of it here, and hand the rest of the app that much, with its length.
    One byte over the limit, and the first read of it (the view's, CSRF's) is a 413; the remainder is
    never read into memory (gunicorn drops it with the connection)."""
    setting = current_app.extensions.get("paydesk_body_limits", {}).get(request.endpoint or "")
    if setting:
        request.max_content_length = int(current_app.config[setting])
    limit = request.max_content_length
    env = request.environ
    if limit is None or env.get("CONTENT_LENGTH") or not env.get("wsgi.input_terminated"):
        return
    data = env["wsgi.input"].read(limit + 1)
    env["wsgi.input"], env["CONTENT_LENGTH"] = io.BytesIO(data), str(len(data))
    env.pop("HTTP_TRANSFER_ENCODING", None)  # else Werkzeug ignores the length given here


def init_security(app: Flask) -> None:
    """Session protection, unauthorised handling, security headers and template helpers."""
    app.config.setdefault("SESSION_PROTECTION", "strong")
    login_manager.session_protection = "strong"
    login_manager._session_identifier_generator = session_identifier
    login_manager.unauthorized_handler(_unauthorized)
    # First in line: before CSRFProtect checks the token (and records its verdict on g).
    app.before_request_funcs.setdefault(None, []).insert(0, _fresh_request_state)
    app.before_request_funcs[None].insert(1, _bound_body)  # before anything reads the body
    app.after_request(_set_security_headers)

    from admin.forms import EmptyForm
    from admin.money import format_money

    @app.context_processor
    def _helpers():
        return {"endpoint_url": endpoint_url, "format_money": format_money, "logout_form": EmptyForm}
