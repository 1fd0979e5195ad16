"""Server-rendered charts: what a reader without the picture gets (title, description in words, the
numbers as a table), bars and lines for labelled series, and the dashboard's counts per period."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from admin.charts import Series, chart, nice_ceiling
from admin.extensions import db
from admin.models import Contribution, StripeEvent
from admin.services.monitoring.dashboard import contribution_charts, counts_per, periods


def test_a_bar_chart_says_in_words_and_numbers_what_it_draws():
    html = str(chart("Gifts per day", ["01 Nov", "02 Nov", "03 Nov"], [Series("Completed", [2, 0, 5])]))
    assert html.count("<rect ") == 3
    assert re.search(r'<svg [^>]*role="img" aria-labelledby="(chart\d+)-t \1-d"', html)
    assert "<title id=" in html and "Gifts per day" in html
    desc = re.search(r"<desc [^>]*>(.*?)</desc>", html)[1]
    assert desc == "3 periods from 01 Nov to 03 Nov. Completed: 7 in all, most on 03 Nov (5)."
    rows = re.findall(r'<tr><th scope="row">([^<]+)</th><td class="num">([^<]+)</td></tr>', html)
    assert rows == [("01 Nov", "2"), ("02 Nov", "0"), ("03 Nov", "5")]
    assert " style=" not in html and "<script" not in html  # the CSP allows neither


def test_a_line_chart_of_two_series_and_bad_input():
    html = str(
        chart(
            "Failures", ["a", "b"], [Series("Failed <gifts>", [1, 3]), Series("Errors", [0, 2])], kind="line"
        )
    )
    assert html.count("<polyline ") == 2 and 'class="series-1"' in html
    assert "Failed &lt;gifts&gt;" in html and "<gifts>" not in html  # escaped
    assert '<th scope="col" class="num">Errors</th>' in html
    with pytest.raises(ValueError):
        chart("x", ["a"], [Series("s", [1, 2])])
    with pytest.raises(ValueError):
        chart("x", ["a"], [Series("s", [1])], kind="pie")
    assert [nice_ceiling(v) for v in (0, 1, 3, 7, 11, 240)] == [1, 1, 5, 10, 20, 250]


@pytest.mark.postgres
def test_counts_per_day_and_month_are_zero_filled(app, backend, offline_processor):
    now = datetime(2026, 11, 20, 15, 30)
    p = offline_processor.id
    for n, (when, status) in enumerate(
        [
            (now, "Completed"),
            (now - timedelta(hours=10), "Completed"),
            (now - timedelta(days=2), "Partially refunded"),
            (now, "Failed"),
            (now - timedelta(days=40), "Completed"),
            (now - timedelta(days=400), "Completed"),
        ]
    ):
        db.session.add(
            Contribution(
                processor_id=p,
                amount=100,
                currency="usd",
                status=status,
                trxn_id=f"ch_{n}",
                receive_date=when,
            )
        )
    db.session.add(
        StripeEvent(
            processor_id=p,
            event_id="evt_c1",
            type="x",
            raw="{}",
            status="error",
            received_at=now - timedelta(days=1),
        )
    )
    db.session.commit()
    starts, counts = counts_per(
        Contribution.receive_date, [Contribution.status == "Completed"], "day", 3, now
    )
    assert starts == [datetime(2026, 11, 18), datetime(2026, 11, 19), datetime(2026, 11, 20)]
    assert counts == [0, 0, 2]
    assert periods("month", 3, now) == [datetime(2026, 9, 1), datetime(2026, 10, 1), datetime(2026, 11, 1)]
    assert periods("hour", 2, now) == [datetime(2026, 11, 20, 14), datetime(2026, 11, 20, 15)]

    charts = contribution_charts(now)
    assert len(charts["per_day"].labels) == 30 and charts["per_day"].labels[-1] == "20 Nov"
    assert sum(charts["per_day"].series[0][1]) == 3  # completed or partially refunded, last 30 days
    assert charts["per_month"].labels[-2:] == [
        "Oct 2026",
        "Nov 2026",
    ]  # a month and its year, never read as a day
    assert charts["per_month"].series[0][1][-2:] == [1, 3] and sum(charts["per_month"].series[0][1]) == 4
    failed, errors = (values for _, values in charts["failures"].series)
    assert failed[-1] == 1 and errors[-2] == 1 and sum(failed) + sum(errors) == 2


def test_the_dashboard_shows_its_six_charts(client, auth):
    auth.login("viewer@example.org", "viewer")
    html = client.get("/").get_data(as_text=True)
    for title in (
        "Completed contributions per day, last 30 days",
        "Completed contributions per month, last 12 months",
        "Failures per day, last 30 days",
        "Failed payments per hour, last 7 days",
        "Events per minute, last hour: received and processed",
        "Events in error per hour, last 48 hours",
    ):
        assert "<title id=" in html and title in html
    assert html.count('role="img"') == 6 and html.count("Show the numbers") == 6
