"""paydesk for ``bench/donate.py``: the real app, plus a ``Server-Timing`` header on every response.

``app;dur=`` is the server's time for the request (from the WSGI call until the response starts),
``stripe;dur=`` the part of it spent waiting on Stripe (localstripe) in ``Gateway.call``, so the
benchmark can report paydesk's own time with Stripe's excluded, and ``cpu;dur=`` the CPU time the
worker spent on it (which a busy machine does not inflate). Benchmark use only.

    gunicorn --pythonpath bench donate_wsgi:app
"""

from __future__ import annotations

import threading
import time

from admin import create_app
from admin.stripe_gateway import Gateway

_clock = threading.local()
_call = Gateway.call


def _timed_call(self, *args, **kwargs):
    start = time.perf_counter()
    try:
        return _call(self, *args, **kwargs)
    finally:
        _clock.stripe = getattr(_clock, "stripe", 0.0) + time.perf_counter() - start


Gateway.call = _timed_call


class ServerTiming:
    def __init__(self, wsgi):
        self.wsgi = wsgi

    def __call__(self, environ, start_response):
        _clock.stripe = 0.0
        start, cpu = time.perf_counter(), time.thread_time()

        def timed_start(status, headers, exc_info=None):
            total = (time.perf_counter() - start) * 1000
            used = (time.thread_time() - cpu) * 1000
            headers.append(
                (
                    "Server-Timing",
                    f"app;dur={total:.3f}, stripe;dur={_clock.stripe * 1000:.3f}, cpu;dur={used:.3f}",
                )
            )
            return start_response(status, headers, exc_info)

        return self.wsgi(environ, timed_start)


if __name__ == "__main__":  # `make bench` runs every bench/*.py: this one is served, not run
    print("bench/donate_wsgi.py is the app bench/donate.py serves under gunicorn; nothing to run here.")
else:
    app = ServerTiming(create_app())
