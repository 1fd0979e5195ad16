"""Money is integer minor units plus an ISO currency: the currencies Stripe takes, formatting money,
reading what people type, and totalling it per currency."""

import re
from dataclasses import dataclass

from sqlalchemy import Select, func, select

from admin.extensions import db

# -- the currencies Stripe charges in --------------------------------------------------------------

# Stripe's largest charge: "the amount value supports up to eight digits" (99999999 = 999,999.99 USD).
STRIPE_MAX_AMOUNT = 99_999_999


@dataclass(frozen=True)
class Currency:
    """One currency as Stripe's API takes it: ``exponent`` decimal places in its amounts (minor units),
    amounts a multiple of ``step`` minor units, at most ``max_amount`` minor units per charge."""

    code: str
    exponent: int = 2
    step: int = 1
    max_amount: int = STRIPE_MAX_AMOUNT

    @property
    def upper(self) -> str:
        return self.code.upper()


def _table() -> dict[str, Currency]:
    # Stripe's presentment currencies (docs.stripe.com/currencies), lower case as its API wants them.
    two = (
        "usd aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bmd bnd bob brl bsd bwp byn bzd cad "
        "cdf chf cny cop crc cve czk dkk dop dzd egp etb eur fjd fkp gbp gel gip gmd gtq gyd hkd hnl htg "
        "huf idr ils inr jmd kes kgs khr kyd kzt lak lbp lkr lrd lsl mad mdl mkd mmk mnt mop mur mvr mwk "
        "mxn myr mzn nad ngn nio nok npr nzd pab pen pgk php pkr pln qar ron rsd rub sar sbd scr sek sgd "
        "shp sle sos srd std szl thb tjs top try ttd twd tzs uah uyu uzs wst xcd xcg yer zar zmw"
    ).split()
    zero = "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()
    three = "bhd jod kwd omr tnd".split()  # Stripe wants the last digit 0: steps of 0.010
    table = {c: Currency(c) for c in two}
    table.update({c: Currency(c, exponent=0) for c in zero})
    table.update({c: Currency(c, exponent=3, step=10) for c in three})
    table["isk"] = Currency("isk", step=100)  # two decimals in the API, charged in whole krónur
    table["idr"] = Currency("idr", max_amount=999_999_999_999)  # Stripe allows IDR twelve digits
    return table


CURRENCIES: dict[str, Currency] = _table()
ZERO_DECIMAL = frozenset(c for c, cur in CURRENCIES.items() if cur.exponent == 0)
THREE_DECIMAL = frozenset(c for c, cur in CURRENCIES.items() if cur.exponent == 3)


def stripe_currency(code: str | None) -> Currency | None:
    """The Stripe currency ``code`` names (any case), or None for one Stripe does not take."""
    return CURRENCIES.get(code.strip().lower()) if isinstance(code, str) else None


def exponent(currency_code: str) -> int:
    """Decimal places of ``currency_code``'s amounts; 2 for a code not in the table (a stored row may hold
    anything, and is still shown)."""
    found = stripe_currency(currency_code)
    return found.exponent if found is not None else 2


def largest_charge(currency_code: str) -> int:
    """Stripe's largest single charge in ``currency_code``, in minor units."""
    found = stripe_currency(currency_code)
    return found.max_amount if found is not None else STRIPE_MAX_AMOUNT


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
        raise ValueError(
            f"{shown} is not an amount: write digits with at most one decimal point, such as 12.50"
        )
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


# -- amounts typed by donors ------------------------------------------------------------------------


class AmountError(ValueError):
    """What a donor typed is not an amount paydesk can read for certain; the message tells them why."""


_GROUP_CHARS = " \u00a0\u202f\u2009'\u2019"  # spaces (plain, no-break, narrow, thin) and apostrophes
_SYMBOLS = "$£€¥₹₩₽₺₪₫฿₱₦₴₡₲₵₸₭₮₼₾"
_TYPED = re.compile(r"[0-9.,\u00a0\u202f\u2009'\u2019 ]+")
_GROUPED = re.compile(r"[0-9]{1,3}(?:([,. \u00a0\u202f\u2009'\u2019])[0-9]{3})?(?:\1[0-9]{3})*")


def example(currency_code: str) -> str:
    """'15 or 15.50' (two decimals), '1500' (none), '15 or 15.500' (three): what a hint suggests."""
    exp = exponent(currency_code)
    return "1500" if exp == 0 else f"15 or 15.{'50'.ljust(exp, '0')}"


def read_amount(text: str, currency_code: str, *, label: str = "the amount") -> int:
    """An amount a donor typed, in ``currency_code``'s minor units, whether they write a decimal point or a
    decimal comma. Raises :class:`AmountError` with a message for the donor naming ``label``.

    The rule: each mark is read as a decimal separator or as a thousands separator, never guessed.

    - Digits, optionally the currency's code or a currency symbol before or after, no sign.
    - Thousands may be grouped, in threes, by ``,`` ``.`` a space or an apostrophe (one kind throughout).
    - Both ``.`` and ``,``: the last one is the decimal separator (``1,234.56`` and ``1.234,56``).
    - One mark appearing more than once groups thousands (``1,000,000``, ``1.000.000``).
    - One mark appearing once, followed by other than three digits, is the decimal separator
      (``12,50`` and ``12.50`` are both 12.50; ``12,5`` is 12.50).
    - One mark once, followed by exactly three digits (``1,250``, ``1.250``) could be either. When both
      readings are amounts in the currency it is refused, both readings offered ("Enter 1250 or 1.25");
      otherwise it groups thousands (``1,250`` JPY and ``1,255`` USD: no decimal reading).
    - At most the currency's decimal places, in its smallest step (three-decimal currencies: 0.010).
    So "12,50" is 12.50 and never 1,250.00, and no reading is ever 100 or 1000 times another.
    """
    code = (currency_code or "").strip().lower()
    exp = exponent(code)
    shown = text.strip()[:40] if isinstance(text, str) else ""
    not_amount = AmountError(f"Enter {label} as a number, such as {example(code)}.")
    if not isinstance(text, str) or len(text) > 64:
        raise not_amount
    s = text.strip()
    if s[:3].lower() == code:
        s = s[3:]
    elif s[-3:].lower() == code:
        s = s[:-3]
    s = s.strip().strip(_SYMBOLS).strip()
    if not s or not _TYPED.fullmatch(s) or not any(ch.isdigit() for ch in s):
        raise not_amount
    marks = [ch for ch in s if ch in ".,"]
    decimal: str | None = None
    if "." in marks and "," in marks:
        decimal = marks[-1]
        if marks.count(decimal) > 1:
            raise not_amount
    elif len(marks) == 1:
        whole_part, _, after = s.partition(marks[0])
        whole_digits = whole_part.strip(_GROUP_CHARS)
        thousands = len(after) == 3 and after.isdigit() and bool(whole_digits.lstrip("0"))
        if thousands and len(after.rstrip("0")) <= exp:  # a decimal reading is an amount in this currency too
            grouped = "".join(ch for ch in whole_part + after if ch.isdigit())
            as_decimal = "".join(ch for ch in whole_part if ch.isdigit()) + "." + after[: max(exp, 2)]
            raise AmountError(
                f"Enter {grouped} or {as_decimal} as {label}: we cannot tell which one "
                f"\u201c{shown}\u201d means."
            )
        if not thousands:
            decimal = marks[0]
    whole, _, frac = s.partition(decimal) if decimal else (s, "", "")
    if whole and not _GROUPED.fullmatch(whole):
        if not whole.isdigit():  # separators in the wrong places ("1,23,456", "12 34")
            raise not_amount
    if frac and not frac.isdigit():
        raise not_amount
    if not whole and not frac:
        raise not_amount
    digits = "".join(ch for ch in whole if ch.isdigit())
    frac = frac.rstrip("0")
    if len(frac) > exp:
        raise AmountError(
            f"{code.upper()} amounts are whole numbers: enter {label} without decimals."
            if exp == 0
            else f"{code.upper()} amounts have at most {exp} decimal places: enter {label} "
            f"such as {example(code)}."
        )
    if len(digits.lstrip("0")) > len(str(MAX_MINOR_UNITS)):  # before int(): thousands of digits cost time
        return MAX_MINOR_UNITS + 1  # more than any form takes: the caller names its largest gift
    minor = int(digits or "0") * 10**exp + int(frac.ljust(exp, "0") or "0")
    step = (stripe_currency(code) or Currency(code)).step
    if minor % step:
        low = minor - minor % step
        raise AmountError(
            f"{code.upper()} gifts go in steps of {_major(step, exp, group=False, trim=False)}: "
            f"enter {label} as {_major(low, exp, group=False, trim=False)} or "
            f"{_major(low + step, exp, group=False, trim=False)}."
        )
    return minor


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


def money_totals(
    query: Select,
    *,
    amount: str = "amount",
    currency: str = "currency",
    status: str | None = None,
    counted: tuple[str, ...] = (),
    failed: tuple[str, ...] = (),
    **sums: str,
) -> list[MoneyTotal]:
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
        return [
            MoneyTotal(cur_, int(n), **{f: int(v or 0) for f, v in zip(fields, values, strict=True)})
            for cur_, n, *values in rows
        ]
    # per currency and status (a handful of groups, plain sums: cheaper than a CASE per row), added up here
    out: dict[str, MoneyTotal] = {}
    for cur_, st, n, *values in db.session.execute(
        select(cur, sub.c[status], func.count(), *sums_of).group_by(cur, sub.c[status]).order_by(cur)
    ).all():
        total = out.setdefault(cur_, MoneyTotal(cur_, 0, 0))
        if st in counted:
            total.count += int(n)
            for f, v in zip(fields, values, strict=True):
                setattr(total, f, getattr(total, f) + int(v or 0))
        elif st in failed:
            total.failed_count += int(n)
            total.failed += int(values[0] or 0)
    return [t for t in out.values() if t.count or t.failed_count]
