"""What the payment operations share: the parameters staff type (money, metadata rows, yes/no boxes) read
the same way from a page's form and from the CLI's options (idempotency keys: ``services/core/idempotency``)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from admin.errors import ServiceError, check_text
from admin.money import Currency, format_money, parse_money, stripe_currency

# Stripe's limits on metadata: 50 keys, keys up to 40 characters without square brackets, values up to 500.
METADATA_MAX_KEYS = 50
METADATA_KEY_MAX = 40
METADATA_VALUE_MAX = 500


def money(
    value: int | str | None, currency: str, field: str, label: str, *, required: bool = True
) -> int | None:
    """An amount in minor units from minor units (int) or text in major units ("12.50"): positive, at most
    Stripe's largest charge in ``currency`` and a whole number of its steps (0.010 KWD, 1 ISK), as Stripe
    would refuse otherwise (the same bounds as transfers and donation forms)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ServiceError(f"{label}: give an amount", field=field)
        return None
    if isinstance(value, str):
        try:
            value = parse_money(value.strip(), currency)
        except ValueError as err:
            raise ServiceError(f"{label}: {err}", field=field) from None
    if value <= 0:
        raise ServiceError(f"{label}: give an amount above zero", field=field)
    cur = stripe_currency(currency) or Currency(currency)  # a stored row's currency is still refundable
    if value > cur.max_amount:
        raise ServiceError(
            f"{label}: at most {format_money(cur.max_amount, currency)}, Stripe's largest charge", field=field
        )
    if value % cur.step:
        raise ServiceError(
            f"{label}: {cur.upper} amounts go in steps of {format_money(cur.step, currency)}", field=field
        )
    return int(value)


def currency_code(value: str | None) -> str:
    """A currency Stripe charges in (lower case), or a ``ServiceError`` naming the field."""
    cur = (value or "").strip().lower()
    if not re.fullmatch(r"[a-z]{3}", cur):
        raise ServiceError("Currency: a three-letter ISO code such as usd or eur", field="currency")
    if stripe_currency(cur) is None:
        raise ServiceError(
            f"Currency: {cur.upper()} is not a currency Stripe takes (usd, eur, gbp, ...)", field="currency"
        )
    return cur


def flag(value: Any) -> bool:
    """A checkbox or a CLI flag: "1", "on", "true", "yes" or True are yes."""
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() in ("1", "on", "true", "yes", "y")


def metadata_rows(keys: Iterable[str | None], values: Iterable[str | None]) -> dict[str, str]:
    """Key/value rows (the form's repeated ``metadata_key``/``metadata_value``; empty rows skipped) as Stripe
    metadata, checked against Stripe's limits first."""
    out: dict[str, str] = {}
    for key, value in zip(keys, values, strict=False):
        key = check_text(key, "Metadata key", "metadata")
        value = check_text(value, "Metadata value", "metadata")
        if not key and not value:
            continue
        if not key:
            raise ServiceError(f"Metadata: the value {value[:40]!r} has no key", field="metadata")
        if len(key) > METADATA_KEY_MAX or "[" in key or "]" in key:
            raise ServiceError(
                f"Metadata: the key {key[:50]!r} is too long or has square brackets (Stripe takes "
                f"at most {METADATA_KEY_MAX} characters, no [ or ])",
                field="metadata",
            )
        if len(value) > METADATA_VALUE_MAX:
            raise ServiceError(
                f"Metadata: the value of {key!r} is longer than {METADATA_VALUE_MAX} characters",
                field="metadata",
            )
        if key in out:
            raise ServiceError(f"Metadata: the key {key!r} is given twice", field="metadata")
        out[key] = value
    if len(out) > METADATA_MAX_KEYS:
        raise ServiceError(f"Metadata: at most {METADATA_MAX_KEYS} keys", field="metadata")
    return out


def metadata_pairs(pairs: Iterable[str]) -> dict[str, str]:
    """The CLI's repeated ``--metadata key=value`` as the same rows."""
    keys, values = [], []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ServiceError(f"Metadata: {pair!r} is not key=value", field="metadata")
        keys.append(key)
        values.append(value)
    return metadata_rows(keys, values)


def form_metadata(form: Mapping) -> dict[str, str]:
    getlist = getattr(form, "getlist", None)
    if getlist is not None:
        return metadata_rows(getlist("metadata_key"), getlist("metadata_value"))
    if form.get("metadata_key") is not None:  # a plain dict with the form's lists (tests, the API)
        keys: Any = form.get("metadata_key")
        values: Any = form.get("metadata_value") or []
        if isinstance(keys, str):
            keys, values = [keys], [values] if isinstance(values, str) else values
        return metadata_rows(keys, values)
    meta = form.get("metadata") or {}
    if isinstance(meta, dict):
        return metadata_rows(meta.keys(), meta.values())
    return metadata_pairs(meta)


def shown(amount: int, currency: str) -> str:
    return format_money(amount, currency)
