"""A local Stripe stand-in with a fixed latency, for the worker's scale-out test and ``bench/scaleout.py``.

Not a benchmark itself (``make bench`` skips it: no ``main`` target line). It answers what the webhook worker
reads from Stripe, after sleeping ``--latency`` seconds per request (Stripe's network and processing time):

* ``GET /v1/<resource>/<id>``: the object with that id from the objects it was given (fixtures3-shaped,
  built by :func:`scene`), else Stripe's 404 ``resource_missing``;
* ``GET /v1/<resource>`` and ``GET /v1/<resource>/<id>/<list>``: an empty list page;
* ``GET /_standin/stats``: ``{"requests": n}`` (no latency).

    python bench/stripe_standin.py --port 12111 --latency 0.05 --objects objects.json

Only 127.0.0.1 is served. :func:`scene` also makes the events (signed bodies are the caller's business).
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MIX = [  # (type, weight): roughly what a donation site receives
    ("payment_intent.created", 2),
    ("payment_intent.succeeded", 3),
    ("charge.succeeded", 3),
    ("invoice.paid", 2),
    ("invoice.payment_succeeded", 2),
    ("customer.subscription.updated", 1),
    ("customer.updated", 1),
    ("charge.refunded", 1),
]


def scene(
    n: int, *, seed: int = 7, id_prefix: str = "evt_scale_", per_donor: list[str] | None = None
) -> tuple[list[dict], dict[str, dict]]:
    """``n`` real-shaped events (a new donor every 8: customer, intent, charge, subscription, invoice) and the
    objects a worker may read back, by id (balance transactions included). Each donor's 8 events are drawn
    from ``MIX``, or are ``per_donor``'s 8 types in that order."""
    sys.path.insert(0, str(ROOT / "tests"))
    import stripe_objects as so

    rng = random.Random(seed)
    types = [t for t, w in MIX for _ in range(w)]
    events: list[dict] = []
    objects: dict[str, dict] = {}
    current: dict = {}
    for i in range(n):
        if i % 8 == 0:
            cus = so.customer(name=f"Donor {i}", email=f"donor{i}@example.org")
            pi = so.payment_intent(customer=cus["id"], amount=rng.choice([1000, 2500, 5000]))
            ch = so.charge(customer=cus["id"], payment_intent=pi["id"], amount=pi["amount"])
            pi["latest_charge"] = ch["id"]
            sub = so.subscription(customer=cus["id"], amount=1500)
            inv = so.invoice(customer=cus["id"], subscription=sub["id"], amount=1500)
            current = {
                "customer": cus,
                "payment_intent": pi,
                "charge": ch,
                "subscription": sub,
                "invoice": inv,
            }
            for o in current.values():
                objects[o["id"]] = o
            objects[ch["balance_transaction"]] = so.balance_transaction(ch)
        kind = per_donor[i % 8] if per_donor else rng.choice(types)
        if kind.startswith("payment_intent"):
            data = current["payment_intent"]
        elif kind.startswith("charge"):
            data = dict(current["charge"], refunded=kind == "charge.refunded")
        elif kind.startswith("invoice"):
            data = current["invoice"]
        elif kind.startswith("customer.subscription"):
            data = current["subscription"]
        else:
            data = current["customer"]
        events.append(so.event(kind, data, event_id=f"{id_prefix}{i:07d}"))
    return events, objects


class StandIn(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, port: int, latency: float, objects: dict[str, dict]):
        super().__init__(("127.0.0.1", port), Handler)
        self.latency = latency
        self.objects = objects
        self.requests = collections.Counter()
        self.lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    server: StandIn
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Request-Id", f"req_standin{time.monotonic_ns()}")
        self.end_headers()
        self.wfile.write(data)

    def _answer(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/_standin/stats":
            self._send(200, {"requests": sum(self.server.requests.values())})
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        time.sleep(self.server.latency)
        with self.server.lock:
            self.server.requests[self.command] += 1
        parts = [p for p in path.split("/") if p]
        if len(parts) == 3 and parts[0] == "v1":
            obj = self.server.objects.get(parts[2])
            if obj is not None:
                self._send(200, obj)
                return
            self._send(
                404,
                {
                    "error": {
                        "type": "invalid_request_error",
                        "code": "resource_missing",
                        "message": f"No such {parts[1].rstrip('s')}: '{parts[2]}'",
                    }
                },
            )
            return
        self._send(200, {"object": "list", "data": [], "has_more": False, "url": path})

    do_GET = do_POST = do_DELETE = _answer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, help="serve on 127.0.0.1:PORT")
    p.add_argument("--latency", type=float, default=0.05, help="seconds slept per request (default 0.05)")
    p.add_argument("--objects", help="a JSON file: {id: object}")
    args = p.parse_args(argv)
    if args.port is None:  # `make bench` runs every bench/*.py: this one is served, not run
        print("bench/stripe_standin.py is the Stripe stand-in bench/scaleout.py serves; nothing to run here.")
        return 0
    objects = json.loads(Path(args.objects).read_text()) if args.objects else {}
    server = StandIn(args.port, args.latency, objects)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
