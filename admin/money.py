"""Money is integer minor units plus an ISO currency; this only formats it."""

# ISO 4217 currencies Stripe treats as zero-decimal.
ZERO_DECIMAL = {"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd",
                "vuv", "xaf", "xof", "xpf"}
THREE_DECIMAL = {"bhd", "jod", "kwd", "omr", "tnd"}


def exponent(currency: str) -> int:
    c = (currency or "").lower()
    return 0 if c in ZERO_DECIMAL else 3 if c in THREE_DECIMAL else 2


def format_money(amount: int | None, currency: str | None) -> str:
    if amount is None:
        return ""
    if type(amount) is not int:  # a malformed stored value (SQLite takes anything): say so, never crash
        return f"{str(amount)[:40]!r} (not an amount)"
    exp = exponent(currency if isinstance(currency, str) else "")
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(int(amount)), 10**exp)
    body = f"{whole:,}" + (f".{frac:0{exp}d}" if exp else "")
    return f"{sign}{body} {str(currency or '').upper()}".strip()


def parse_money(text: str, currency: str) -> int:
    """'12.50' in usd -> 1250. Raises ValueError with a reason."""
    from decimal import Decimal, InvalidOperation

    exp = exponent(currency)
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError) as exc:
        raise ValueError(f"{text!r} is not an amount") from exc
    scaled = value * (10**exp)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{currency.upper()} amounts have at most {exp} decimal places")
    return int(scaled)


def to_major(amount: int | None, currency: str | None) -> str:
    """1250 usd -> '12.50' (no grouping, no currency: for CSV files and spreadsheets)."""
    if amount is None:
        return ""
    exp = exponent(currency or "")
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(int(amount)), 10**exp)
    return f"{sign}{whole}" + (f".{frac:0{exp}d}" if exp else "")
