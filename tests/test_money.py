"""admin.money: amounts typed by people become minor units only when they are plain finite decimals that a
Money column holds; everything else is a ValueError that says why."""

from __future__ import annotations

import pytest

from admin.money import (
    CURRENCIES,
    MAX_MINOR_UNITS,
    AmountError,
    format_money,
    largest_charge,
    parse_money,
    read_amount,
    stripe_currency,
    to_major,
)


@pytest.mark.parametrize(
    "text, currency, minor",
    [
        ("12.50", "usd", 1250),
        ("12.5", "usd", 1250),
        ("12", "usd", 1200),
        (" 0012.", "usd", 1200),
        (".5", "usd", 50),
        ("-3.10", "usd", -310),
        ("+7", "usd", 700),
        ("100.00", "jpy", 100),
        ("1.234", "kwd", 1234),
        ("92233720368547758.07", "usd", MAX_MINOR_UNITS),
    ],
)
def test_plain_decimals_become_minor_units(text, currency, minor):
    assert parse_money(text, currency) == minor


@pytest.mark.parametrize(
    "text",
    [
        "Infinity",
        "inf",
        "-Infinity",
        "NaN",
        "sNaN",
        "-nan",
        "1e3",
        "1E+400",
        "1_000",
        "²",
        "١٢",
        "12.5.0",
        ".",
        "-",
        "",
        "  ",
        "0x10",
        "12,50",
    ],
)
def test_anything_but_a_plain_finite_decimal_is_refused_with_a_reason(text):
    with pytest.raises(ValueError, match="is not an amount"):
        parse_money(text, "usd")


@pytest.mark.parametrize(
    "text", ["92233720368547758.08", "99999999999999999999", "9" * 5000, "-99999999999999999999"]
)
def test_amounts_a_money_column_cannot_hold_are_refused(text):
    with pytest.raises(ValueError, match="too large"):
        parse_money(text, "usd")


def test_too_many_decimal_places_says_how_many_the_currency_has():
    with pytest.raises(ValueError, match="USD amounts have at most 2 decimal places"):
        parse_money("12.345", "usd")
    with pytest.raises(ValueError, match="JPY amounts have at most 0 decimal places"):
        parse_money("12.5", "jpy")
    assert parse_money("12.3400000", "usd") == 1234  # trailing zeros are no extra precision


@pytest.mark.parametrize("value", [None, 12, 12.5, b"12"])
def test_only_text_is_parsed(value):
    with pytest.raises(ValueError, match="is not an amount"):
        parse_money(value, "usd")


@pytest.mark.parametrize(
    "amount, currency, major, shown",
    [
        (1000, "usd", "10", "10 USD"),
        (1250, "usd", "12.50", "12.50 USD"),
        (100000, "usd", "1000", "1,000 USD"),
        (-1000, "usd", "-10", "-10 USD"),
        (5, "usd", "0.05", "0.05 USD"),
        (0, "usd", "0", "0 USD"),
        (1500, "jpy", "1500", "1,500 JPY"),
        (12000, "kwd", "12", "12 KWD"),
        (12300, "kwd", "12.300", "12.300 KWD"),
    ],
)
def test_trimmed_amounts_drop_only_an_all_zero_fraction(amount, currency, major, shown):
    assert to_major(amount, currency, trim=True) == major
    assert format_money(amount, currency, trim=True) == shown
    assert parse_money(major, currency) == amount  # what an admin's form shows reads back the same


def test_formatting_round_trips():
    assert format_money(123456, "usd") == "1,234.56 USD" and to_major(123456, "usd") == "1234.56"
    assert parse_money(to_major(-123456, "kwd"), "kwd") == -123456


# -- the currency table -----------------------------------------------------------------------------


def test_one_table_of_the_currencies_stripe_charges_in():
    assert stripe_currency("USD").exponent == 2 and stripe_currency("jpy").exponent == 0
    assert (stripe_currency("kwd").exponent, stripe_currency("kwd").step) == (3, 10)
    assert stripe_currency("xyz") is None and stripe_currency("") is None and stripe_currency(None) is None
    assert len(CURRENCIES) > 130 and all(len(code) == 3 and code.islower() for code in CURRENCIES)
    assert (
        largest_charge("usd") == 99_999_999 and format_money(largest_charge("usd"), "usd") == "999,999.99 USD"
    )
    assert format_money(largest_charge("jpy"), "jpy") == "99,999,999 JPY"


# -- amounts typed by donors: a decimal comma or point, never a guess -----------------------------


@pytest.mark.parametrize(
    "text, currency, minor",
    [
        ("12,50", "usd", 1250),
        ("12.50", "usd", 1250),
        ("12,5", "eur", 1250),
        ("12", "usd", 1200),
        ("1,234.56", "usd", 123456),
        ("1.234,56", "eur", 123456),
        ("1,000,000", "usd", 100_000_000),
        ("1.000.000", "eur", 100_000_000),
        ("1 234,56", "eur", 123456),
        ("1\u00a0234,56", "eur", 123456),
        ("1'234.50", "chf", 123450),
        ("€12,50", "eur", 1250),
        ("12,50 EUR", "eur", 1250),
        ("$ 15", "usd", 1500),
        ("1,250", "jpy", 1250),
        ("1.250", "jpy", 1250),
        ("1500", "jpy", 1500),
        (",5", "usd", 50),
        ("12,505", "usd", 1_250_500),  # three decimals are no USD amount: the comma can only group thousands
        ("1.250,5", "kwd", 1_250_500),
        ("12.", "usd", 1200),
    ],
)
def test_a_decimal_comma_or_point_reads_the_same(text, currency, minor):
    assert read_amount(text, currency) == minor


@pytest.mark.parametrize(
    "text, currency, message",
    [
        ("1,250", "usd", "Enter 1250 or 1.25 as the other amount: we cannot tell which one “1,250” means."),
        ("1.250", "eur", "Enter 1250 or 1.25 as the other amount: we cannot tell which one “1.250” means."),
        ("1,000", "usd", "Enter 1000 or 1.00 as the other amount"),
        ("1.250", "kwd", "Enter 1250 or 1.250 as the other amount"),
        (
            "12.5055",
            "usd",
            "USD amounts have at most 2 decimal places: enter the other amount such as 15 or 15.50.",
        ),
        ("12,5", "jpy", "JPY amounts are whole numbers: enter the other amount without decimals."),
        (
            "1.255,505",
            "kwd",
            "KWD gifts go in steps of 0.010: enter the other amount as 1255.500 or 1255.510.",
        ),
    ],
)
def test_an_amount_that_could_be_read_two_ways_is_refused_naming_both(text, currency, message):
    with pytest.raises(AmountError) as err:
        read_amount(text, currency, label="the other amount")
    assert str(err.value).startswith(message)


@pytest.mark.parametrize(
    "text",
    [
        "lots",
        "-5",
        "+5",
        "1e3",
        "Infinity",
        "NaN",
        "1_000",
        "²",
        "١٢",
        "1,2,3",
        "1,23,456",
        "12 34",
        "1.000,5,5",
        "1,000.5.5",
        ".",
        ",",
        "",
        "12..5",
        "0x10",
        "12 EUR",
        "1" + " " * 80 + "000",
    ],
)
def test_anything_else_is_not_an_amount(text):
    with pytest.raises(AmountError, match="Enter the other amount as a number, such as 15 or 15.50."):
        read_amount(text, "usd", label="the other amount")


def test_huge_numbers_are_read_as_more_than_any_form_takes_without_costing_time():
    assert read_amount("99999999999", "usd") == 9_999_999_999_900
    assert read_amount("9" * 60, "usd") > MAX_MINOR_UNITS


@pytest.mark.postgres
def test_money_totals_counts_and_sums_per_currency_whatever_its_case(app, offline_processor):
    """One helper for every list's totals (contributions, payments, intents, the dashboard): currencies
    group case-blind, in order, with the sums asked for."""
    from sqlalchemy import select

    from admin.extensions import db
    from admin.models import Contact, Contribution, StripePaymentIntent
    from admin.money import MoneyTotal, money_totals

    contact = Contact(display_name="Ada", email="ada@example.org")
    db.session.add(contact)
    for amount, currency, fee in ((1000, "usd", 59), (2500, "USD", 103), (700, "eur", 40)):
        db.session.add(
            Contribution(
                processor_id=offline_processor.id,
                contact=contact,
                amount=amount,
                currency=currency,
                fee_amount=fee,
                net_amount=amount - fee,
                refunded_amount=0,
                status="Completed",
            )
        )
    for n, (amount, currency) in enumerate(((500, "usd"), (300, "USD"), (900, None))):
        db.session.add(
            StripePaymentIntent(
                stripe_intent_id=f"pi_{n}",
                processor_id=offline_processor.id,
                amount=amount,
                currency=currency,
            )
        )
    db.session.commit()

    assert money_totals(
        select(Contribution), fee="fee_amount", net="net_amount", refunded="refunded_amount"
    ) == [MoneyTotal("eur", 1, 700, fee=40, net=660), MoneyTotal("usd", 2, 3500, fee=162, net=3338)]
    assert money_totals(select(Contribution).where(Contribution.amount > 5000)) == []
    assert money_totals(select(StripePaymentIntent)) == [MoneyTotal("", 1, 900), MoneyTotal("usd", 2, 800)]
    from admin.services.intents import queries as intents  # what /intents and its bulk confirmation show

    assert intents.money_totals(intents.intents_query(intents.IntentFilter())) == money_totals(
        select(StripePaymentIntent)
    )
