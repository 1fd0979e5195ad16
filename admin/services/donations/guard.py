"""Card-testing defences of the donation form, and the record of every refusal.

- a one-time form token per page render (signed: form id + random nonce; spending it inserts
  the nonce into ``spent_form_token``, so a second use is refused);
- a block on a client (an IPv4 address, an IPv6 /64: ``limiter.network_of``) after
  ``DONATE_IP_MAX_FAILURES`` failed payments within ``DONATE_IP_FAILURE_WINDOW`` seconds
  (``admin.services.core.ratelimit``, shared by all processes);
- a honeypot field and a captcha hook;
- the per-client limits (``admin.views.donate``) and the per-form limit (``donations.pages``) report here too.

Every refusal is counted in ``donation_refusal`` (reason, form, address, detail, how many) so the
dashboard and the card-testing alarm can count them by reason, form, address and time. A flood does not
cost a row and a log line each: the first refusal after a quiet ``DONATE_REFUSAL_FLUSH_SECONDS`` is
written and logged at once, the rest are added up per (form, reason, client network) and written
together, one row and one log line per batch (``admin.tally``). A declined payment is always written at
once. Rows older than ``DONATE_REFUSAL_KEEP_DAYS`` are deleted by the worker (:func:`prune`).
"""

from __future__ import annotations

import importlib
import itertools
import logging
import secrets
from collections import Counter
from datetime import datetime, timedelta

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import delete, select

from admin.dbutil import immediate, insert_ignore, rowcount
from admin.extensions import db
from admin.limiter import network_of
from admin.models import REFUSAL_REASONS, DonationForm, DonationRefusal, SpentFormToken
from admin.services.core import ratelimit
from admin.services.monitoring import metrics
from admin.tally import Tally
from admin.timeutil import utcnow

log = logging.getLogger(__name__)

HONEYPOT_FIELD = "website"


def refuse(reason: str, form: DonationForm | None, client_ip: str | None, detail: str | None = None) -> None:
    """Count and log one refusal: written at once after a quiet spell (and always for a declined payment),
    else tallied with the flood it belongs to. Commits whatever it writes."""
    if reason not in REFUSAL_REASONS:
        raise ValueError(f"unknown refusal reason {reason!r}")
    metrics.donation_refused(reason)
    message = (
        f"donation form {form.slug if form else '?'}: refused ({reason}) from {client_ip or 'unknown address'}"
        + (f": {detail}" if detail else "")
    )
    if reason == "payment_failed":
        log.warning("%s", message)
        _write_refusal(form.id if form else None, reason, client_ip, detail, 1)
        return
    form_id = form.id if form else None
    _tally().count(
        (form_id, reason, network_of(client_ip)),
        message,
        lambda: _write_refusal(form_id, reason, client_ip, detail, 1),
    )


def _write_refusal(form_id: int | None, reason: str, client: str | None, detail: str | None, n: int) -> None:
    immediate()
    db.session.add(
        DonationRefusal(
            form_id=form_id,
            client_ip=(client or "")[:64] or None,
            reason=reason,
            detail=(detail or "")[:500] or None,
            count=n,
            at=utcnow(),
        )
    )
    db.session.commit()


def _write_counts(counts: Counter) -> None:
    """A batch of tallied refusals: one row per (form, reason, client network) with how many. Commits."""
    immediate()
    now = utcnow()
    for (form_id, reason, network), n in counts.items():
        db.session.add(
            DonationRefusal(form_id=form_id, client_ip=network[:64] or None, reason=reason, count=n, at=now)
        )
    db.session.commit()


def _summary(counts: Counter) -> str:
    slugs = dict(
        db.session.execute(
            select(DonationForm.id, DonationForm.slug).where(
                DonationForm.id.in_({k[0] for k in counts if k[0]})
            )
        ).all()
    )
    worst = counts.most_common(5)
    more = len(counts) - len(worst)
    return (
        f"donation forms: {sum(counts.values()):,} more refusals since the last report: "
        + ", ".join(
            f"{n:,} x {reason} on {slugs.get(form_id, '?')} from {network}"
            for (form_id, reason, network), n in worst
        )
        + (f" and {more} more kinds" if more > 0 else "")
    )


def _tally() -> Tally:
    app = current_app._get_current_object()  # type: ignore[attr-defined]  # proxy typed as Flask
    return app.extensions.setdefault(
        "paydesk_donation_refusals",
        Tally(_write_counts, _summary, setting="DONATE_REFUSAL_FLUSH_SECONDS", logger=log),
    )


def flush_refusals() -> None:
    """Write the refusals tallied so far (tests, before counting them)."""
    _tally().flush(current_app._get_current_object())  # type: ignore[attr-defined]  # proxy typed as Flask


def prune(now: datetime | None = None) -> int:
    """Delete refusals older than ``DONATE_REFUSAL_KEEP_DAYS`` (the worker, every few minutes). Commits."""
    keep = timedelta(days=float(current_app.config["DONATE_REFUSAL_KEEP_DAYS"]))
    immediate()
    gone = rowcount(
        db.session.execute(delete(DonationRefusal).where(DonationRefusal.at < (now or utcnow()) - keep))
    )
    db.session.commit()
    return gone or 0


# -- one-time form tokens ------------------------------------------------------------------


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="paydesk-donate-token")


def issue_token(form: DonationForm) -> str:
    """A fresh token for one payment request on ``form`` (nothing is written until it is spent)."""
    return _serializer().dumps({"f": form.id, "n": secrets.token_urlsafe(16)})


_PURGE_EVERY = 100
_spends = itertools.count(1)


def spend_token(form: DonationForm, token: object, *, commit: bool = True) -> str | None:
    """Spend ``token``; None when it was good, else the refusal reason. Commits, unless ``commit`` is False
    (the caller commits it with what it writes next, e.g. the payment request's per-form counter)."""
    max_age = int(current_app.config["DONATE_TOKEN_MAX_AGE"])
    if not isinstance(token, str) or not token:
        return "token_missing"
    try:
        data = _serializer().loads(token, max_age=max_age)
    except (BadSignature, SignatureExpired):
        return "token_missing"
    if not isinstance(data, dict) or data.get("f") != form.id or not isinstance(data.get("n"), str):
        return "token_missing"
    now = utcnow()
    immediate()
    fresh = insert_ignore(SpentFormToken, {"nonce": data["n"][:64], "spent_at": now}, ["nonce"])
    # Nonces older than a token's lifetime can go: their tokens no longer verify anyway (every
    # _PURGE_EVERY spends of this process: a deletion per payment was a statement per payment).
    if next(_spends) % _PURGE_EVERY == 0:
        db.session.execute(
            delete(SpentFormToken).where(SpentFormToken.spent_at < now - timedelta(seconds=max_age))
        )
    if commit:
        db.session.commit()
    return None if fresh else "token_replayed"


# -- failed payments per address ---------------------------------------------------------


def _fail_key(client_ip: str | None) -> str:
    return ratelimit.safe_key("donate-fail-ip", network_of(client_ip))


def blocked_for(client_ip: str | None) -> int:
    """Seconds this address is still blocked for after too many failed payments (0: not blocked)."""
    return ratelimit.blocked_for(_fail_key(client_ip))


def payment_failed(form: DonationForm, client_ip: str | None, detail: str | None) -> int:
    """Count a failed payment from this address (and record it); returns seconds it is now blocked for."""
    cfg = current_app.config
    immediate()
    wait = ratelimit.hit(
        _fail_key(client_ip),
        limit=int(cfg["DONATE_IP_MAX_FAILURES"]),
        window=int(cfg["DONATE_IP_FAILURE_WINDOW"]),
        block=int(cfg["DONATE_IP_BLOCK_SECONDS"]),
    )
    refuse("payment_failed", form, client_ip, detail)  # commits the counter too
    if wait:
        log.warning(
            "donation form %s: %s blocked for %d s after %s failed payments",
            form.slug,
            client_ip,
            wait,
            cfg["DONATE_IP_MAX_FAILURES"],
        )
    return wait


# -- honeypot and captcha ------------------------------------------------------------------


def honeypot_filled(data: dict) -> bool:
    return bool(str(data.get(HONEYPOT_FIELD) or "").strip())


def captcha_passes(data: dict, client_ip: str | None) -> bool:
    """The configured captcha check (``DONATE_CAPTCHA_VERIFY``); True when none is configured."""
    target = current_app.config.get("DONATE_CAPTCHA_VERIFY")
    if not target:
        return True
    verify = target if callable(target) else _load(str(target))
    response = data.get(current_app.config["DONATE_CAPTCHA_FIELD"])
    return bool(verify(response if isinstance(response, str) else None, client_ip))


def _load(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)
