"""``/metrics``: what paydesk is doing, in Prometheus's text format (prometheus-client).

Two kinds of figures:

- **Counted as it happens**, in the process where it happens: webhook deliveries by result, events processed
  and their handlers' duration by type, Stripe requests by outcome and retries, donation-form refusals by
  reason. Under gunicorn (and ``worker`` processes given the same ``PROMETHEUS_MULTIPROC_DIR``) every process
  writes its own files and ``/metrics`` adds them up (``multiproc``); without that directory each process
  counts in memory (``flask run``, tests).
- **Read from the database when scraped** (:class:`DatabaseCollector`): the event queue by status, the age
  of the oldest queued event, the outbox backlog, jobs by kind and status, the freshest worker heartbeat.
  Every server answers these alike, so any one of them can be scraped.

Labels have bounded values: event types outside Stripe's list are ``other``, Stripe operations are the
gateway's ``resource.method`` names, results and reasons are paydesk's own words.
"""

from __future__ import annotations

import logging
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

from admin.services.monitoring import multiproc

log = logging.getLogger(__name__)
disable_created_metrics()  # no "_created" series beside every counter: Prometheus does not need them

# What this process counts. Registered in a registry of paydesk's own (not the library's global one), so
# several apps in one process (tests) share them without registering twice.
REGISTRY = CollectorRegistry(auto_describe=True)

WEBHOOK_DELIVERIES = Counter(
    "paydesk_webhook_deliveries", "Webhook deliveries answered, by result", ["result"], registry=REGISTRY
)
EVENTS_PROCESSED = Counter(
    "paydesk_events_processed",
    "Events the worker finished an attempt on, by type and the status it left",
    ["type", "status"],
    registry=REGISTRY,
)
HANDLER_SECONDS = Histogram(
    "paydesk_event_handler_duration_seconds",
    "Time to process one event (handler, Stripe reads, commit), by type",
    ["type"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
STRIPE_REQUESTS = Counter(
    "paydesk_stripe_requests",
    "Requests sent to Stripe (each retry counts), by operation and outcome "
    "(ok, error: Stripe refused it, transient: 429/5xx/network)",
    ["operation", "outcome"],
    registry=REGISTRY,
)
STRIPE_RETRIES = Counter(
    "paydesk_stripe_retries",
    "Stripe requests repeated after a transient failure, by operation",
    ["operation"],
    registry=REGISTRY,
)
STRIPE_SECONDS = Histogram(
    "paydesk_stripe_request_duration_seconds",
    "Time waiting for one Stripe answer",
    registry=REGISTRY,
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30),
)
DONATION_REFUSALS = Counter(
    "paydesk_donation_refusals", "Donation-form requests refused, by reason", ["reason"], registry=REGISTRY
)

# webhook delivery results (the label's only values)
ACCEPTED, DUPLICATE, REFUSED_SIGNATURE, REFUSED_BODY, TOO_LARGE, UNKNOWN_PROCESSOR, UNAVAILABLE = (
    "accepted",
    "duplicate",
    "bad_signature",
    "bad_body",
    "too_large",
    "unknown_processor",
    "unavailable",
)


def event_type_label(event_type: str | None) -> str:
    from admin.stripe_event_types import EVENT_TYPES

    return event_type if event_type in EVENT_TYPES else "other"


def webhook_delivery(result: str) -> None:
    WEBHOOK_DELIVERIES.labels(result).inc()


def event_processed(event_type: str | None, status: str, seconds: float) -> None:
    label = event_type_label(event_type)
    EVENTS_PROCESSED.labels(label, status).inc()
    HANDLER_SECONDS.labels(label).observe(seconds)


def donation_refused(reason: str) -> None:
    DONATION_REFUSALS.labels(reason).inc()


def stripe_request(
    operation: str, outcome: str, seconds: float, retrying: bool, _request_id: str | None = None
) -> None:
    """The gateway's observer (``stripe_gateway.observe``): one request to Stripe has been answered."""
    STRIPE_REQUESTS.labels(operation, outcome).inc()
    STRIPE_SECONDS.observe(seconds)
    if retrying:
        STRIPE_RETRIES.labels(operation).inc()


# -- read from the database at scrape time ---------------------------------------------------------


class DatabaseCollector:
    """Gauges read from the database when ``/metrics`` is scraped (needs an app context)."""

    def collect(self):
        from admin.services.monitoring import health

        up = GaugeMetricFamily("paydesk_database_up", "1 when the database answered this scrape's queries")
        try:
            snap = health.queue_snapshot()
        except Exception as exc:  # noqa: BLE001 - a scrape says the database is down rather than failing
            from admin.dbutil import rollback_quietly

            rollback_quietly()
            log.warning("metrics: database queries failed: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        queue = GaugeMetricFamily(
            "paydesk_event_queue", "Stored events waiting or stuck, by status", labels=["status"]
        )
        for status, n in sorted(snap.events_by_status.items()):
            queue.add_metric([status], n)
        yield queue
        oldest = GaugeMetricFamily(
            "paydesk_event_queue_oldest_age_seconds",
            "How long the oldest due event has waited for a worker (since it was received, or its "
            "retry fell due); 0 when none is waiting",
        )
        oldest.add_metric([], snap.oldest_queued_seconds or 0)
        yield oldest
        outbox = GaugeMetricFamily(
            "paydesk_outbox_backlog",
            "Side effects (receipts, Stripe metadata) not done yet, by kind and status",
            labels=["kind", "status"],
        )
        for (kind, status), n in sorted(snap.outbox.items()):
            outbox.add_metric([kind, status], n)
        yield outbox
        jobs = GaugeMetricFamily(
            "paydesk_jobs", "Background jobs, by kind and status", labels=["kind", "status"]
        )
        for (kind, status), n in sorted(snap.jobs.items()):
            jobs.add_metric([kind, status], n)
        yield jobs
        beat = GaugeMetricFamily(
            "paydesk_worker_heartbeat_age_seconds",
            "Seconds since the freshest worker heartbeat (NaN: no worker has reported)",
        )
        beat.add_metric([], float("nan") if snap.heartbeat_seconds is None else snap.heartbeat_seconds)
        yield beat
        workers = GaugeMetricFamily("paydesk_workers", "Worker processes whose heartbeat is fresh")
        workers.add_metric([], snap.workers_alive)
        yield workers


def render() -> tuple[bytes, str]:
    """The text ``/metrics`` answers with, and its content type."""
    started = time.perf_counter()
    registry = multiproc.collector_registry() if multiproc.directory() else CollectorRegistry()
    if not multiproc.directory():
        registry.register(_ThisProcess())
    registry.register(DatabaseCollector())
    body = generate_latest(registry)
    log.debug("metrics rendered in %.1f ms", (time.perf_counter() - started) * 1000)
    return body, CONTENT_TYPE_LATEST


class _ThisProcess:
    """This process's own counters (single-process mode)."""

    def collect(self):
        return REGISTRY.collect()
