"""Payment processors: the Stripe accounts paydesk talks to."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from flask import current_app
from sqlalchemy import select

from ..dbutil import immediate
from ..extensions import db
from ..models import PaymentProcessor
from ..stripe_gateway import Gateway
from . import ServiceError


def add_processor(*, name: str, secret_key: str, webhook_secrets: list[str], publishable_key: str | None = None,
                  api_base: str | None = None, mode: str = "test", default: bool = False) -> PaymentProcessor:
    _check_keys(secret_key, publishable_key, mode)
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
    db.session.commit()
    return proc


def update_processor(proc: PaymentProcessor, *, name: str | None = None, secret_key: str | None = None,
                     publishable_key: str | None = None, webhook_secrets: list[str] | None = None,
                     add_webhook_secrets: list[str] | None = None, remove_webhook_secrets: list[str] | None = None,
                     api_base: str | None = None, mode: str | None = None, default: bool | None = None,
                     active: bool | None = None) -> PaymentProcessor:
    immediate()
    if mode:
        proc.mode = mode
    if secret_key or publishable_key:
        _check_keys(secret_key or proc.secret_key, publishable_key or proc.publishable_key, proc.mode)
    if name:
        proc.name = name
    if secret_key:
        proc.secret_key = secret_key
    if publishable_key:
        proc.publishable_key = publishable_key
    secrets = list(webhook_secrets) if webhook_secrets is not None else proc.webhook_secrets
    for s in add_webhook_secrets or []:
        if s not in secrets:
            secrets.append(s)
    for s in remove_webhook_secrets or []:
        secrets = [x for x in secrets if x != s and not x.endswith(s)]
    if secrets != proc.webhook_secrets:
        proc.webhook_secrets = secrets
    if api_base is not None:
        proc.api_base = api_base or None
    if active is not None:
        proc.active = active
    if default:
        _clear_default()
        proc.is_default = True
    db.session.commit()
    forget_processor_ref(proc.id)  # this process sees the change at once; others within seconds
    return proc


def _clear_default() -> None:
    for p in db.session.scalars(select(PaymentProcessor).where(PaymentProcessor.is_default)):
        p.is_default = False


def _check_keys(secret_key: str | None, publishable_key: str | None, mode: str) -> None:
    if mode not in ("test", "live"):
        raise ServiceError("mode must be test or live", field="mode")
    if secret_key and not secret_key.startswith(("sk_", "rk_")):
        raise ServiceError("the secret key must start with sk_ (or rk_ for a restricted key)", field="secret_key")
    if secret_key and secret_key.startswith(("sk_live_", "rk_live_")) != (mode == "live"):
        raise ServiceError(f"a {mode} processor needs a {mode} secret key", field="secret_key")
    if publishable_key and not publishable_key.startswith("pk_"):
        raise ServiceError("the publishable key must start with pk_", field="publishable_key")


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
        raise ServiceError("several processors and none is the default: pass --ppid" if procs
                           else "no payment processor: add one with `processor add`")
    proc = None
    if str(ppid).isdigit():
        proc = db.session.get(PaymentProcessor, int(ppid))
    if proc is None:
        proc = db.session.scalar(select(PaymentProcessor).where(PaymentProcessor.name == str(ppid)))
    if proc is None:
        raise ServiceError(f"no payment processor {ppid!r}")
    return proc


def gateway(proc: PaymentProcessor) -> Gateway:
    return Gateway.for_processor(proc)


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
        "paydesk_processor_refs", {})
    hit = cache.get(ppid)
    if hit is not None and time.monotonic() - hit[0] < _CACHE_SECONDS:
        return hit[1]
    proc = db.session.get(PaymentProcessor, ppid)
    ref = None if proc is None else ProcessorRef(
        id=proc.id, name=proc.name, mode=proc.mode, active=proc.active, api_base=proc.api_base,
        updated_at=proc.updated_at, secret_key=proc.secret_key, webhook_secrets=tuple(proc.webhook_secrets))
    cache[ppid] = (time.monotonic(), ref)
    return ref


def forget_processor_ref(ppid: int) -> None:
    current_app.extensions.get("paydesk_processor_refs", {}).pop(ppid, None)
