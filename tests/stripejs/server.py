"""The Stripe.js test double's own origin: serves ``stripe-double.js`` and the 3-D Secure frame, and
passes the few browser-side Stripe API calls on to localstripe.

Stripe lets a browser holding only the publishable key create PaymentMethods and read or confirm a
PaymentIntent whose client secret it has; localstripe insists on a secret key for those. This server
stands in for that part of Stripe: it accepts exactly those calls with a ``pk_`` key (checking the
client secret where Stripe does) and forwards them to localstripe with a secret key. Everything is
created for real in localstripe; nothing is faked here.

Tests start it in a thread (:func:`serve`); ``make demo`` runs it as a process:

    python tests/stripejs/server.py --port 8421 --stripe http://127.0.0.1:8420
"""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

import requests
from flask import Flask, Response, abort, jsonify, request, send_file
from werkzeug.serving import make_server

HERE = Path(__file__).resolve().parent
FORWARD_KEY = "sk_test_stripejs_double"  # localstripe keeps one store whatever the secret key


def create_app(localstripe_url: str) -> Flask:
    app = Flask(__name__)
    base = localstripe_url.rstrip("/")
    auth = {"Authorization": f"Bearer {FORWARD_KEY}"}
    app.config["CALLS"] = []  # (method, path) of every API call the browser made: tests may look

    def publishable_key() -> str:
        key = request.values.get("key", "")
        if not key.startswith("pk_"):
            abort(
                Response(
                    '{"error": {"message": "A publishable key (pk_...) is required."}}',
                    401,
                    mimetype="application/json",
                )
            )
        return key

    def relay(resp: requests.Response) -> Response:
        return Response(resp.content, resp.status_code, mimetype="application/json")

    def form_without(*names: str) -> list[tuple[str, str]]:
        return [(k, v) for k, v in request.form.items(multi=True) if k not in names]

    def intent_for(pi_id: str) -> dict:
        """The intent, if the request holds its client secret (as Stripe checks); else 404 as Stripe answers."""
        resp = requests.get(f"{base}/v1/payment_intents/{pi_id}", headers=auth, timeout=10)
        body = resp.json()
        if resp.status_code != 200 or body.get("client_secret") != request.values.get("client_secret"):
            abort(
                Response(
                    '{"error": {"message": "No such payment_intent.", "code": "resource_missing"}}',
                    404,
                    mimetype="application/json",
                )
            )
        return body

    @app.before_request
    def note():
        if request.path.startswith("/v1/"):
            app.config["CALLS"].append((request.method, request.path))

    @app.after_request
    def cors(response: Response) -> Response:
        response.headers["Access-Control-Allow-Origin"] = "*"
        response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        return response

    @app.get("/v3/")
    def stripe_js():
        return send_file(HERE / "stripe-double.js", mimetype="application/javascript", max_age=0)

    @app.get("/v3/3ds")
    def three_d_secure():
        return send_file(HERE / "three_d_secure.html", mimetype="text/html", max_age=0)

    @app.post("/v1/payment_methods")
    def payment_methods():
        publishable_key()
        return relay(
            requests.post(f"{base}/v1/payment_methods", data=form_without("key"), headers=auth, timeout=10)
        )

    @app.get("/v1/payment_intents/<pi_id>")
    def payment_intent(pi_id: str):
        publishable_key()
        return jsonify(intent_for(pi_id))

    @app.post("/v1/payment_intents/<pi_id>/confirm")
    def confirm(pi_id: str):
        publishable_key()
        intent_for(pi_id)
        return relay(requests.post(f"{base}/v1/payment_intents/{pi_id}/confirm", headers=auth, timeout=10))

    @app.post("/v1/payment_intents/<pi_id>/_authenticate")
    def authenticate(pi_id: str):
        publishable_key()  # localstripe itself takes the publishable key and client secret here
        return relay(
            requests.post(
                f"{base}/v1/payment_intents/{pi_id}/_authenticate",
                data=list(request.form.items(multi=True)),
                timeout=10,
            )
        )

    @app.route("/v1/<path:_rest>", methods=["OPTIONS"])
    def preflight(_rest: str):
        return Response(status=204)

    return app


class DoubleServer:
    """The double served from a thread: ``url`` is its origin; ``stop()`` ends it."""

    def __init__(self, localstripe_url: str, port: int = 0, host: str = "127.0.0.1"):
        self.app = create_app(localstripe_url)
        self._server = make_server(host, port, self.app, threaded=True)
        self.url = f"http://{host}:{self._server.server_port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="stripejs-double", daemon=True
        )
        self._thread.start()

    @property
    def js_url(self) -> str:
        return self.url + "/v3/"

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)


def serve(localstripe_url: str, port: int = 0) -> DoubleServer:
    return DoubleServer(localstripe_url, port)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8421)
    parser.add_argument("--stripe", default="http://127.0.0.1:8420", help="localstripe's address")
    args = parser.parse_args()
    server = make_server(args.host, args.port, create_app(args.stripe), threaded=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
