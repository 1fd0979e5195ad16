"""Payment processors: the Stripe accounts paydesk talks to."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import select

from admin import crypto
from admin.dbutil import immediate, parse_id
from admin.errors import ServiceError, check_text
from admin.extensions import db
from admin.models import PaymentProcessor
from admin.services.core import audit
from admin.stripe_gateway import Gateway, GatewayError


def add_processor(
    *,
    name: str,
    secret_key: str,
    webhook_secrets: list[str],
    publishable_key: str | None = None,
    api_base: str | None = None,
    mode: str = "test",
    default: bool = False,
) -> PaymentProcessor:
    _check_keys(secret_key, publishable_key, mode)
    _check_lengths(name=name, publishable_key=publishable_key, api_base=api_base)
    api_base = check_api_base(api_base)
    immediate()
    if db.session.scalar(select(PaymentProcessor).where(PaymentProcessor.name == name)):
        raise ServiceError(f"a processor named {name!r} already exists", field="name")
    proc = PaymentProcessor(name=name, mode=mode, publishable_key=publishable_key, api_base=api_base or None)
    proc.secret_key = secret_key
    proc.webhook_secrets = webhook_secrets
    if default or not db.session.scalar(select(PaymentProcessor.id).limit(1)):
        _clear_default()
        proc.is_default = True
    db.session.add(proc)
    db.session.flush()
    audit.record(
        "processor.add",
        object_type="processor",
        object_id=str(proc.id),
        processor_id=proc.id,
        parameters=_audit_view(proc),
        commit=False,
    )
    db.session.commit()
    return proc


def update_processor(
    proc: PaymentProcessor,
    *,
    name: str | None = None,
    secret_key: str | None = None,
    publishable_key: str | None = None,
    webhook_secrets: list[str] | None = None,
    add_webhook_secrets: list[str] | None = None,
    remove_webhook_secrets: list[str] | None = None,
    api_base: str | None = None,
    mode: str | None = None,
    default: bool | None = None,
    active: bool | None = None,
    force: bool = False,
) -> PaymentProcessor:
    """Change a processor. A signing secret to remove is named by its whole value or (at least) its last
    four characters and must match exactly one; leaving the processor with no signing secret (every
    webhook would then be refused) needs ``force``. Writes one audit entry with what changed (masked)."""
    immediate()
    before = _audit_view(proc)
    _check_lengths(name=name, publishable_key=publishable_key, api_base=api_base)
    if mode:
        proc.mode = mode
    if secret_key or publishable_key or mode:
        _check_keys(
            secret_key or _readable(lambda: proc.secret_key, None),
            publishable_key or proc.publishable_key,
            proc.mode,
        )
    if name and name != proc.name:
        if db.session.scalar(select(PaymentProcessor.id).where(PaymentProcessor.name == name)):
            raise ServiceError(f"a processor named {name!r} already exists", field="name")
        proc.name = name
    if secret_key:
        proc.secret_key = secret_key
    if publishable_key:
        proc.publishable_key = publishable_key
    # Stored secrets that no longer decrypt (a lost encryption key) can still be replaced outright.
    old_secrets = (
        proc.webhook_secrets if webhook_secrets is None else _readable(lambda: proc.webhook_secrets, [])
    )
    secrets = [s for s in webhook_secrets if s] if webhook_secrets is not None else list(old_secrets)
    for s in add_webhook_secrets or []:
        if s and s not in secrets:
            secrets.append(s)
    for s in remove_webhook_secrets or []:
        secrets.remove(_one_secret(secrets, s))
    if old_secrets and not secrets and not force:
        raise ServiceError(
            "that would remove the processor's last webhook signing secret, and every webhook "
            "would be refused: add the new one first, or pass --force",
            field="webhook_secrets",
        )
    if secrets != old_secrets:
        proc.webhook_secrets = secrets
    if api_base is not None and (check_api_base(api_base) or None) != (
        (proc.api_base or "").rstrip("/") or None
    ):
        if not secret_key:
            raise ServiceError(
                "type the secret key again to change the API base URL (the key is sent there)",
                field="secret_key",
            )
        proc.api_base = check_api_base(api_base) or None
    if active is not None:
        proc.active = active
    if default:
        _clear_default()
        proc.is_default = True
    after = _audit_view(proc)
    changed = {k: {"from": before[k], "to": after[k]} for k in after if after[k] != before[k]}
    audit.record(
        "processor.update",
        object_type="processor",
        object_id=str(proc.id),
        processor_id=proc.id,
        parameters=changed,
        message=None if changed else "nothing changed",
        commit=False,
    )
    db.session.commit()
    forget_processor_ref(proc.id)  # this process sees the change at once; others within seconds
    return proc


MIN_SUFFIX = 4


def _one_secret(secrets: list[str], given: str) -> str:
    """The one signing secret ``given`` names (whole value, or its last characters)."""
    given = (given or "").strip()
    if given in secrets:
        return given
    if len(given) < MIN_SUFFIX:
        raise ServiceError(
            f"name the signing secret to remove by its whole value or at least its last "
            f"{MIN_SUFFIX} characters",
            field="webhook_secrets",
        )
    matches = [s for s in secrets if s.endswith(given)]
    if not matches:
        raise ServiceError(
            f"no signing secret of this processor ends with {given!r}", field="webhook_secrets"
        )
    if len(matches) > 1:
        raise ServiceError(
            f"{len(matches)} signing secrets end with {given!r}: give more of the one to remove",
            field="webhook_secrets",
        )
    return matches[0]


def _audit_view(proc: PaymentProcessor) -> dict:
    """A processor as the audit log keeps it: secrets masked, never in clear (or "unreadable")."""
    return {
        "name": proc.name,
        "mode": proc.mode,
        "default": proc.is_default,
        "active": proc.active,
        "api_base": proc.api_base,
        "publishable_key": proc.publishable_key,
        "secret_key": _readable(lambda: crypto.mask(proc.secret_key), "(unreadable)"),
        "webhook_secrets": _readable(lambda: [crypto.mask(x) for x in proc.webhook_secrets], "(unreadable)"),
    }


def _readable(read, default):
    try:
        return read()
    except crypto.SecretDecryptError:
        return default


def _check_lengths(**values: str | None) -> None:
    limits = {"name": 100, "publishable_key": 255, "api_base": 255}
    for key, value in values.items():
        check_text(value, key.replace("_", " "), key)
        if value and len(value) > limits[key]:
            raise ServiceError(f"{key.replace('_', ' ')}: at most {limits[key]} characters", field=key)


STRIPE_API = "https://api.stripe.com"


def allowed_api_hosts() -> list[str]:
    """The hosts ``STRIPE_API_BASES`` allows besides Stripe's (a list, or a comma-separated string)."""
    hosts = current_app.config.get("STRIPE_API_BASES") or []
    if isinstance(hosts, str):
        hosts = hosts.split(",")
    return [str(h).strip().lower().rstrip(".") for h in hosts if str(h).strip()]


def api_base_problem(api_base: str | None) -> str | None:
    """Why a processor may not send its secret key to ``api_base`` (None: it may). Stripe's own
    https://api.stripe.com, or http(s) on a host of ``STRIPE_API_BASES``; no user, path, query or fragment."""
    if not api_base:
        return None
    parts = urlsplit(api_base)
    try:
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        return f"API base URL: {api_base[:80]!r} has a port that is not a number"
    host = (parts.hostname or "").lower().rstrip(".")
    if (
        parts.scheme not in ("http", "https")
        or not host
        or parts.username is not None
        or parts.query
        or parts.fragment
        or parts.path.strip("/")
    ):
        return f"API base URL: {api_base[:80]!r} is not a base address (https://host[:port])"
    if parts.scheme == "https" and host == "api.stripe.com" and parts.port in (None, 443):
        return None
    if host in allowed_api_hosts():
        return None
    return (
        f"API base URL: paydesk sends the secret key only to Stripe ({STRIPE_API}) or to a host listed in "
        f"PAYDESK_STRIPE_API_BASES, not to {host[:80]}"
    )


def check_api_base(api_base: str | None) -> str | None:
    """``api_base`` stripped (without a trailing slash), or a ``ServiceError`` (field ``api_base``)."""
    api_base = (api_base or "").strip().rstrip("/")
    problem = api_base_problem(api_base)
    if problem:
        raise ServiceError(problem, field="api_base")
    return api_base


def _clear_default() -> None:
    for p in db.session.scalars(select(PaymentProcessor).where(PaymentProcessor.is_default)):
        p.is_default = False


def _check_keys(secret_key: str | None, publishable_key: str | None, mode: str) -> None:
    if mode not in ("test", "live"):
        raise ServiceError("mode must be test or live", field="mode")
    if secret_key and not secret_key.startswith(("sk_", "rk_")):
        raise ServiceError(
            "the secret key must start with sk_ (or rk_ for a restricted key)", field="secret_key"
        )
    if secret_key and secret_key.startswith(("sk_live_", "rk_live_")) != (mode == "live"):
        raise ServiceError(f"a {mode} processor needs a {mode} secret key", field="secret_key")
    if publishable_key and not publishable_key.startswith("pk_"):
        raise ServiceError("the publishable key must start with pk_", field="publishable_key")


def processor_view(proc: PaymentProcessor) -> dict:
    """A processor as the settings page shows it: ``public_dict`` with keys masked, and "(unreadable)" for a
    stored secret that no longer decrypts rather than an error page."""
    return {"id": proc.id, **_audit_view(proc)}


def list_processors() -> list[PaymentProcessor]:
    return list(db.session.scalars(select(PaymentProcessor).order_by(PaymentProcessor.id)))


def get_processor(ppid: int | str | None = None) -> PaymentProcessor:
    """The processor with this id or name; without one, the default processor."""
    if ppid in (None, ""):
        procs = [p for p in list_processors() if p.active]
        defaults = [p for p in procs if p.is_default]
        if defaults:
            return defaults[0]
        if len(procs) == 1:
            return procs[0]
        raise ServiceError(
            "several payment processors and none is the default: choose one (--ppid on the command line)"
            if procs
            else "no payment processor: add one with `processor add`"
        )
    proc = None
    pk = parse_id(ppid)
    if pk is not None:
        proc = db.session.get(PaymentProcessor, pk)
    if proc is None and len(str(ppid)) <= 100:
        proc = db.session.scalar(select(PaymentProcessor).where(PaymentProcessor.name == str(ppid)))
    if proc is None:
        raise ServiceError(f"no payment processor {str(ppid)[:100]!r}")
    return proc


def gateway(proc: PaymentProcessor) -> Gateway:
    return Gateway.for_processor(proc)


@dataclass(frozen=True)
class ConnectionCheck:
    """What "test connection" found: the Stripe account's name, or Stripe's error, with the request id."""

    ok: bool
    message: str
    account_id: str | None = None
    request_id: str | None = None


def account_name(account: dict) -> str:
    """A Stripe account as people know it: its dashboard name, business name or email, else its id."""
    dashboard = ((account.get("settings") or {}).get("dashboard") or {}).get("display_name")
    business = (account.get("business_profile") or {}).get("name")
    return dashboard or business or account.get("email") or account.get("id") or "(unnamed account)"


def check_connection(proc: PaymentProcessor) -> ConnectionCheck:
    """One read-only request (the processor's own account): its name, or why Stripe refused."""
    try:
        key = proc.secret_key
    except crypto.SecretDecryptError:
        return ConnectionCheck(
            False,
            "the stored secret key cannot be decrypted (was the encryption key "
            "changed?): enter the secret key again",
        )
    if not key:
        return ConnectionCheck(False, "the processor has no secret key")
    problem = api_base_problem(proc.api_base)
    if problem:  # stored before the allow-list (or the list changed): the key is not sent there
        return ConnectionCheck(False, f"{problem}: change it (typing the secret key again) first")
    try:
        account = gateway(proc).call("accounts", "retrieve_current")
    except GatewayError as err:
        return ConnectionCheck(False, f"Stripe: {err.message}", request_id=err.request_id)
    mode = "live" if account.get("livemode", proc.livemode) else "test"
    return ConnectionCheck(
        True,
        f"connected to {account_name(account)} ({account.get('id')}, {mode} mode)",
        account_id=account.get("id"),
        request_id=account.request_id,
    )


# -- a cached plain copy, for the hot paths (webhook endpoint, worker) ------------------

_CACHE_SECONDS = 5.0


@dataclass(frozen=True)
class ProcessorRef:
    """What the webhook endpoint and the worker need of a processor: a plain copy with its secrets
    decrypted once, safe to share across requests and threads (never a session-bound row)."""

    id: int
    name: str
    mode: str
    active: bool
    api_base: str | None
    updated_at: datetime | None
    secret_key: str = field(repr=False)
    webhook_secrets: tuple[str, ...] = field(repr=False)

    @property
    def livemode(self) -> bool:
        return self.mode == "live"


def processor_ref(ppid: int) -> ProcessorRef | None:
    """The processor as a ``ProcessorRef``, cached per app process for a few seconds (so an edit made
    elsewhere, e.g. a signing secret removed with the CLI, applies within that time); None if unknown."""
    cache: dict[int, tuple[float, ProcessorRef | None]] = current_app.extensions.setdefault(
        "paydesk_processor_refs", {}
    )
    hit = cache.get(ppid)
    if hit is not None and time.monotonic() - hit[0] < _CACHE_SECONDS:
        return hit[1]
    proc = db.session.get(PaymentProcessor, ppid)
    ref = (
        None
        if proc is None
        else ProcessorRef(
            id=proc.id,
            name=proc.name,
            mode=proc.mode,
            active=proc.active,
            api_base=proc.api_base,
            updated_at=proc.updated_at,
            secret_key=proc.secret_key,
            webhook_secrets=tuple(proc.webhook_secrets),
        )
    )
    cache[ppid] = (time.monotonic(), ref)
    return ref


def forget_processor_ref(ppid: int) -> None:
    current_app.extensions.get("paydesk_processor_refs", {}).pop(ppid, None)
