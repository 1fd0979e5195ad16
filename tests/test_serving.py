"""paydesk served as production serves it: gunicorn with ``gunicorn.conf.py``.

- Slow clients (headers sent, body trickling) hold a thread each, not the app: ``/healthz`` and the webhook
  endpoint keep answering.
- Two server processes share the sign-in counters (they live in the database): failures spread over both
  block the failing address on both, while the account's owner signs in from their own address.
"""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
import stripe_objects as so
from conftest import PASSWORD, ROOT, WEBHOOK_SECRET, free_port
from stripe_objects import signed

from admin.extensions import db
from admin.models import StripeEvent

BIN = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin"
ATTACKER = "203.0.113.9"
OWNER = "198.51.100.7"


def _gunicorn() -> str:
    import shutil
    import sys

    here = Path(sys.executable).parent / "gunicorn"
    return (
        str(here) if here.exists() else (shutil.which("gunicorn") or pytest.skip("gunicorn is not installed"))
    )


class Served(str):
    """The server's base URL; ``pid``: gunicorn's arbiter."""

    pid: int


@contextmanager
def served(app, tmp_path: Path, name: str, **settings: str):
    """gunicorn -c gunicorn.conf.py on a free port, with the test app's database and keys."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYDESK_")}
    env.update(
        PAYDESK_DATABASE_URL=app.config["DATABASE_URL"],
        PAYDESK_SECRET_KEY=app.config["SECRET_KEY"],
        PAYDESK_ENCRYPTION_KEY=app.config["ENCRYPTION_KEY"],
        PYTHONUNBUFFERED="1",
        **{f"PAYDESK_{k}": v for k, v in settings.items()},
    )
    log = tmp_path / f"gunicorn-{name}.log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen(
            [_gunicorn(), "-c", str(ROOT / "gunicorn.conf.py"), "-b", f"127.0.0.1:{port}", "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    base = Served(f"http://127.0.0.1:{port}")
    base.pid = proc.pid
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or its workers still starting
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gunicorn did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_healthz_and_webhooks_answer_while_four_slow_clients_hold_connections(
    app, offline_processor, tmp_path
):
    with served(app, tmp_path, "slow") as base:
        port = int(base.rsplit(":", 1)[1])
        path = f"/webhooks/stripe/{offline_processor.id}"
        slow = []
        for _ in range(4):  # more than the two worker processes: each would have blocked a sync worker
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f'Stripe-Signature: t=1,v1=00\r\nContent-Length: 1000\r\n\r\n{{"id": '.encode()
            )
            slow.append(s)
        try:
            time.sleep(0.5)  # the slow requests are in the app now, each waiting for the rest of its body
            assert requests.get(f"{base}/healthz", timeout=10).json() == {"status": "ok", "database": "ok"}
            body, headers = signed(so.event("customer.updated", so.customer()), WEBHOOK_SECRET)
            assert requests.post(f"{base}{path}", data=body, headers=headers, timeout=10).status_code == 200
            # the slow clients were held, not dropped: nothing has been answered to them yet ...
            for s in slow:
                s.settimeout(0.2)
                with pytest.raises(TimeoutError):
                    s.recv(1)
            # ... and one that finally sends the rest of its body gets its answer (a bad signature here)
            slow[0].settimeout(10)
            slow[0].sendall(b" " * (1000 - len(b'{"id": ')))
            assert slow[0].recv(200).startswith(b"HTTP/1.1 400")
        finally:
            for s in slow:
                s.close()
    db.session.rollback()
    assert db.session.query(StripeEvent).count() == 1


def _login(session: requests.Session, base: str, addr: str, email: str, password: str) -> int:
    page = session.get(f"{base}/login", headers={"X-Forwarded-For": addr}, timeout=10)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text).group(1)
    resp = session.post(
        f"{base}/login",
        data={"email": email, "password": password, "csrf_token": token},
        headers={"X-Forwarded-For": addr},
        allow_redirects=False,
        timeout=10,
    )
    return resp.status_code


@pytest.mark.postgres
def test_two_server_processes_share_the_sign_in_counters(app, auth, backend, tmp_path):
    """Behind one trusted proxy (PAYDESK_TRUSTED_PROXIES=1): the attacker's failures, spread over two
    servers, block the attacker's address on both; the owner signs in from theirs on either."""
    email = "staff@example.org"
    auth.create(email, "admin")
    settings = {
        "TRUSTED_PROXIES": "1",
        "LOGIN_MAX_FAILURES": "5",
        "LOGIN_IP_MAX_FAILURES": "8",
        "LOGIN_LOCKOUT_SECONDS": "60",
    }
    with served(app, tmp_path, "a", **settings) as a, served(app, tmp_path, "b", **settings) as b:
        attacker = requests.Session()
        codes = [_login(attacker, (a, b)[i % 2], ATTACKER, email, "wrong password!") for i in range(5)]
        assert codes == [422, 422, 422, 422, 429]  # 3 on one server, 2 on the other: one count
        assert _login(attacker, a, ATTACKER, email, PASSWORD) == 429  # blocked there, right password or not
        assert _login(attacker, b, ATTACKER, email, PASSWORD) == 429

        owner = requests.Session()
        assert _login(owner, b, OWNER, email, PASSWORD) == 302
        for base in (a, b):  # one session, valid on both servers, from the owner's address
            assert (
                owner.get(
                    f"{base}/", headers={"X-Forwarded-For": OWNER}, allow_redirects=False, timeout=10
                ).status_code
                == 200
            )

        # guessing other accounts from the same address: the per-address limit (8) counts over both servers
        others = [_login(attacker, (a, b)[i % 2], ATTACKER, f"guess{i}@example.org", "x") for i in range(3)]
        assert others == [422, 422, 429]
        # another address behind the same proxy is not affected
        assert _login(requests.Session(), a, "192.0.2.44", "guess0@example.org", "x") == 422


def test_an_outages_503_answers_are_counted_not_written_one_access_line_each(tmp_path):
    """The database cannot be opened: each webhook delivery is answered 503 (Stripe retries), and the log says
    so in a traceback and summary lines, not in one access-log line per refused request."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYDESK_")}
    env.update(
        PAYDESK_DATABASE_URL=f"sqlite:///{tmp_path / 'gone' / 'paydesk.sqlite3'}",
        PAYDESK_SECRET_KEY="s",
        PAYDESK_ENCRYPTION_KEY="e",
        PAYDESK_OUTAGE_LOG_INTERVAL="0.5",
        PYTHONUNBUFFERED="1",
    )
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as handle:
        proc = subprocess.Popen(
            [_gunicorn(), "-c", str(ROOT / "gunicorn.conf.py"), "-b", f"127.0.0.1:{port}", "wsgi:app"],
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not _answers(f"{base}/static/app.css"):  # a page that needs no database
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.1)
        answers = [
            requests.post(
                f"{base}/webhooks/stripe/1", data=b"{}", timeout=10, headers={"Stripe-Signature": "t=1,v1=00"}
            ).status_code
            for _ in range(30)
        ]
        time.sleep(1.5)  # the summary of the last interval
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text()
    assert answers == [503] * 30, text[-3000:]
    assert '"POST /webhooks/stripe/1 ' not in text, text[-3000:]  # no access-log line for any of them
    assert "GET /static/app.css" in text  # the access log still logs every other request
    said = [int(n) for n in re.findall(r"database unavailable: (\d+) requests refused in the last", text)]
    # one full traceback per server process at most (a chained error prints "Traceback" twice in one entry)
    assert sum(said) == 30 and text.count("(full traceback once;") <= 2, text[-3000:]


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=10).status_code == 200
    except requests.RequestException:  # not listening yet, or its workers still starting
        return False


# -- bodies bounded however they are sent --------------------------------------------------------------


def _chunked_post(port: int, path: str, total: int, chunk: int = 64 * 1024, timeout: float = 20.0):
    """POST ``total`` bytes chunked (no Content-Length) as fast as the server takes them, stopping once it
    answers; (status line, seconds until the answer, bytes sent by then)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    started = time.monotonic()
    sent = 0
    answer = b""
    try:
        s.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        piece = f"{chunk:x}\r\n".encode() + b" " * chunk + b"\r\n"
        while sent < total and not select.select([s], [], [], 0)[0]:
            try:
                s.sendall(piece)
            except OSError:  # the server stopped reading (and answered, or closed)
                break
            sent += chunk
        if not select.select([s], [], [], 0)[0] and sent >= total:
            s.sendall(b"0\r\n\r\n")
        answer = s.recv(4096)
        return answer.split(b"\r\n", 1)[0].decode(), time.monotonic() - started, sent
    finally:
        s.close()


def _rss_kib(pid: int) -> int:
    """Resident memory of ``pid`` and its children (gunicorn's workers), in KiB."""
    total = 0
    for p in [pid, *[int(c) for c in (Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]]:
        for line in Path(f"/proc/{p}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def test_a_chunked_50_mb_body_is_refused_quickly_without_being_read_into_memory(
    app, offline_processor, tmp_path
):
    """A chunked body carries no Content-Length: the pay endpoint's 16 KiB, the webhook's 1 MiB and the app's
    1 MiB still hold, with 413 before the body is read (a 400 MB one once grew a worker to 1.3 GB)."""
    from donate_support import make_form

    make_form(offline_processor, slug="spring")
    with served(app, tmp_path, "bodies") as base:
        port = int(base.rsplit(":", 1)[1])
        before = _rss_kib(base.pid)
        for path in (
            "/donate/spring/pay",
            f"/webhooks/stripe/{offline_processor.id}",
            "/login",
            "/donate/spring",
        ):
            status, seconds, sent = _chunked_post(port, path, 50 * 1024 * 1024)
            assert status.startswith("HTTP/1.1 413"), (path, status)
            assert seconds < 5, (path, seconds)
            assert sent < 10 * 1024 * 1024, (path, sent)  # answered long before the 50 MB were sent
        assert _rss_kib(base.pid) - before < 20 * 1024  # KiB: no worker grew by the body
        assert requests.get(f"{base}/healthz", timeout=10).status_code == 200


def test_the_access_log_keeps_no_query_strings(app, auth, offline_processor, tmp_path):
    """Searches (a donor's email), filters and signed donor links stay out of gunicorn's access log."""
    from donate_support import make_form

    make_form(offline_processor, slug="spring")
    auth.create("staff@example.org", "viewer")
    with served(app, tmp_path, "access") as base:
        session = requests.Session()
        assert _login(session, base, "192.0.2.1", "staff@example.org", PASSWORD) == 302
        assert (
            session.get(
                f"{base}/events?q=ada@example.org&status=error",
                timeout=10,
                headers={"Referer": f"{base}/customers?q=grace@example.org"},
            ).status_code
            == 200
        )
        assert session.get(f"{base}/donate/spring?donor=signed.secret.token", timeout=10).status_code == 200
        time.sleep(0.5)  # the access log line is written after the response
    log = (tmp_path / "gunicorn-access.log").read_text()
    assert '"GET /events?\u2026 HTTP/1.1" 200' in log and '"GET /donate/spring?\u2026 HTTP/1.1" 200' in log
    assert f'"{base}/customers?\u2026"' in log  # the Referer too
    for secret in ("ada@example.org", "grace@example.org", "status=error", "signed.secret.token"):
        assert secret not in log
