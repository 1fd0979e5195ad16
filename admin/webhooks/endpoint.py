"""``POST /webhooks/stripe/<ppid>``: verify, store, answer. Nothing else happens here.

No Stripe call and no business record is made inside the request; the worker
does that from the stored row. Whatever arrives, the answer is never a 500:
an id out of range is 404 before any lookup; a bad signature, a body that is
not UTF-8 JSON or an envelope of the wrong shape is 400 with a short reason
(``ingest.parse_event``); signing secrets that cannot be decrypted (a wrong
``PAYDESK_ENCRYPTION_KEY``) are 503, so Stripe retries once the key is fixed.
Log lines name the processor, the reason and the event id and type, never
the body or a secret.
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, g, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from admin.crypto import SecretDecryptError
from admin.dbutil import MAX_ID
from admin.extensions import csrf, db
from admin.security import limit_body
from admin.services.monitoring import metrics
from admin.services.settings.processors import processor_ref
from admin.stripe_gateway import WebhookSignatureError, verify_webhook
from admin.webhooks.ingest import EnvelopeError, parse_event, store_event
from admin.webhooks.rejections import tally

log = logging.getLogger(__name__)
bp = Blueprint("webhooks", __name__)
bp.record_once(lambda state: limit_body(state.app, "webhooks.receive", "WEBHOOK_MAX_BYTES"))


def _reject(ppid: int | None, reason: str, status: int, result: str):
    """Refuse a delivery with a short reason; counted (and logged) without a write per refusal."""
    metrics.webhook_delivery(result)
    try:
        tally(current_app._get_current_object()).refused(ppid, reason, request.remote_addr)  # type: ignore[attr-defined]  # proxy typed as Flask
    except Exception:  # a counter must never turn a 400 into a 500
        db.session.rollback()
        log.exception("could not count webhook rejection")
    return jsonify(error=reason), status


@bp.post(f"/webhooks/stripe/<int(min=1, max={MAX_ID}):ppid>")
@csrf.exempt
def receive(ppid: int):
    try:
        proc = processor_ref(ppid)
    except SecretDecryptError as err:
        log.error("webhook for processor %s answered 503: %s", ppid, err.message)
        metrics.webhook_delivery(metrics.UNAVAILABLE)
        response = jsonify(error="paydesk cannot read this processor's signing secrets now; retry later")
        response.headers["Retry-After"] = "300"
        return response, 503
    if proc is None or not proc.active:
        metrics.webhook_delivery(metrics.UNKNOWN_PROCESSOR)
        return jsonify(error="unknown payment processor"), 404
    try:  # at most WEBHOOK_MAX_BYTES, however it is sent (security.limit_body, registered below)
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return _reject(ppid, "payload too large", 413, metrics.TOO_LARGE)
    try:
        verify_webhook(
            body,
            request.headers.get("Stripe-Signature"),
            list(proc.webhook_secrets),
            current_app.config["WEBHOOK_TOLERANCE"],
        )
    except WebhookSignatureError as err:
        return _reject(ppid, err.reason, 400, metrics.REFUSED_SIGNATURE)
    text = body.decode("utf-8")  # verify_webhook refused anything that is not UTF-8
    try:
        event = parse_event(text)
    except EnvelopeError as err:
        return _reject(ppid, err.reason, 400, metrics.REFUSED_BODY)
    g.event_id = event["id"]  # for the request's log line
    try:
        inserted = store_event(proc, event, text)
    except Exception:
        metrics.webhook_delivery(metrics.UNAVAILABLE)  # the database failed it (admin/outage.py answers 503)
        raise
    metrics.webhook_delivery(metrics.ACCEPTED if inserted else metrics.DUPLICATE)
    return jsonify(received=True, duplicate=not inserted)
