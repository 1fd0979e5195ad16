"""Default configuration.

Precedence (later wins): these defaults, ``instance/config.py``, ``PAYDESK_*``
environment variables, then the mapping passed to ``create_app(config)``.
Environment values are parsed as JSON where they can be (so
``PAYDESK_WORKER_MAX_ATTEMPTS=8`` is an int) and kept as strings otherwise.
"""

import os

VERSION = "0.1.0"


class DefaultConfig:
    # Signs sessions and CSRF tokens. Unset: a random key generated once into instance/secret_key
    # (mode 0600), with a warning naming PAYDESK_SECRET_KEY. There is no fixed fallback value.
    SECRET_KEY: str | None = None
    # Encrypts Stripe secrets at rest; independent of SECRET_KEY. Unset: a Fernet key generated once
    # into instance/encryption_key (mode 0600), with a warning naming PAYDESK_ENCRYPTION_KEY.
    ENCRYPTION_KEY: str | None = None

    # Number of reverse proxies in front of paydesk whose X-Forwarded-For / X-Forwarded-Proto are
    # trusted (Werkzeug ProxyFix). 0: the client address is the TCP peer, forwarded headers are ignored.
    TRUSTED_PROXIES = 0

    # None: a SQLite file in the instance folder (resolved in create_app).
    DATABASE_URL: str | None = None
    SQLALCHEMY_TRACK_MODIFICATIONS = False

    SITE_NAME = "paydesk"
    # Absolute URL staff reach paydesk at; used in Stripe customer metadata links.
    BASE_URL = "http://127.0.0.1:5000"

    SESSION_COOKIE_HTTPONLY = True
    SESSION_COOKIE_SAMESITE = "Lax"
    SESSION_COOKIE_SECURE = False  # set True behind HTTPS (PAYDESK_SESSION_COOKIE_SECURE=true)
    REMEMBER_COOKIE_HTTPONLY = True
    PERMANENT_SESSION_LIFETIME = 8 * 3600
    WTF_CSRF_TIME_LIMIT = 8 * 3600

    # Staff sign-in throttling (rate_limit rows): failures are counted per (account, client address)
    # and per client address; only the failing address is blocked, never the account elsewhere.
    LOGIN_MAX_FAILURES = 5  # per account from one address
    LOGIN_IP_MAX_FAILURES = 20  # per client address, whatever the accounts
    LOGIN_LOCKOUT_SECONDS = 15 * 60
    # Wrong two-factor codes: after the password, counted per account (from any address); this many in
    # LOGIN_LOCKOUT_SECONDS block that account's code step for as long.
    LOGIN_CODE_MAX_FAILURES = 5

    # Staff accounts. A signed-in browser that makes no request for this many minutes is signed out
    # (0: never). Admins must set up two-factor sign-in before anything else when REQUIRE_2FA_FOR_ADMINS
    # (PAYDESK_REQUIRE_2FA_FOR_ADMINS=true). A temporary password an admin sets stops working after
    # TEMP_PASSWORD_HOURS; the password step of a sign-in with two factors waits SECOND_FACTOR_SECONDS
    # for the code.
    SESSION_IDLE_MINUTES = 30
    REQUIRE_2FA_FOR_ADMINS = False
    TEMP_PASSWORD_HOURS = 72
    SECOND_FACTOR_SECONDS = 300

    STRIPE_JS_URL = "https://js.stripe.com/v3/"
    # A processor's API base URL (where its secret key is sent) is Stripe's own, https://api.stripe.com, or one
    # on a host named here (PAYDESK_STRIPE_API_BASES='["127.0.0.1", "localhost"]' or "127.0.0.1,localhost": a
    # stand-in such as localstripe). Tests and the demo allow 127.0.0.1 and localhost; production names none.
    STRIPE_API_BASES: list[str] | str = []
    # Gateway retry policy for 429 / 5xx / connection errors.
    STRIPE_MAX_ATTEMPTS = 4
    STRIPE_BACKOFF_BASE = 0.5  # seconds; doubled each attempt, with jitter
    STRIPE_BACKOFF_MAX = 8.0
    STRIPE_TIMEOUT = 30
    # rows a CSV of a Stripe list (Connect accounts, transfers, payouts) reads within one web request: 31 list
    # requests of 100, well inside gunicorn's 30 s timeout; a larger export asks for a narrower filter
    CONNECT_EXPORT_MAX_ROWS = 3000

    # Request bodies: at most this many bytes for any request, however they are sent (a chunked body
    # without Content-Length is refused with 413 once this much has been read); tighter for the
    # webhook endpoint (WEBHOOK_MAX_BYTES) and the donation form (DONATE_MAX_BYTES).
    MAX_CONTENT_LENGTH = 1024 * 1024

    # An API request's Idempotency-Key claim that never got its answer (its worker died) frees the key after this
    # many seconds: twice gunicorn.conf.py's timeout (30 s). Change both together.
    API_IDEMPOTENCY_STALE_SECONDS = 60

    # Webhooks.
    WEBHOOK_TOLERANCE = 300
    WEBHOOK_MAX_BYTES = 1024 * 1024
    # Refused deliveries are counted per process and written at most this often (0: every one).
    WEBHOOK_REJECTION_FLUSH_SECONDS = 5.0

    # Logs: "text" (default) or "json" (one JSON object per line, with a line per request and per processed
    # event; see admin/services/monitoring/logs.py).
    LOG_FORMAT = "text"

    # Monitoring. /metrics answers internal addresses (loopback, private networks) as they are and anyone
    # else only with "Authorization: Bearer <METRICS_TOKEN>" (unset: nobody else).
    METRICS_TOKEN: str | None = None
    # /readyz fails when the oldest queued event has waited longer than this for a worker, or when the
    # freshest worker heartbeat is older than this (seconds; 0 turns the check off).
    READY_QUEUE_MAX_AGE = 600
    READY_HEARTBEAT_MAX_AGE = 120

    # Worker.
    WORKER_HEARTBEAT_SECONDS = 15.0  # each worker process writes its heartbeat this often
    WORKER_MAX_ATTEMPTS = 6
    # Outgoing notifications (admin.services.notifications). Receiver URLs on private, loopback or link-local
    # addresses are refused unless NOTIFY_ALLOW_PRIVATE is true (tests, the demo, a receiver on purpose).
    NOTIFY_ALLOW_PRIVATE = False
    NOTIFY_RETRY_SECONDS = 3 * 86400  # a delivery is retried for three days, then marked failed
    NOTIFY_BACKOFF_BASE = 60.0  # seconds before the first retry; doubled each time
    NOTIFY_BACKOFF_MAX = 6 * 3600.0
    NOTIFY_TIMEOUT = 10.0  # seconds a receiver has to answer
    NOTIFY_ROTATION_HOURS = 24  # after a secret is rotated, the old one keeps signing this long
    WORKER_BACKOFF_BASE = 5.0  # seconds before the first retry of a failed event
    WORKER_BACKOFF_MAX = 3600.0
    WORKER_LEASE_SECONDS = 120  # a claimed event is re-claimable after this
    WORKER_BATCH = 20
    WORKER_IDLE_SLEEP = 0.5
    # Background jobs: the worker gives a job this long per batch, then processes events again.
    JOB_SLICE_SECONDS = 2.0
    WORKER_RESTART_BACKOFF_MAX = (
        60.0  # worker --processes: longest pause before restarting one that keeps dying
    )

    # Database outages. What must not be lost when the database goes away (a receipt already sent, events
    # claimed by the worker) is retried for at most DB_RETRY_SECONDS, at most DB_RETRY_BACKOFF_MAX apart,
    # so work resumes within that long of the database's return. Requests meanwhile get 503 with
    # Retry-After: DB_RETRY_AFTER; the log gets one traceback per distinct error, then a summary line
    # every OUTAGE_LOG_INTERVAL seconds.
    DB_RETRY_SECONDS = 300.0
    DB_RETRY_BACKOFF_MAX = 2.0
    DB_RETRY_AFTER = 10
    OUTAGE_LOG_INTERVAL = 10.0

    # Retention (admin/services/core/retention.py): how long rows nothing needs for ever are kept before the
    # worker's housekeeping deletes them (``flask cleanup --dry-run`` shows what would go now). Each is an age
    # with its unit ("24 hours", "30 days", "2 years") or "forever"; a bare number, 0 or an empty value is
    # refused at start. The audit log is kept at least a year (or "forever"), the rest at least a day.
    RETENTION_API_IDEMPOTENCY_KEYS = "24 hours"  # the API's Idempotency-Key answers (as long as Stripe's)
    RETENTION_OUTBOX_DONE = "30 days"  # side effects done (receipts, metadata pushes)
    RETENTION_OUTBOX_FAILED = "90 days"  # side effects failed for good, after their last attempt
    RETENTION_JOBS = "90 days"  # jobs done, failed or cancelled
    RETENTION_TRIGGER_FEED = "30 days"  # the polling triggers' feed: an older client cursor skips what went
    RETENTION_CARD_TESTING_SIGNALS = "90 days"
    RETENTION_NOTIFICATION_DELIVERIES = "90 days"  # the notifications' history per URL (delivered or failed)
    RETENTION_EVENTS = "forever"  # processed Stripe events (as `events cleanup`), e.g. "13 months"
    RETENTION_AUDIT_LOG = "2 years"  # whole days; each day's deletion is itself audited
    RETENTION_BATCH = 1000  # rows deleted per short transaction
    RETENTION_MAX_BATCHES = 20  # per rule and housekeeping round (10 min): a backlog goes over rounds

    # Receipts: unset SMTP_URL writes .eml files to OUTBOX_DIR (default instance/outbox).
    SMTP_URL: str | None = None
    OUTBOX_DIR: str | None = None
    RECEIPT_FROM = "receipts@paydesk.invalid"
    RECEIPTS_ENABLED = True
    # Push contact metadata to the Stripe customer after each completed payment.
    SYNC_CUSTOMER_METADATA = True

    # Card-testing alarm: a red banner on every staff page (and one warning in the log per episode)
    # when a processor has this many failed payments within the window; 0 turns it off.
    CARD_TESTING_ALARM_THRESHOLD = 20
    CARD_TESTING_ALARM_WINDOW_MINUTES = 60
    CARD_TESTING_ALARM_CACHE_SECONDS = 30  # each web process works it out at most this often

    CONFIRMATION_SECONDS = 15 * 60  # a bulk action's or tool's confirmation can be run for this long, once

    # Donation form defences (card testing). Flask-Limiter keeps its counters in Redis when
    # RATELIMIT_STORAGE_URL is set (redis://host:6379/0, needs the `redis` package), otherwise in
    # this database (shared by every process); never in per-process memory.
    RATELIMIT_STORAGE_URL: str | None = None
    # Form page views per address, e.g. "60 per minute"; None: not limited (each counted view costs a
    # database write; payments, where card testing happens, are limited below either way).
    DONATE_RATE_LIMIT_PAGE: str | None = None
    # Per client: an IPv4 address, or an IPv6 /64 (one home or server has a whole /64).
    DONATE_RATE_LIMIT_IP = "10 per minute;40 per hour"  # payment requests per client
    # Payment requests per form, all donors together; only requests with a valid one-time token count.
    DONATE_RATE_LIMIT_FORM = "120 per minute"
    DONATE_IP_MAX_FAILURES = 5  # failed payments from one client within DONATE_IP_FAILURE_WINDOW ...
    DONATE_IP_FAILURE_WINDOW = 3600
    DONATE_IP_BLOCK_SECONDS = 2 * 3600  # ... block it for this long
    DONATE_MAX_BYTES = 16 * 1024  # a donation form's fields, with room to spare
    # Refused donation requests: the first after a quiet spell is written and logged at once, a flood after
    # it together at most this often (0: each one); rows are kept this many days (the worker prunes them).
    DONATE_REFUSAL_FLUSH_SECONDS = 5.0
    DONATE_REFUSAL_KEEP_DAYS = 30
    DONATE_TOKEN_MAX_AGE = 2 * 3600  # a form token is good for one payment request within this time
    # Signed donor links from staff (``forms link``: known contact, known postcode, the contact's own Stripe
    # customer): each is good for one gift within this time, and can be revoked on the contact's page.
    DONATE_LINK_MAX_AGE = 30 * 86400
    # The donor's thank-you page (and its 3-D Secure result and status) answers for this long after the gift.
    DONATE_THANKS_MAX_AGE = 86400
    # Captcha hook: "package.module:function" called as fn(response, remote_addr) -> bool, with the
    # value of the form field DONATE_CAPTCHA_FIELD; None: no captcha. The widget that fills the
    # field goes in admin/templates/donate/_captcha.html (empty here).
    DONATE_CAPTCHA_VERIFY: str | None = None
    DONATE_CAPTCHA_FIELD = "captcha_response"


def env_overrides(environ=None) -> dict:
    """PAYDESK_* variables, prefix stripped, JSON-decoded where possible."""
    import json

    environ = os.environ if environ is None else environ
    out = {}
    for key, value in environ.items():
        if not key.startswith("PAYDESK_") or key.startswith("PAYDESK_TEST_"):
            continue
        try:
            out[key[len("PAYDESK_") :]] = json.loads(value)
        except ValueError:
            out[key[len("PAYDESK_") :]] = value
    return out
