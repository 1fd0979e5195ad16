"""The only module that imports ``stripe``.

Everything paydesk asks of Stripe goes through :class:`Gateway`: one
``StripeClient`` per payment processor (API base from the processor row, so a
processor can point at localstripe), an idempotency key on every create and
every other non-idempotent POST (kept across retries), paydesk's own retry
policy (429, 5xx and connection errors; exponential backoff with full jitter;
bounded attempts), and Stripe errors mapped to :class:`GatewayError`, which
carries the message, code, decline code and request id.

Webhook signatures are verified here too (:func:`verify_webhook`).
"""

from __future__ import annotations

import collections
import datetime
import hashlib
import hmac
import json
import logging
import platform
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

import requests.adapters
import stripe
import urllib3

log = logging.getLogger(__name__)

# Operations on a top-level resource that paydesk sends itself (see Gateway.call), as (HTTP method, path after
# /v1/<resource>): anything else goes through the SDK's services.
_DIRECT = {
    "retrieve": ("GET", ""),  # /v1/<resource>/<id> (a singleton such as the balance: /v1/balance)
    "list": ("GET", None),  # /v1/<resource>
    "create": ("POST", None),
    "update": ("POST", ""),
    "confirm": ("POST", "/confirm"),
    "attach": ("POST", "/attach"),
    "detach": ("POST", "/detach"),
    "capture": ("POST", "/capture"),
    "pay": ("POST", "/pay"),
}
# Operations that change state in Stripe and so need an idempotency key.
_NON_IDEMPOTENT = {
    "create",
    "capture",
    "cancel",
    "confirm",
    "pay",
    "attach",
    "detach",
    "finalize_invoice",
    "void_invoice",
}


class GatewayError(Exception):
    """A Stripe request that failed, after paydesk's retries where they apply."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        decline_code: str | None = None,
        request_id: str | None = None,
        http_status: int | None = None,
        transient: bool = False,
        attempts: int = 1,
        kind: str = "api_error",
        operation: str | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.operation = operation
        self.code = code
        self.decline_code = decline_code
        self.request_id = request_id
        self.http_status = http_status
        self.transient = transient
        self.attempts = attempts
        self.kind = kind

    @property
    def not_found(self) -> bool:
        return self.code == "resource_missing" or self.http_status == 404

    def __str__(self) -> str:
        bits = [f"{self.operation}: {self.message}" if self.operation else self.message]
        if self.code:
            bits.append(f"code={self.code}")
        if self.decline_code:
            bits.append(f"decline_code={self.decline_code}")
        if self.http_status:
            bits.append(f"http={self.http_status}")
        if self.request_id:
            bits.append(f"request={self.request_id}")
        if self.attempts > 1:
            bits.append(f"after {self.attempts} attempts")
        return " ".join(bits)


class StripeResult(dict):
    """A Stripe object as a plain dict, plus the request id that produced it."""

    request_id: str | None = None


class WebhookSignatureError(Exception):
    """The ``Stripe-Signature`` header does not verify; ``reason`` is short and safe to show."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class RetryPolicy:
    def __init__(
        self,
        max_attempts: int = 4,
        base: float = 0.5,
        cap: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.max_attempts = max(1, int(max_attempts))
        self.base = base
        self.cap = cap
        self.sleep = sleep

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Full-jitter exponential backoff; a server's Retry-After is a floor."""
        d = random.uniform(0, min(self.cap, self.base * (2 ** (attempt - 1))))
        if retry_after:
            d = max(d, min(retry_after, self.cap))
        return d


def _is_transient(err: stripe.StripeError) -> bool:
    if isinstance(err, stripe.APIConnectionError | stripe.RateLimitError):
        return True
    status = getattr(err, "http_status", None) or 0
    if status == 409 and isinstance(err, stripe.IdempotencyError) is False:
        return True  # lock_timeout: a concurrent request on the same object
    return status >= 500


def _map_error(err: stripe.StripeError, attempts: int) -> GatewayError:
    body = getattr(err, "json_body", None) or {}
    detail = body.get("error", {}) if isinstance(body, dict) else {}
    kind = detail.get("type") or type(err).__name__
    message = getattr(err, "user_message", None) or detail.get("message") or str(err) or type(err).__name__
    if isinstance(err, stripe.APIConnectionError):
        message = f"Could not reach Stripe: {message}"
    return GatewayError(
        message,
        code=getattr(err, "code", None) or detail.get("code"),
        decline_code=detail.get("decline_code") or getattr(err, "decline_code", None),
        request_id=getattr(err, "request_id", None),
        http_status=getattr(err, "http_status", None),
        transient=_is_transient(err),
        attempts=attempts,
        kind=kind,
    )


def _form_pairs(data: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Stripe's form encoding of ``data``, as the SDK encodes it: ``a[b]=c`` for a dict, ``a[0]=c`` for a
    list, booleans as true/false, None left out, a datetime as its Unix time."""
    for key, value in data.items():
        name = f"{prefix}[{key}]" if prefix else str(key)
        if value is None:
            continue
        if isinstance(value, dict):
            yield from _form_pairs(value, name)
        elif isinstance(value, list | tuple):
            yield from _form_pairs(dict(enumerate(value)), name)
        elif isinstance(value, bool):
            yield name, "true" if value else "false"
        elif isinstance(value, datetime.datetime):
            yield name, int(value.timestamp()) if value.tzinfo else int(time.mktime(value.timetuple()))
        else:
            yield name, value


_PLAIN = re.compile(r"[A-Za-z0-9_.\-~\[\]]*")  # what form encoding leaves as it is (brackets: see _form)


def _form(data: dict | None) -> str:
    """``data`` form-encoded as the SDK sends it (``urlencode``, square brackets left readable); a key or
    value that needs no escaping (most of them: ids, amounts, keys) is not run through ``quote_plus``."""
    parts = []
    for key, value in _form_pairs(data or {}):
        text = value if isinstance(value, str) else str(value)
        if not _PLAIN.fullmatch(key):
            key = quote_plus(key, safe="[]")
        parts.append(f"{key}={text if _PLAIN.fullmatch(text) else quote_plus(text, safe='[]')}")
    return "&".join(parts)


def _answer(content: bytes, status: int, headers: Any) -> StripeResult:
    """A Stripe answer as the result, or the SDK's own exception for it (what ``_map_error`` reads)."""
    try:
        data = json.loads(content)
    except ValueError:
        data = None
    if 200 <= status < 300 and isinstance(data, dict):
        res = StripeResult(data)
        res.request_id = headers.get("request-id")
        return res
    text = content.decode("utf-8", "replace")
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict):
        raise stripe.APIError(
            f"Invalid response body from API: {text[:500]} (HTTP response code was {status})",
            text,
            status,
            data if isinstance(data, dict) else None,
            headers,
        )
    message, code, param = error.get("message"), error.get("code"), error.get("param")
    args = (text, status, data, headers)
    if status == 429 or (status == 400 and code == "rate_limit"):
        raise stripe.RateLimitError(message, *args)
    if status in (400, 404):
        if error.get("type") == "idempotency_error":
            raise stripe.IdempotencyError(message, *args)
        raise stripe.InvalidRequestError(message, param, code, *args)
    if status == 401:
        raise stripe.AuthenticationError(message, *args)
    if status == 402:
        raise stripe.CardError(message, param, code, *args)
    if status == 403:
        raise stripe.PermissionError(message, *args)
    raise stripe.APIError(message, *args)


class _Client(stripe.RequestsClient):
    """The SDK's requests client, with each thread's session told not to read the proxy settings from the
    environment on every request (``requests`` does, and it cost ~1 ms of CPU per Stripe call): they are
    read once, for the API base's host (``HTTPS_PROXY``, ``NO_PROXY``, ...), when the client is made."""

    def __init__(self, *, timeout: float, api_base: str | None):
        import requests

        proxies = requests.utils.get_environ_proxies(api_base or "https://api.stripe.com")
        proxy = {k: v for k, v in proxies.items() if k in ("http", "https")} or None
        super().__init__(timeout=timeout, proxy=proxy)  # type: ignore[arg-type]  # the SDK takes a scheme->URL dict
        self._pool_timeout = urllib3.Timeout(connect=timeout, read=timeout)

    def _thread_session(self) -> Any:
        session = getattr(self._thread_local, "session", None)
        if session is None:
            session = self.requests.Session()
            session.trust_env = False  # proxies above; certificates are the SDK's bundle either way
            self._thread_local.session = session
        return session

    def _request_internal(self, *args: Any, **kwargs: Any):
        self._thread_session()
        return super()._request_internal(*args, **kwargs)

    def _prepared(self, method: str, url: str, headers: dict[str, str], body: str | None) -> Any:
        request = self.requests.PreparedRequest()
        request.method, request.url, request.body = method, url, body
        request.headers = self.requests.structures.CaseInsensitiveDict(headers)
        return request

    def send(
        self, method: str, base: str, path: str, headers: dict[str, str], body: str | None
    ) -> tuple[bytes, int, Any]:
        """One request as the SDK's ``request`` sends it, without ``requests.Session``'s per-request work
        (merging settings, cookies, hooks, redirects: none of which Stripe's API uses) nor, unless something
        has put itself in the adapter's place (tests' ``responses``) or a proxy is configured, the adapter's
        (connection lookup, response object): straight to the adapter's connection pool for ``base``.
        (content, status, headers); a network failure raises the SDK's ``APIConnectionError``, as its own
        client does. ``headers`` is the caller's own dict (Content-Length is added to it)."""
        if body is not None:
            headers["Content-Length"] = str(len(body))
        verify = stripe.ca_bundle_path if self._verify_ssl_certs else False
        try:
            if self._proxy or requests.adapters.HTTPAdapter.send is not _ADAPTER_SEND:
                adapter = self._thread_session().get_adapter(base)
                request = self._prepared(method, base + path, headers, body)
                response = adapter.send(
                    request, timeout=self._timeout, verify=verify, proxies=self._proxy or {}
                )
                return response.content, response.status_code, response.headers
            pools = self._thread_local.__dict__.setdefault("pools", {})
            pool, prefix = pools.get(base) or (None, "")
            if pool is None or pool.pool is None:  # none yet, or closed by the pool manager
                adapter = self._thread_session().get_adapter(base)
                request = self._prepared(method, base + path, headers, body)
                pool = adapter.get_connection_with_tls_context(request, verify)
                prefix = urlsplit(base).path.rstrip("/")  # an API base with a path of its own
                pools[base] = (pool, prefix)
            answer = pool.urlopen(
                method,
                prefix + path,
                body=body,
                headers=headers,
                redirect=False,
                assert_same_host=False,
                retries=_NO_RETRIES,  # paydesk's own policy (Gateway.call)
                timeout=self._pool_timeout,
            )
            return answer.data, answer.status, answer.headers  # headers: case-insensitive, as requests' are
        except urllib3.exceptions.HTTPError as err:  # as requests would have raised it
            timeout = isinstance(err, urllib3.exceptions.TimeoutError)
            wrapped = (self.requests.Timeout if timeout else self.requests.ConnectionError)(err)
            self._handle_request_error(wrapped)
        except Exception as err:  # noqa: BLE001 - mapped exactly as the SDK's client maps it
            self._handle_request_error(err)


_ADAPTER_SEND = requests.adapters.HTTPAdapter.send  # the real one (tests' ``responses`` replaces it)
_NO_RETRIES = urllib3.Retry(total=False, redirect=False)  # what urlopen makes of retries=False, made once


def _to_result(obj: Any) -> StripeResult:
    data = obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)
    res = StripeResult(data)
    last = getattr(obj, "last_response", None)
    res.request_id = getattr(last, "request_id", None)
    return res


_clients: dict[tuple, stripe.StripeClient] = {}
_senders: dict[tuple, tuple[_Client, str, dict[str, str]]] = {}  # per client: HTTP client, API base, headers
_clients_lock = threading.Lock()
# Requests sent to Stripe by this process, by "resource.method" (each retry counts): what
# benchmarks and staff read to see how many calls an operation costs.
_calls: collections.Counter[str] = collections.Counter()
_call_seconds: collections.defaultdict[str, float] = collections.defaultdict(float)


# Who hears of each request's answer (monitoring: metrics, log lines): fn(operation, outcome, seconds,
# retrying, request_id); outcome "ok", "error" (Stripe refused it) or "transient" (429/5xx/network).
_observers: list[Callable[[str, str, float, bool, str | None], None]] = []


def observe(fn: Callable[[str, str, float, bool, str | None], None]) -> None:
    """Call ``fn`` after every request sent to Stripe (each retry counts); registering twice is once."""
    if fn not in _observers:
        _observers.append(fn)


def _tell(operation: str, outcome: str, seconds: float, retrying: bool, request_id: str | None) -> None:
    for fn in list(_observers):
        try:
            fn(operation, outcome, seconds, retrying, request_id)
        except Exception:  # noqa: BLE001 - counting must never break a payment
            log.exception("stripe request observer failed")


def call_counts() -> dict[str, int]:
    """How many requests this process has sent to Stripe, by ``resource.method``."""
    with _clients_lock:
        return dict(_calls)


def call_seconds() -> float:
    """How long this process has waited on Stripe's answers, in all (seconds)."""
    with _clients_lock:
        return sum(_call_seconds.values())


def _headers(secret_key: str, httplib: str) -> dict[str, str]:
    """The headers the SDK sends with every request (its version's API version and user agent)."""
    agent = {
        "bindings_version": stripe.VERSION,
        "lang": "python",
        "httplib": httplib,
        "lang_version": platform.python_version(),
    }
    return {
        "X-Stripe-Client-User-Agent": json.dumps(agent),
        "User-Agent": f"Stripe/v1 PythonBindings/{stripe.VERSION}",
        "Authorization": f"Bearer {secret_key}",
        "Stripe-Version": stripe.api_version,
    }


class Gateway:
    """Stripe for one payment processor."""

    def __init__(
        self,
        secret_key: str,
        api_base: str | None = None,
        *,
        policy: RetryPolicy | None = None,
        timeout: float = 30,
        cache_key: tuple | None = None,
    ):
        self.policy = policy or RetryPolicy()
        key = cache_key or (secret_key, api_base)
        with _clients_lock:
            client = _clients.get(key)
            if client is None:
                kwargs: dict[str, Any] = {
                    "max_network_retries": 0,  # paydesk's own policy below
                    "http_client": _Client(timeout=timeout, api_base=api_base),
                }
                if api_base:
                    kwargs["base_addresses"] = {"api": api_base.rstrip("/")}
                client = stripe.StripeClient(secret_key, **kwargs)
                _clients[key] = client
                _senders[key] = (
                    kwargs["http_client"],
                    (api_base or stripe.DEFAULT_API_BASE).rstrip("/"),
                    _headers(secret_key, kwargs["http_client"].name),
                )
        self.client = client
        self._http, self._base, self._headers = _senders[key]

    @classmethod
    def for_processor(cls, processor, config: dict | None = None) -> Gateway:
        if config is None:
            from flask import current_app

            config = current_app.config
        policy = RetryPolicy(
            config.get("STRIPE_MAX_ATTEMPTS", 4),
            config.get("STRIPE_BACKOFF_BASE", 0.5),
            config.get("STRIPE_BACKOFF_MAX", 8.0),
        )
        return cls(
            processor.secret_key,
            processor.api_base,
            policy=policy,
            timeout=config.get("STRIPE_TIMEOUT", 30),
            cache_key=(processor.id, processor.updated_at, processor.api_base),
        )

    # -- the one door -------------------------------------------------------
    def call(
        self,
        resource: str,
        method: str,
        *args: Any,
        params: dict | None = None,
        idempotency_key: str | None = None,
        stripe_account: str | None = None,
    ) -> StripeResult:
        """``client.v1.<resource>.<method>(*args, params=...)`` with retries and error mapping.

        ``resource`` may be dotted for nested services (``"invoices.line_items"``); ``stripe_account``
        makes the request on behalf of a connected account (the ``Stripe-Account`` header).

        The common operations on a top-level resource (``_DIRECT``: retrieve, list, create, update and the
        POST actions such as confirm and attach) are sent by paydesk itself, as the SDK would send them
        (same encoding, headers and API version, errors raised as the SDK's own exceptions), and answered
        with Stripe's JSON as it came: the SDK's request machinery and its object conversion (and
        ``to_dict`` back) were most of a call's CPU. Everything else goes through the SDK's service.
        """
        direct = _DIRECT.get(method) if "." not in resource else None
        if direct is not None:
            verb, suffix = direct
            path = f"/v1/{resource}"
            if suffix is not None and args:
                path += f"/{quote(str(args[0]), safe='')}{suffix}"

            def fn(params: dict | None = None) -> StripeResult:
                return self._send(verb, path, params, options)
        else:
            service: Any = self.client.v1
            for part in resource.split("."):
                service = getattr(service, part)
            fn = getattr(service, method)
        options: dict[str, Any] = {}
        if method in _NON_IDEMPOTENT:
            options["idempotency_key"] = idempotency_key or f"paydesk-{uuid.uuid4()}"
        if stripe_account:
            options["stripe_account"] = stripe_account
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            outcome, retrying, request_id, answered = "error", False, None, None
            try:
                kwargs: dict[str, Any] = {}
                if params:
                    kwargs["params"] = params
                if options:
                    kwargs["options"] = options
                if direct is not None:
                    result = fn(params)
                else:
                    result = _to_result(fn(*args, **kwargs))
                outcome, request_id = "ok", result.request_id
                return result
            except stripe.StripeError as err:
                answered = time.perf_counter()
                mapped = _map_error(err, attempt)
                mapped.operation = f"{resource}.{method}"
                outcome, request_id = ("transient" if mapped.transient else "error"), mapped.request_id
                if not mapped.transient or attempt >= self.policy.max_attempts:
                    log.warning("stripe %s.%s failed: %s", resource, method, mapped)
                    raise mapped from None
                retrying = True
                retry_after = None
                headers = getattr(err, "headers", None) or {}
                if headers.get("retry-after"):
                    try:
                        retry_after = float(headers["retry-after"])
                    except ValueError:
                        retry_after = None
                delay = self.policy.delay(attempt, retry_after)
                log.info(
                    "stripe %s.%s transient failure (%s); retry %d in %.2fs",
                    resource,
                    method,
                    mapped.http_status or "network",
                    attempt,
                    delay,
                )
                self.policy.sleep(delay)
            finally:
                seconds = (
                    answered or time.perf_counter()
                ) - started  # the answer's wait, not a retry's pause
                with _clients_lock:
                    _calls[f"{resource}.{method}"] += 1
                    _call_seconds[f"{resource}.{method}"] += seconds
                if _observers:
                    _tell(f"{resource}.{method}", outcome, seconds, retrying, request_id)

    def _send(self, verb: str, path: str, params: dict | None, options: dict[str, Any]) -> StripeResult:
        headers = dict(self._headers)
        if options.get("stripe_account"):
            headers["Stripe-Account"] = options["stripe_account"]
        body = None
        if verb == "GET":
            if params:
                path += "?" + _form(params)
        else:
            # every POST carries a key, as the SDK gives one (retries reuse it: options are made once per call)
            headers["Idempotency-Key"] = options.setdefault("idempotency_key", f"paydesk-{uuid.uuid4()}")
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            body = _form(params)  # ASCII: urlencode escapes the rest
        return _answer(*self._http.send(verb, self._base, path, headers, body))

    # -- convenience wrappers used across services -----------------------------
    def retrieve(self, resource: str, obj_id: str, expand: list[str] | None = None) -> StripeResult:
        return self.call(resource, "retrieve", obj_id, params={"expand": expand} if expand else None)

    def create(self, resource: str, params: dict, idempotency_key: str | None = None) -> StripeResult:
        return self.call(resource, "create", params=params, idempotency_key=idempotency_key)

    def update(self, resource: str, obj_id: str, params: dict) -> StripeResult:
        return self.call(resource, "update", obj_id, params=params)

    def list(self, resource: str, **params: Any) -> StripeResult:
        return self.call(resource, "list", params={k: v for k, v in params.items() if v is not None})


# -- webhooks -------------------------------------------------------------------


def verify_webhook(payload: bytes, header: str | None, secrets: list[str], tolerance: int = 300) -> None:
    """Raise :class:`WebhookSignatureError` unless one of ``secrets`` signed ``payload``.

    Several secrets may be active while one is being rotated.
    """
    if not header:
        raise WebhookSignatureError("missing Stripe-Signature header")
    if not secrets:
        raise WebhookSignatureError("processor has no webhook signing secret")
    last: str = "signature mismatch"
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(payload.decode("utf-8"), header, secret, tolerance)
            # The SDK refuses only stale timestamps; one dated ahead by more than the tolerance is refused too.
            if tolerance and _header_timestamp(header) > time.time() + tolerance:
                raise WebhookSignatureError("timestamp outside tolerance")
            return
        except stripe.SignatureVerificationError as err:
            text = str(err)
            if "Unable to extract" in text:
                raise WebhookSignatureError("malformed Stripe-Signature header") from None
            if "expected scheme" in text:
                raise WebhookSignatureError("no v1 signature in header") from None
            if "tolerance" in text:
                last = "timestamp outside tolerance"
            elif last != "timestamp outside tolerance":
                last = "signature mismatch"
        except UnicodeDecodeError:
            raise WebhookSignatureError("body is not UTF-8") from None
    raise WebhookSignatureError(last)


def _header_timestamp(header: str) -> int:
    """The header's ``t=``, read exactly as the SDK reads it (the first one)."""
    items = [i.split("=", 2) for i in header.split(",")]
    try:
        return int([i[1] for i in items if i[0] == "t"][0])
    except (IndexError, ValueError):
        raise WebhookSignatureError("malformed Stripe-Signature header") from None


def sign_payload(payload: bytes | str, secret: str, timestamp: int | None = None) -> str:
    """A ``Stripe-Signature`` header for ``payload``, as Stripe computes it."""
    body = payload.decode() if isinstance(payload, bytes) else payload
    ts = int(time.time()) if timestamp is None else int(timestamp)
    sig = hmac.new(secret.encode(), f"{ts}.{body}".encode(), hashlib.sha256).hexdigest()
    return f"t={ts},v1={sig}"
