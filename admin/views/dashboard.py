"""The dashboard at ``/``: the counts staff look at first, and charts of giving and failures."""

from __future__ import annotations

from flask import Blueprint, render_template

from admin.charts import Series, chart
from admin.htmx import is_partial
from admin.security import role_required
from admin.services.monitoring.alarms import failures_per_hour
from admin.services.monitoring.dashboard import contribution_charts, dashboard_counts
from admin.services.monitoring.health import queue_health

bp = Blueprint("dashboard", __name__)


def _queue_charts(health) -> list:
    """The queue's health: is it keeping up (arrivals and processing per minute), is anything failing?"""
    return [
        chart(
            "Events per minute, last hour: received and processed",
            [m.strftime("%H:%M") for m in health.minutes],
            [
                Series("Received", health.received_per_minute),
                Series("Processed", health.processed_per_minute),
            ],
            kind="line",
            label_every=10,
        ),
        chart(
            "Events in error per hour, last 48 hours",
            [h.strftime("%a %H:00") for h in health.hours],
            [Series("Events in error", health.errors_per_hour)],
            label_every=12,
        ),
    ]


def _charts() -> list:
    data = contribution_charts()
    hourly = failures_per_hour(days=7)
    series = {name: [Series(label, values) for label, values in d.series] for name, d in data.items()}
    return [
        chart(
            "Completed contributions per day, last 30 days",
            data["per_day"].labels,
            series["per_day"],
            label_every=5,
        ),
        chart(
            "Completed contributions per month, last 12 months",
            data["per_month"].labels,
            series["per_month"],
            label_every=2,
        ),
        chart(
            "Failures per day, last 30 days",
            data["failures"].labels,
            series["failures"],
            kind="line",
            label_every=5,
        ),
        chart(
            "Failed payments per hour, last 7 days (what the card-testing alarm counts)",
            [hour.strftime("%a %d %H:00") for hour, _ in hourly],
            [Series("Failed payments", [n for _, n in hourly])],
            label_every=48,
        ),
    ]


@bp.get("/")
@role_required("viewer")
def index():
    counts = dashboard_counts()
    health = queue_health()
    template = "dashboard/_counts.html" if is_partial() else "dashboard/index.html"
    return render_template(
        template, counts=counts, charts=_charts(), health=health, queue_charts=_queue_charts(health)
    )
