"""``make demo``: paydesk with demo data on http://127.0.0.1:5000, against localstripe.

Starts localstripe (127.0.0.1:8420, state in memory) and the Stripe.js test
double in front of it (127.0.0.1:8421, tests/stripejs: the donation form's card
field works against localstripe), migrates a fresh SQLite database
(instance/demo.sqlite3), registers a processor pointing at localstripe and the
webhook with localstripe, adds a donation form, starts gunicorn and the worker,
imports what the Stripe account held before paydesk was connected (customers,
subscriptions, charges), makes demo data through real Stripe flows, gives a
gift through the donation form, creates an admin user and prints the login.
Ctrl-C (or SIGTERM) stops everything it started. The banner ends with the one
line to paste (``export PAYDESK_...``) for the command line to act on the demo's
data while it runs (its database and the keys made for this run).

    .venv/bin/python scripts/demo.py [--keep-logs] [--port 5000] [--stripe-port 8420]
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from admin.demo_data import create_demo_data, create_history  # noqa: E402
from admin.stripe_gateway import Gateway, sign_payload  # noqa: E402

HOST = "127.0.0.1"
STRIPE_PORT = 8420
STRIPE_JS_PORT = 8421
APP_PORT = 5000
STRIPE_URL = f"http://{HOST}:{STRIPE_PORT}"
STRIPE_JS_URL = f"http://{HOST}:{STRIPE_JS_PORT}"
APP_URL = f"http://{HOST}:{APP_PORT}"
BIN = Path(sys.executable).parent  # .venv/bin (not resolved: the venv's own scripts live here)
DB_FILE = ROOT / "instance" / "demo.sqlite3"
LOG_DIR = ROOT / "instance" / "demo-logs"
ADMIN_EMAIL = "admin@example.org"
DEMO_FORM = "spring"


def use_ports(app_port: int, stripe_port: int) -> None:
    """Serve paydesk on ``app_port`` and localstripe on ``stripe_port`` (its Stripe.js double on the next)."""
    global APP_PORT, STRIPE_PORT, STRIPE_JS_PORT, APP_URL, STRIPE_URL, STRIPE_JS_URL
    APP_PORT, STRIPE_PORT, STRIPE_JS_PORT = app_port, stripe_port, stripe_port + 1
    APP_URL, STRIPE_URL, STRIPE_JS_URL = (
        f"http://{HOST}:{APP_PORT}",
        f"http://{HOST}:{STRIPE_PORT}",
        f"http://{HOST}:{STRIPE_JS_PORT}",
    )


class DemoError(Exception):
    pass


def step(msg: str) -> None:
    print(f"==> {msg}", flush=True)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def wait_for_port(port: int, proc: subprocess.Popen, name: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise DemoError(f"{name} exited with code {proc.returncode} before listening on {HOST}:{port}")
        with socket.socket() as s:
            if s.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.1)
    raise DemoError(f"{name} is not listening on {HOST}:{port} after {timeout:.0f}s")


class Children:
    """Processes we started, each in its own process group, stopped group by group."""

    def __init__(self) -> None:
        self.procs: list[tuple[str, subprocess.Popen, Path]] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = LOG_DIR / f"{name}.log"
        handle = open(log, "ab")  # noqa: SIM115 (the child owns it for its lifetime)
        proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        handle.close()
        self.procs.append((name, proc, log))
        return proc

    def dead(self) -> list[tuple[str, subprocess.Popen, Path]]:
        return [(n, p, log) for n, p, log in self.procs if p.poll() is not None]

    def stop(self) -> None:
        for name, proc, _log in reversed(self.procs):
            if proc.poll() is None:
                step(f"stopping {name} (process group {proc.pid})")
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for name, proc, _log in reversed(self.procs):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                print(f"    {name} did not stop in 10 s: killing it", flush=True)
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=5)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def flask(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    """Run ``flask --app wsgi ARGS`` to completion; its stdout, or a DemoError with its output."""
    result = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise DemoError(
            f"flask {' '.join(args[:2])} failed ({result.returncode}):\n{result.stdout}{result.stderr}"
        )
    return result.stdout


def has_command(env: dict[str, str], command: str) -> bool:
    result = subprocess.run(
        [str(BIN / "flask"), "--app", "wsgi", command, "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    return result.returncode == 0


def event_counts(env: dict[str, str]) -> dict[str, int]:
    """stripe_event rows by status, read straight from the demo database."""
    import sqlite3

    with sqlite3.connect(DB_FILE, timeout=5) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM stripe_event GROUP BY status").fetchall())


CLI_VARIABLES = ("PAYDESK_DATABASE_URL", "PAYDESK_SECRET_KEY", "PAYDESK_ENCRYPTION_KEY")


def export_line(env: dict[str, str]) -> str:
    """The line that gives a shell what the CLI needs to act on the demo's data: its database (the README's
    form, relative to the project's folder, where `flask --app wsgi` runs) and the keys made for this run
    (without them the stored Stripe secrets cannot be decrypted)."""
    values = dict(env)
    path = values["PAYDESK_DATABASE_URL"].removeprefix("sqlite:///")
    if path.startswith(str(ROOT) + os.sep):
        values["PAYDESK_DATABASE_URL"] = "sqlite:///" + os.path.relpath(path, ROOT)
    return "export " + " ".join(f"{name}={shlex.quote(values[name])}" for name in CLI_VARIABLES)


def create_api_token(env: dict[str, str]) -> str:
    """A read token for the API (``tokens create``), named for this run (the demo's database outlives a run)."""
    name = f"make demo {time.strftime('%Y-%m-%d %H:%M:%S')}"
    out = flask(env, "tokens", "create", "--name", name, "--scope", "read", "--days", "7", "--format", "json")
    return json.loads(out)["token"]


def curl_line(token: str) -> str:
    """The curl line that lists new charges through the API (what an automation tool polls)."""
    return f"curl -s -H {shlex.quote('Authorization: Bearer ' + token)} {APP_URL}/api/v1/triggers/new-charges"


class DemoReceiver:
    """A receiver of paydesk's outgoing notifications, inside this script: checks each signature and appends one
    line per notification to ``LOG_DIR/notifications.log``."""

    def __init__(self, log: Path) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        from admin.services.notifications.signing import HEADER, verify

        self.log, self.secret, self.count = log, "", 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ok = verify(outer.secret, self.headers.get(HEADER, ""), body)
                try:
                    sent = json.loads(body)
                except ValueError:
                    sent = {}
                outer.count += 1
                with outer.log.open("a") as f:
                    f.write(
                        f"{time.strftime('%H:%M:%S')} {sent.get('type')} {sent.get('id')} "
                        f"{(sent.get('data') or {}).get('object', {}).get('id')} "
                        f"signature {'ok' if ok else 'WRONG'}\n"
                    )
                self.send_response(200 if ok else 400)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args):
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.server.server_address[1]}/paydesk-notifications"
        threading.Thread(target=self.server.serve_forever, name="demo-receiver", daemon=True).start()

    def register(self, env: dict[str, str]) -> None:
        """``notifications add`` for this receiver (the worker may post to 127.0.0.1: PAYDESK_NOTIFY_ALLOW_PRIVATE)."""
        out = flask(
            {**env, "PAYDESK_NOTIFY_ALLOW_PRIVATE": "true"},
            "notifications",
            "add",
            "--url",
            self.url,
            "--description",
            "make demo's receiver (logs each notification)",
            "--format",
            "json",
        )
        self.secret = json.loads(out)["secret"]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def banner(
    password: str,
    ppid: int,
    env: dict[str, str],
    token: str | None = None,
    receiver: DemoReceiver | None = None,
) -> str:
    lines = [
        "",
        "paydesk demo is running",
        f"  open      {APP_URL}/",
        f"  donate    {APP_URL}/donate/{DEMO_FORM}  (card 4242 4242 4242 4242, any future date, any CVC)",
        f"  sign in   {ADMIN_EMAIL}",
        f"  password  {password}",
        f"  Stripe    localstripe at {STRIPE_URL} (processor {ppid}, test mode)",
        f"  logs      {LOG_DIR.relative_to(ROOT)}/",
        "  keys      PAYDESK_SECRET_KEY and PAYDESK_ENCRYPTION_KEY are made for this run (a real install sets them",
        "            once, or has them generated into instance/: README, Configuration)",
        "Ctrl-C stops localstripe, the Stripe.js double, gunicorn and the worker.",
        "",
        "The command line on the demo's data (processor list, import ..., events replay ...): in this folder, paste",
        "",
        export_line(env),
        "",
        "then e.g. .venv/bin/flask --app wsgi processor list",
        "",
    ]
    if receiver:
        lines += [
            f"Notifications: {receiver.count} received so far by {receiver.url} (signatures checked), one line",
            f"each in {receiver.log.relative_to(ROOT) if receiver.log.is_relative_to(ROOT) else receiver.log}; "
            f"history at {APP_URL}/settings/notifications",
            "",
        ]
    if token:
        lines += [
            "The API (reference at " + APP_URL + "/api/docs): new charges, as an automation tool polls them:",
            "",
            curl_line(token),
            "",
        ]
    width = max(len(line) for line in lines if not line.startswith(("export ", "curl ")))
    return "\n" + "=" * width + "\n" + "\n".join(lines) + "\n" + "=" * width


def give_through_form() -> str:
    """What a donor's browser does: read the form's one-time token, have Stripe.js (here its test
    double, with the publishable key) make a PaymentMethod, and send the form to the payment endpoint."""
    import re

    page = requests.get(f"{APP_URL}/donate/{DEMO_FORM}", timeout=10).text
    token = re.search(r'data-token="([^"]+)"', page)
    key = re.search(r'data-publishable-key="([^"]+)"', page)
    if not token or not key:
        raise DemoError("the donation form page has no form token or publishable key")
    pm = requests.post(
        f"{STRIPE_JS_URL}/v1/payment_methods",
        timeout=10,
        data={
            "key": key[1],
            "type": "card",
            "card[number]": "4242424242424242",
            "card[exp_month]": "12",
            "card[exp_year]": "2030",
            "card[cvc]": "123",
            "billing_details[name]": "Mary Somerville",
            "billing_details[address][postal_code]": "EH1 1AA",
        },
    ).json()
    answer = requests.post(
        f"{APP_URL}/donate/{DEMO_FORM}/pay",
        timeout=30,
        json={
            "token": token[1],
            "amount": "5000",
            "frequency": "one-off",
            "first_name": "Mary",
            "last_name": "Somerville",
            "email": "mary.somerville@example.org",
            "postal_code": "EH1 1AA",
            "payment_method": pm.get("id", ""),
        },
    ).json()
    if answer.get("status") != "succeeded":
        raise DemoError(f"the demo gift through the donation form was not accepted: {answer}")
    return f"50.00 USD from Mary Somerville accepted; thank-you page {APP_URL}{answer['redirect']}"


def staff_money(env: dict[str, str], summary: dict) -> None:
    """What staff do with money (issue 19), through paydesk: a partial refund of a recorded gift, and a
    saved card charged as an authorisation that waits on /intents for someone to capture it."""
    payments = json.loads(
        flask(
            env,
            "payments",
            "list",
            "--kind",
            "charge",
            "--status",
            "Completed",
            "--type",
            "one-off",
            "--format",
            "json",
        )
    )
    refundable = [p for p in payments if p["amount"] >= 1000]
    if refundable:
        step(f"refunding 5.00 of payment #{refundable[0]['id']} from the command line (payments refund)")
        print(
            "    "
            + flask(
                env,
                "payments",
                "refund",
                "--payment-id",
                str(refundable[0]["id"]),
                "--amount",
                "5",
                "--reason",
                "requested_by_customer",
            ).strip(),
            flush=True,
        )
    contacts = json.loads(
        flask(env, "contacts", "list", "--customer", summary["customers"][0], "--format", "json")
    )
    if contacts:
        step(
            f"authorising 20.00 on {contacts[0].get('display_name') or 'a donor'}'s saved card (capture later)"
        )
        print(
            "    "
            + flask(
                env,
                "payments",
                "charge",
                "--contact-id",
                str(contacts[0]["id"]),
                "--amount",
                "20",
                "--currency",
                "usd",
                "--description",
                "Gala ticket",
                "--capture",
                "authorise",
            ).strip(),
            flush=True,
        )


def connect_demo(env: dict[str, str], gw: Gateway) -> str:
    """A connected account (made with ``connect accounts create``), a person on it, a transfer to it
    (``connect transfers create``), and the payout Stripe would then make from its balance."""
    acct = json.loads(
        flask(
            env,
            "connect",
            "accounts",
            "create",
            "--email",
            "bookshop@example.org",
            "--type",
            "custom",
            "--country",
            "US",
            "--format",
            "json",
        )
    )["id"]
    gw.call(
        "accounts.persons",
        "create",
        acct,
        params={"first_name": "Grace", "last_name": "Hopper", "relationship": {"representative": True}},
    )
    transfer = json.loads(
        flask(
            env,
            "connect",
            "transfers",
            "create",
            "--account",
            acct,
            "--amount",
            "40",
            "--transfer-group",
            "SPRING-BOOKS",
            "--metadata",
            "appeal=spring",
            "--yes",
            "--format",
            "json",
        )
    )["id"]
    payout = gw.call("payouts", "create", params={"amount": 4000, "currency": "usd"}, stripe_account=acct)[
        "id"
    ]
    return (
        f"{acct}: transfer {transfer} of 40.00 USD, payout {payout}; see {APP_URL}/connect/accounts/{acct} "
        f"and {APP_URL}/connect/payouts/{payout}?account={acct}"
    )


def run(keep_logs: bool) -> None:
    for port, what in (
        (STRIPE_PORT, "localstripe"),
        (STRIPE_JS_PORT, "the Stripe.js test double"),
        (APP_PORT, "paydesk (gunicorn)"),
    ):
        if not port_free(port):
            raise DemoError(
                f"port {HOST}:{port} is in use, so {what} cannot start there. Stop whatever "
                f"listens on it (`ss -ltnp 'sport = :{port}'` shows it), e.g. an earlier "
                f"`make demo`, and run `make demo` again (or choose other ports: "
                f"`.venv/bin/python scripts/demo.py --port 5001 --stripe-port 8430`)."
            )
    if not (BIN / "flask").exists() or not (BIN / "gunicorn").exists():
        raise DemoError(f"{BIN} has no flask/gunicorn: run this through `make demo`")

    LOG_DIR.mkdir(parents=True, exist_ok=True)
    if not keep_logs:
        for old in LOG_DIR.glob("*.log"):
            old.unlink()
    # localstripe keeps its state in memory only, so yesterday's demo rows would point at nothing.
    for suffix in ("", "-wal", "-shm"):
        Path(f"{DB_FILE}{suffix}").unlink(missing_ok=True)

    env = dict(os.environ)
    env.update(
        {
            "PAYDESK_DATABASE_URL": f"sqlite:///{DB_FILE}",
            "PAYDESK_SECRET_KEY": secrets.token_urlsafe(32),  # one per demo run, shared by every process
            "PAYDESK_ENCRYPTION_KEY": base64.urlsafe_b64encode(
                secrets.token_bytes(32)
            ).decode(),  # a Fernet key
            "PAYDESK_BASE_URL": APP_URL,
            # The processor's API base is localstripe on 127.0.0.1, which a real install refuses.
            "PAYDESK_STRIPE_API_BASES": "127.0.0.1,localhost",
            # The donation form's card field: the Stripe.js test double in front of localstripe.
            "PAYDESK_STRIPE_JS_URL": f"{STRIPE_JS_URL}/v3/",
            # The demo's notification receiver listens on 127.0.0.1, which a real install refuses.
            "PAYDESK_NOTIFY_ALLOW_PRIVATE": "true",
            "PYTHONUNBUFFERED": "1",
        }
    )
    children = Children()
    try:
        step(f"starting localstripe on {STRIPE_URL} (state in memory; log {LOG_DIR / 'localstripe.log'})")
        ls = children.start(
            "localstripe",
            [
                sys.executable,
                str(ROOT / "scripts" / "localstripe_server.py"),
                "--host",
                HOST,
                "--port",
                str(STRIPE_PORT),
            ],
            env,
        )
        wait_for_port(STRIPE_PORT, ls, "localstripe")
        step(f"starting the Stripe.js test double on {STRIPE_JS_URL} (log {LOG_DIR / 'stripejs.log'})")
        js = children.start(
            "stripejs",
            [
                sys.executable,
                str(ROOT / "tests" / "stripejs" / "server.py"),
                "--host",
                HOST,
                "--port",
                str(STRIPE_JS_PORT),
                "--stripe",
                STRIPE_URL,
            ],
            env,
        )
        wait_for_port(STRIPE_JS_PORT, js, "the Stripe.js test double")

        step(f"migrating a fresh database {DB_FILE.relative_to(ROOT)}")
        flask(env, "db", "upgrade")

        secret_key = "sk_test_" + secrets.token_hex(12)
        whsec = "whsec_" + secrets.token_hex(16)
        out = flask(
            env,
            "processor",
            "add",
            "--name",
            "localstripe demo",
            "--secret-key",
            secret_key,
            "--publishable-key",
            "pk_test_" + secrets.token_hex(12),
            "--webhook-secret",
            whsec,
            "--api-base",
            STRIPE_URL,
            "--mode",
            "test",
            "--default",
            "--format",
            "json",
        )
        ppid = json.loads(out)["id"]
        gw = Gateway(secret_key, STRIPE_URL)
        step("creating what the Stripe account held before paydesk was connected (no webhooks for it)")
        history = create_history(gw, log=lambda msg: print(f"    {msg}", flush=True))
        webhook_url = f"{APP_URL}/webhooks/stripe/{ppid}"
        step(f"processor {ppid} added; registering webhook {webhook_url} with localstripe")
        r = requests.post(
            f"{STRIPE_URL}/_config/webhooks/paydesk", data={"url": webhook_url, "secret": whsec}, timeout=10
        )
        if r.status_code >= 300:
            raise DemoError(f"localstripe refused the webhook ({r.status_code}): {r.text[:300]}")

        # Before gunicorn and the worker start writing: one SQLite writer at a time.
        flask(
            env,
            "forms",
            "add",
            "--slug",
            DEMO_FORM,
            "--title",
            "Spring appeal",
            "--ppid",
            str(ppid),
            "--currency",
            "usd",
            "--amounts",
            "10,25,50,100",
            "--frequencies",
            "one-off,monthly,yearly",
            "--min-amount",
            "5",
            "--intro",
            "Every gift buys books for the children's library.",
            "--thank-you-text",
            "Thank you: your gift is on its way to the library's shelves.",
        )
        receiver = DemoReceiver(LOG_DIR / "notifications.log")
        receiver.register(env)
        step(f"registered {receiver.url} for outgoing notifications (log {receiver.log})")
        password = secrets.token_urlsafe(12)
        flask(
            env,
            "user",
            "create",
            "--email",
            ADMIN_EMAIL,
            "--role",
            "admin",
            "--password-stdin",
            stdin=password + "\n",
        )

        step(f"starting gunicorn on {APP_URL} (log {LOG_DIR / 'gunicorn.log'})")
        web = children.start(
            "gunicorn",
            [
                str(BIN / "gunicorn"),
                "-c",
                str(ROOT / "gunicorn.conf.py"),
                "-b",
                f"{HOST}:{APP_PORT}",
                "wsgi:app",
            ],
            env,
        )
        wait_for_port(APP_PORT, web, "gunicorn")

        if has_command(env, "worker"):
            step(f"starting the worker (log {LOG_DIR / 'worker.log'})")
            children.start("worker", [str(BIN / "flask"), "--app", "wsgi", "worker"], env)
        else:
            print(
                "!!! WARNING: `flask --app wsgi worker` does not exist yet: webhooks will be stored but not "
                "turned into records",
                flush=True,
            )

        step("importing it, as staff would: customers, then subscriptions with their invoices and charges")
        for args in (
            ("import", "customers"),
            ("import", "subscriptions"),
            *(("import", "charge", "--charge", ch) for ch in history["charges"]),
        ):
            print("    " + flask(env, *args).strip().replace("\n", "\n    "), flush=True)

        step("creating demo data in localstripe (localstripe sends the webhooks)")
        summary = create_demo_data(gw, log=lambda msg: print(f"    {msg}", flush=True))
        for ev in summary.get("events_to_deliver", []):
            body = json.dumps(ev)
            resp = requests.post(
                webhook_url,
                data=body,
                timeout=10,
                headers={"Content-Type": "application/json", "Stripe-Signature": sign_payload(body, whsec)},
            )
            print(
                f"    delivered {ev['type']} (localstripe sends no charge.* events): HTTP {resp.status_code}",
                flush=True,
            )

        step(f"giving a gift through the donation form {APP_URL}/donate/{DEMO_FORM}")
        print(f"    {give_through_form()}", flush=True)

        step("waiting for the webhooks to arrive and be processed")
        counts: dict[str, int] = {}
        stable_since = time.monotonic()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            time.sleep(1)
            now = event_counts(env)
            if now != counts:
                counts, stable_since = now, time.monotonic()
            busy = counts.get("queued", 0) + counts.get("processing", 0)
            if counts and not busy and time.monotonic() - stable_since >= 2.5:
                break
        print(
            "    stripe_event rows by status: "
            + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none yet"),
            flush=True,
        )
        if counts.get("error"):
            print(f"    {counts['error']} event(s) in error: see {APP_URL}/events?status=error", flush=True)

        # Stripe (and localstripe) sends no webhook for an intent created and then abandoned, nor for one
        # stopped at 3-D Secure: paydesk learns of those from Stripe's list of intents.
        step(
            "importing payment intents from Stripe's list (the abandoned and the 3-D Secure one send no webhook)"
        )
        out = flask(env, "intents", "import", "--since", "1 hour")
        print("    " + (out.strip().splitlines() or ["(no output)"])[0], flush=True)

        staff_money(env, summary)

        step("Stripe Connect: a connected account, a transfer to it and its payout")
        print(f"    {connect_demo(env, gw)}", flush=True)

        step("making an API token (read scope, 7 days)")
        token = create_api_token(env)

        print(banner(password, ppid, env, token, receiver), flush=True)

        while True:
            dead = children.dead()
            if dead:
                name, proc, log = dead[0]
                raise DemoError(
                    f"{name} exited with code {proc.returncode}; last lines of {log}:\n{tail(log)}"
                )
            time.sleep(1)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan the children
        children.stop()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--keep-logs", action="store_true", help="append to the logs of earlier runs")
    parser.add_argument("--port", type=int, default=APP_PORT, help="paydesk's port (default %(default)s)")
    parser.add_argument(
        "--stripe-port",
        type=int,
        default=STRIPE_PORT,
        help="localstripe's port (default %(default)s); the Stripe.js test double takes the next one",
    )
    args = parser.parse_args()
    use_ports(args.port, args.stripe_port)

    def _terminate(signum, _frame):
        raise KeyboardInterrupt

    # Installed explicitly: a shell that starts us in the background leaves SIGINT ignored.
    signal.signal(signal.SIGINT, _terminate)
    signal.signal(signal.SIGTERM, _terminate)
    # The demo declines a card on purpose; keep the gateway's warning about it out of the output.
    logging.getLogger("admin.stripe_gateway").setLevel(logging.ERROR)
    try:
        run(args.keep_logs)
    except KeyboardInterrupt:
        print("\nstopped.", flush=True)
        return 0
    except DemoError as err:
        print(f"\nmake demo failed: {err}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
