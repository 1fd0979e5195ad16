"""gunicorn settings for paydesk: ``gunicorn -c gunicorn.conf.py wsgi:app`` (``make demo`` uses them too).

Command-line options win over this file (``-b 0.0.0.0:8000``, ``-w 4``); ``WEB_CONCURRENCY`` sets the
number of worker processes.

- Threaded workers (``gthread``): a client that sends its headers and then trickles its body holds one
  thread, not a whole worker process, so a few slow clients cannot stop the app (webhook endpoint and
  ``/healthz`` included) from answering. Waiting for a request's first bytes happens in the main loop,
  not in a thread.
- Production still runs behind a buffering reverse proxy (nginx buffers request bodies by default):
  only the proxy then ever waits on a slow client; see README "Running in production".
- Forwarded headers are interpreted by paydesk alone (``PAYDESK_TRUSTED_PROXIES``, Werkzeug ProxyFix),
  so gunicorn is told to trust them from nobody.
- The access log writes each request's path without its query string (nor the Referer's): staff
  searches (``/events?q=ada@example.org``), filters and signed donor links (``?donor=...``) carry
  personal data and secrets, and a log is kept and shared more widely than the database.
"""

import os
import shutil
import tempfile

from gunicorn.glogging import Logger

# Prometheus metrics from every worker process (admin/services/monitoring/multiproc.py): prometheus-client reads
# PROMETHEUS_MULTIPROC_DIR when the app first imports it, in each worker, after this file has set it. Given
# in the environment (deploy/: /run/paydesk/metrics, shared with the paydesk worker on this host, so /metrics
# shows its events too) it is used as it is; unset, this server gets a directory of its own, removed when it
# stops. Files of workers that have exited are folded into one archive per metric type (child_exit).
_OWN_METRICS_DIR = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _OWN_METRICS_DIR = tempfile.mkdtemp(prefix="paydesk-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _OWN_METRICS_DIR
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)


def _no_query(uri: str) -> str:
    path, sep, _query = (uri or "").partition("?")
    return path + ("?\u2026" if sep else "")  # "/events?…": there was a query, not what it said


class AccessLog(Logger):
    """gunicorn's logger with every query string left out of the access log's fields."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        atoms["r"] = f"{environ.get('REQUEST_METHOD')} {_no_query(environ.get('RAW_URI', ''))} " \
                     f"{environ.get('SERVER_PROTOCOL')}"
        atoms["q"] = ""
        atoms["f"] = _no_query(atoms.get("f", "-"))
        for key in ("{referer}i", "{raw_uri}e", "{request_uri}e"):
            if key in atoms:
                atoms[key] = _no_query(atoms[key])
        atoms.pop("{query_string}e", None)
        return atoms

    # While the database is unavailable, paydesk answers 503 and counts the refusals in its own log: one
    # traceback, then "database unavailable: N requests refused in the last 10 s" (PAYDESK_OUTAGE_LOG_INTERVAL).
    # The access log leaves those requests out (the app marks them in the environ: admin/outage.py
    # REFUSED_ENVIRON_KEY), so an outage under Stripe's retries does not write a line per refused delivery.
    def access(self, resp, req, environ, request_time):
        if environ.get("paydesk.outage_refused"):
            return
        super().access(resp, req, environ, request_time)

def _tidy_metrics(server) -> None:
    from admin.services.monitoring import multiproc

    try:
        multiproc.tidy()
    except Exception:  # noqa: BLE001 - metrics bookkeeping must never stop the server
        server.log.exception("could not tidy the metrics directory")


def on_starting(server):
    _tidy_metrics(server)  # left by a previous run (a shared directory that outlived it)


def child_exit(server, worker):
    _tidy_metrics(server)


def on_exit(server):
    if _OWN_METRICS_DIR:
        shutil.rmtree(_OWN_METRICS_DIR, ignore_errors=True)


bind = "127.0.0.1:8000"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
worker_class = "gthread"
threads = 8  # per worker: requests served at once by one process (the database pool holds 5 + 10)
timeout = 30  # a worker that has not reported for this long (stuck) is restarted
graceful_timeout = 30  # on SIGTERM/HUP, requests in progress get this long to finish
keepalive = 5  # seconds an idle kept-alive connection is held open

# Request limits (gunicorn's defaults, written down): one request line, header count and size.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190

# X-Forwarded-* are paydesk's to interpret (PAYDESK_TRUSTED_PROXIES), not gunicorn's.
forwarded_allow_ips = ""

# method, path (no query string) and status: never bodies. With PAYDESK_LOG_FORMAT=json paydesk writes its
# own JSON line per request (request id, duration, ...) and gunicorn's text line is left out.
accesslog = None if os.environ.get("PAYDESK_LOG_FORMAT", "").strip('"').lower() == "json" else "-"
logger_class = AccessLog
errorlog = "-"

# gunicorn >= 25 opens a control socket at one fixed path per user; several paydesk servers on one machine
# (web, demo, tests) would fight over it. Manage the server with signals (HUP, TERM) instead.
control_socket_disable = True

