"""Money is integer minor units plus an ISO currency: formatting it, reading what people type, and
totalling it per currency."""

import re
from dataclasses import dataclass

from sqlalchemy import Select, func, select

from .extensions import db

# ISO 4217 currencies Stripe treats as zero-decimal.
ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd",
                "vuv", "xaf", "xof", "xpf"}
THREE_DECIMAL = {"bhd", "jod", "kwd", "omr", "tnd"}


def exponent(currency: str) -> int:
    c = (currency or "").lower()
    return 0 if c in ZERO_DECIMAL else 3 if c in THREE_DECIMAL else 2


def _major(amount: int, exp: int, *, group: bool, trim: bool) -> str:
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**exp)
    body = f"{whole:,}" if group else str(whole)
    return sign + body + (f".{frac:0{exp}d}" if exp and not (trim and frac == 0) else "")


def format_money(amount: int | None, currency: str | None, *, trim: bool = False) -> str:
    """1250 usd -> '12.50 USD', 123456 -> '1,234.56 USD'; ``trim``: '10 USD' rather than '10.00 USD'."""
    if amount is None:
        return ""
    if type(amount) is not int:  # a malformed stored value (SQLite takes anything): say so, never crash
        return f"{str(amount)[:40]!r} (not an amount)"
    exp = exponent(currency if isinstance(currency, str) else "")
    return f"{_major(amount, exp, group=True, trim=trim)} {str(currency or '').upper()}".strip()


# What a Money (BigInteger) column holds, on every database paydesk runs on.
MAX_MINOR_UNITS = 2**63 - 1

# A plain decimal as people type it: digits, at most one point, an optional sign. Not "1e3", "Infinity",
# "NaN", "1_000" or digits of other scripts, all of which Python's Decimal would take.
_AMOUNT = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?")


def parse_money(text: str, currency: str) -> int:
    """'12.50' in usd -> 1250. Raises ValueError with a reason for anything that is not a plain finite
    decimal with at most the currency's decimal places, or that a Money column cannot hold."""
    m = _AMOUNT.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None or not (m[2] or m[3]):
        shown = repr(text[:40]) if isinstance(text, str) else repr(text)[:40]
        raise ValueError(f"{shown} is not an amount: write digits with at most one decimal point, such as 12.50")
    exp = exponent(currency)
    sign, whole, frac = m[1], m[2].lstrip("0"), (m[3] or "").rstrip("0")
    if len(frac) > exp:
        raise ValueError(f"{currency.upper()} amounts have at most {exp} decimal places")
    too_large = f"{text.strip()[:40]!r} is too large: at most {format_money(MAX_MINOR_UNITS, currency)}"
    if len(whole) > len(str(MAX_MINOR_UNITS)):  # before int(): thousands of digits cost time
        raise ValueError(too_large)
    minor = int(whole or "0") * 10**exp + int(frac.ljust(exp, "0") or "0")
    if minor > MAX_MINOR_UNITS:
        raise ValueError(too_large)
    return -minor if sign == "-" else minor


def to_major(amount: int | None, currency: str | None, *, trim: bool = False) -> str:
    """1250 usd -> '12.50' (no grouping, no currency: for CSV files, spreadsheets and what admins type);
    ``trim``: '10' rather than '10.00'."""
    if amount is None:
        return ""
    return _major(int(amount), exponent(currency or ""), group=False, trim=trim)


@dataclass
class MoneyTotal:
    """How many rows, and how much money, in one currency (minor units); fee, net and refunded where the
    rows have them; and, where totals count completed money only, the failed rows apart (``failed_count``,
    ``failed``). What every list's totals, the bulk confirmations and the dashboard show."""

    currency: str
    count: int
    amount: int
    fee: int = 0
    net: int = 0
    refunded: int = 0
    failed_count: int = 0
    failed: int = 0


def money_totals(query: Select, *, amount: str = "amount", currency: str = "currency", status: str | None = None,
                 counted: tuple[str, ...] = (), failed: tuple[str, ...] = (), **sums: str) -> list[MoneyTotal]:
    """Count and sums per currency of the rows ``query`` selects, in one query, currencies in order and
    case-blind. ``amount`` and ``currency`` name the query's columns; ``sums`` maps the other fields of
    :class:`MoneyTotal` to columns (``fee="fee_amount"``). With ``status`` (a column), only rows whose status
    is in ``counted`` are counted and summed, and those in ``failed`` are counted and summed apart; a
    currency with neither is left out."""
    sub = query.subquery()
    cur = func.lower(func.coalesce(sub.c[currency], ""))  # no currency: "", sorted first on every database
    fields = ["amount", *sums]
    sums_of = [func.sum(sub.c[name]) for name in (amount, *sums.values())]
    if status is None:
        rows = db.session.execute(select(cur, func.count(), *sums_of).group_by(cur).order_by(cur)).all()
        return [MoneyTotal(cur_, int(n), **{f: int(v or 0) for f, v in zip(fields, values, strict=True)})
                for cur_, n, *values in rows]
    # per currency and status (a handful of groups, plain sums: cheaper than a CASE per row), added up here
    out: dict[str, MoneyTotal] = {}
    for cur_, st, n, *values in db.session.execute(select(cur, sub.c[status], func.count(), *sums_of)
                                                   .group_by(cur, sub.c[status]).order_by(cur)).all():
        total = out.setdefault(cur_, MoneyTotal(cur_, 0, 0))
        if st in counted:
            total.count += int(n)
            for f, v in zip(fields, values, strict=True):
                setattr(total, f, getattr(total, f) + int(v or 0))
        elif st in failed:
            total.failed_count += int(n)
            total.failed += int(values[0] or 0)
    return [t for t in out.values() if t.count or t.failed_count]
