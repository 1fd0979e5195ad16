"""Benchmark the public donation form on this machine.

For each database (SQLite, and PostgreSQL when reachable): localstripe and paydesk under gunicorn
(the production ``gunicorn.conf.py``, or ``--workers``/``--threads``; ``bench/donate_wsgi.py``: the real
app plus a Server-Timing header), a fresh database
made with ``flask db upgrade``, a processor on that localstripe and a form made with ``forms add``. Then

1. ``GET /donate/<slug>``: N requests at each concurrency; the server's time per request;
2. ``POST /donate/<slug>/pay`` (one-off gifts of 25 USD with card 4242...): tokens and PaymentMethods are
   made beforehand (not timed), then N payments at each concurrency; the server's time per request minus
   the time spent waiting on localstripe (``stripe;dur``), i.e. paydesk's own work; Stripe's share is
   reported beside it;
3. the bytes of the page's own HTML, CSS and JavaScript (Stripe.js excluded), raw and gzipped.

paydesk's CPU per request is read two ways: ``CPU/req``, the CPU time of gunicorn's worker processes (every
thread: the request, gunicorn's own loop and access log, the session's teardown) over a run divided by its
requests, from /proc; and, per request, the CPU of the request's own thread from the WSGI call until its
response starts (``cpu;dur=``, the "in-request" figure). localstripe's CPU is in neither. A payment's CPU
includes building its Stripe requests and reading their answers (that is paydesk's work); the "Stripe" wall
time excluded from its server time is the wait inside ``Gateway.call``.

Targets: page p95 < 20 ms (every concurrency and database), payment CPU/req < 10 ms (issue 21), own
assets < 30 kB.

    .venv/bin/python bench/donate.py                 # 400 page views and 150 payments per cell
    .venv/bin/python bench/donate.py --quick         # 100 and 40
    .venv/bin/python bench/donate.py --backends sqlite --concurrency 1,8 --pages 1000 --payments 300

Only 127.0.0.1 is contacted. Scratch databases (``paydesk_bench_donate_<pid>``) are dropped at the end.
The exit status is 0 only when every target passes.
"""

from __future__ import annotations

import argparse
import cProfile
import gzip
import io
import json
import os
import pstats
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

GUNICORN_ARGS: list[str] = []  # worker settings over gunicorn.conf.py's, from --workers / --threads

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

VENV_BIN = ROOT / ".venv" / "bin"
PG_ADMIN_URL = os.environ.get("PAYDESK_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
STRIPE_KEY = "sk_test_bench_donate_0123456789"
SLUG = "bench"
PAGE_P95_MS = 20.0
PAY_CPU_MS = 10.0  # issue 21: a payment request's paydesk CPU (the workers' processes, Stripe's own excluded)
ASSETS_MAX = 30 * 1024
UNLIMITED = "1000000 per minute"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def tool(name: str) -> str:
    path = VENV_BIN / name
    return str(path) if path.exists() else (shutil.which(name) or name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def server_timing(resp: requests.Response) -> tuple[float, float, float]:
    """(total ms, Stripe ms, paydesk CPU ms) from the Server-Timing header."""
    found = dict(re.findall(r"(\w+);dur=([\d.]+)", resp.headers.get("Server-Timing", "")))
    return float(found.get("app", "nan")), float(found.get("stripe", "0")), float(found.get("cpu", "nan"))


class Stack:
    """localstripe + a fresh paydesk database + gunicorn, for one database backend."""

    def __init__(self, backend: str, workdir: Path, page_limit: bool = False):
        self.backend = backend
        self.workdir = workdir
        self.procs: list[subprocess.Popen] = []
        self.pg_name: str | None = None
        self.url = self._database()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PAYDESK_")}
        self.env.update(
            PAYDESK_DATABASE_URL=self.url,
            PAYDESK_SECRET_KEY="bench-donate-secret",
            PYTHONUNBUFFERED="1",
            PAYDESK_STRIPE_API_BASES="127.0.0.1",
            PAYDESK_DONATE_RATE_LIMIT_IP=UNLIMITED,
            PAYDESK_DONATE_RATE_LIMIT_FORM=UNLIMITED,
            PAYDESK_DONATE_IP_MAX_FAILURES="1000000",
            PAYDESK_SYNC_CUSTOMER_METADATA="false",
        )
        if page_limit:
            self.env["PAYDESK_DONATE_RATE_LIMIT_PAGE"] = UNLIMITED

    def _database(self) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.workdir / 'donate.sqlite3'}"
        import psycopg

        self.pg_name = f"paydesk_bench_donate_{os.getpid()}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{self.pg_name}"')
        return re.sub(r"/[^/]*$", "/" + self.pg_name, PG_ADMIN_URL)

    def flask(self, *args: str) -> str:
        res = subprocess.run(
            [tool("flask"), "--app", "wsgi", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if res.returncode:
            raise RuntimeError(f"flask {' '.join(args[:2])} failed: {res.stderr.strip()[-1500:]}")
        return res.stdout

    def start(self) -> None:
        port = free_port()
        ls = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "localstripe_server.py"), "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.procs.append(ls)
        wait_for_port(port, ls)
        self.stripe_url = f"http://127.0.0.1:{port}"
        self.flask("db", "upgrade")
        out = self.flask(
            "processor",
            "add",
            "--name",
            "bench",
            "--secret-key",
            STRIPE_KEY,
            "--publishable-key",
            "pk_test_bench",
            "--webhook-secret",
            "whsec_bench",
            "--api-base",
            self.stripe_url,
            "--default",
            "--format",
            "json",
        )
        ppid = json.loads(out.strip().splitlines()[-1])["id"]
        self.flask(
            "forms",
            "add",
            "--slug",
            SLUG,
            "--title",
            "Benchmark appeal",
            "--ppid",
            str(ppid),
            "--amounts",
            "10,25,50,100",
            "--frequencies",
            "one-off,monthly,yearly",
            "--min-amount",
            "5",
            "--intro",
            "Every gift buys books for the children's library.",
        )
        port = free_port()
        log = open(self.workdir / f"gunicorn-{self.backend}.log", "wb")  # noqa: SIM115 (the child owns it)
        web = subprocess.Popen(
            [
                tool("gunicorn"),
                "-c",
                str(ROOT / "gunicorn.conf.py"),
                *GUNICORN_ARGS,
                "-b",
                f"127.0.0.1:{port}",
                "--pythonpath",
                str(ROOT / "bench"),
                "donate_wsgi:app",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append(web)
        wait_for_port(port, web)
        self.app_url = f"http://127.0.0.1:{port}"

    def worker_cpu(self) -> float:
        """CPU seconds used so far by gunicorn's worker processes (every thread: requests, gunicorn's own
        loop, access log, teardown), from /proc; localstripe's and the client's are not in it."""
        master = self.procs[-1].pid
        total = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == master:  # ppid
                total += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
        return total

    def close(self) -> None:
        for proc in reversed(self.procs):
            stop(proc)
        if self.pg_name:
            import psycopg

            with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')


_session = threading.local()


def http() -> requests.Session:
    if not hasattr(_session, "s"):
        _session.s = requests.Session()
    return _session.s


def run_load(jobs: list, concurrency: int) -> tuple[list, float]:
    """Run callables with ``concurrency`` client threads; (results, wall seconds)."""
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(lambda job: job(), jobs))
    return results, time.perf_counter() - start


def bench_pages(stack: Stack, n: int, concurrency: int) -> dict:
    page = f"{stack.app_url}/donate/{SLUG}"

    def one():
        resp = http().get(page, timeout=30)
        total, _stripe, cpu = server_timing(resp)
        return resp.status_code, total, cpu

    before = stack.worker_cpu()
    results, wall = run_load([one] * n, concurrency)
    used = stack.worker_cpu() - before
    times = [t for status, t, _ in results if status == 200]
    cpu = [c for status, _, c in results if status == 200]
    return {
        "what": "GET page",
        "n": n,
        "c": concurrency,
        "errors": sum(1 for s, _, _ in results if s != 200),
        "rps": n / wall,
        "p50": pct(times, 50),
        "p95": pct(times, 95),
        "p99": pct(times, 99),
        "max": max(times),
        "cpu_p50": pct(cpu, 50),
        "cpu_p95": pct(cpu, 95),
        "proc_cpu": 1000 * used / n,
    }


def prepare_payments(stack: Stack, n: int) -> list[dict]:
    """Tokens from the page and PaymentMethods made in localstripe, as browsers would (not timed)."""
    from admin.stripe_gateway import Gateway

    gw = Gateway(STRIPE_KEY, stack.stripe_url)
    bodies = []
    for i in range(n):
        html = http().get(f"{stack.app_url}/donate/{SLUG}", timeout=30).text
        token = re.search(r'data-token="([^"]+)"', html)[1]
        pm = gw.create(
            "payment_methods",
            {
                "type": "card",
                "card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
                "billing_details": {"address": {"postal_code": "10115"}},
            },
        )
        bodies.append(
            {
                "token": token,
                "amount": "2500",
                "frequency": "one-off",
                "first_name": "Donor",
                "last_name": f"Number {i}",
                "email": f"donor{i}.{os.getpid()}.{time.time_ns()}@example.org",
                "postal_code": "10115",
                "payment_method": pm["id"],
            }
        )
    return bodies


def bench_payments(stack: Stack, n: int, concurrency: int) -> dict:
    bodies = prepare_payments(stack, n)
    url = f"{stack.app_url}/donate/{SLUG}/pay"

    def job(body):
        def one():
            resp = http().post(url, json=body, timeout=60)
            total, stripe, cpu = server_timing(resp)
            ok = resp.status_code == 200 and resp.json().get("status") == "succeeded"
            return ok, total, stripe, cpu

        return one

    before = stack.worker_cpu()
    results, wall = run_load([job(b) for b in bodies], concurrency)
    used = stack.worker_cpu() - before
    own = [total - stripe for ok, total, stripe, _ in results if ok]
    stripe = [s for ok, _, s, _ in results if ok]
    cpu = [c for ok, _, _, c in results if ok]
    return {
        "what": "POST pay (own)",
        "n": n,
        "c": concurrency,
        "errors": sum(1 for r in results if not r[0]),
        "rps": n / wall,
        "p50": pct(own, 50),
        "p95": pct(own, 95),
        "p99": pct(own, 99),
        "max": max(own),
        "cpu_p50": pct(cpu, 50),
        "cpu_p95": pct(cpu, 95),
        "proc_cpu": 1000 * used / n,
        "stripe_p50": pct(stripe, 50),
        "stripe_p95": pct(stripe, 95),
    }


def profile_payments(stack: Stack, n: int, top: int = 30) -> str:
    """cProfile of ``n`` payment requests (one thread) through the real app in this process, on the stack's
    database and localstripe: where paydesk's CPU goes, paydesk's own functions first."""
    bodies = prepare_payments(stack, n + 3)
    saved = dict(os.environ)
    os.environ.update(stack.env)
    try:
        from admin import create_app

        app = create_app()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    client = app.test_client()
    url = f"/donate/{SLUG}/pay"
    env = {"REMOTE_ADDR": "127.0.0.1"}
    for body in bodies[:3]:  # warm: connections, SDK clients, imports
        client.post(url, json=body, environ_base=env)
    from sqlalchemy import event

    from admin.extensions import db
    from admin.stripe_gateway import call_counts

    counts = {"statements": 0, "commits": 0}

    def statement(*_args) -> None:
        counts["statements"] += 1  # every statement sent to the database (BEGIN included), pre-pings not

    def commit(*_args) -> None:
        counts["commits"] += 1

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", statement)
    event.listen(engine, "commit", commit)
    stripe_before = sum(call_counts().values())
    prof = cProfile.Profile()
    cpu, t0 = time.thread_time(), time.perf_counter()
    prof.enable()
    ok = sum(
        client.post(url, json=body, environ_base=env).get_json().get("status") == "succeeded"
        for body in bodies[3:]
    )
    prof.disable()
    cpu, elapsed = time.thread_time() - cpu, time.perf_counter() - t0
    event.remove(engine, "before_cursor_execute", statement)
    event.remove(engine, "commit", commit)
    stripe_calls = sum(call_counts().values()) - stripe_before
    engine.dispose()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    out.write(
        f"cProfile of {n} payment requests on {stack.backend} ({ok} succeeded) in {elapsed:.2f} s, "
        f"{1000 * cpu / n:.1f} ms of this thread's CPU each under the profiler (Stripe's CPU is localstripe's)\n"
        f"per payment (counts, not times: the machine's load does not change them): "
        f"{stats.total_calls / n:,.0f} Python function calls, {counts['statements'] / n:.1f} SQL statements "
        f"(BEGIN included), {counts['commits'] / n:.1f} commits, {stripe_calls / n:.1f} Stripe calls\n"
    )
    stats.sort_stats("cumulative")
    out.write("\n-- paydesk functions by cumulative time --\n")
    stats.print_stats(r"admin/", top)
    stats.sort_stats("tottime")
    out.write("\n-- all functions by own time --\n")
    stats.print_stats(top)
    text = out.getvalue().replace(str(ROOT) + "/", "").replace(str(Path(sys.prefix)) + "/", "")
    return re.sub(r"\n{3,}", "\n\n", text)


def asset_sizes(stack: Stack) -> dict[str, tuple[int, int]]:
    html = http().get(f"{stack.app_url}/donate/{SLUG}", timeout=30).content
    sizes = {"page HTML": html}
    for name in ("donate.css", "donate.js"):
        sizes[name] = http().get(f"{stack.app_url}/static/{name}", timeout=30).content
    return {k: (len(v), len(gzip.compress(v))) for k, v in sizes.items()}


def pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_URL, connect_timeout=3):
            return True
    except Exception:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pages", type=int, default=400, help="page views per cell")
    parser.add_argument("--payments", type=int, default=150, help="payments per cell")
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--quick", action="store_true", help="100 page views and 40 payments per cell")
    parser.add_argument(
        "--page-limit",
        action="store_true",
        help="count page views too (PAYDESK_DONATE_RATE_LIMIT_PAGE; off by default)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="also cProfile N payment requests in this process, on each backend (bench/results/donate-profile-*.txt)",
    )
    parser.add_argument("--profile-only", action="store_true", help="with --profile: no timed runs")
    parser.add_argument("--workers", type=int, help="gunicorn worker processes (default: gunicorn.conf.py's)")
    parser.add_argument("--threads", type=int, help="threads per worker (default: gunicorn.conf.py's)")
    args = parser.parse_args()
    GUNICORN_ARGS[:] = ([f"--workers={args.workers}"] if args.workers else []) + (
        [f"--threads={args.threads}"] if args.threads else []
    )
    if args.quick:
        args.pages, args.payments = 100, 40
    levels = [int(c) for c in args.concurrency.split(",")]
    backends = [b for b in args.backends.split(",") if b]
    if "postgresql" in backends and not pg_available():
        print(f"PostgreSQL at {PG_ADMIN_URL} not reachable: SQLite only")
        backends.remove("postgresql")

    load = os.getloadavg()[0]  # this machine is shared: say how busy it was
    print(
        f"donation form benchmark: {os.cpu_count()} cores, load {load:.2f}, gunicorn.conf.py "
        f"{' '.join(GUNICORN_ARGS) or '(as shipped)'}, "
        f"{args.pages} page views and {args.payments} payments per cell, page views "
        f"{'counted by the rate limit' if args.page_limit else 'not rate-limited (the default)'}"
    )
    rows, sizes, failures = [], {}, []
    workdir = Path(tempfile.mkdtemp(prefix="paydesk-bench-donate-"))
    try:
        for backend in backends:
            stack = Stack(backend, workdir, args.page_limit)
            try:
                stack.start()
                for _ in range(30):  # warm-up: both workers, templates, connections
                    http().get(f"{stack.app_url}/donate/{SLUG}", timeout=30)
                bench_payments(stack, 5, 1)  # warm the payment path too
                if args.profile:
                    text = profile_payments(stack, args.profile)
                    out = ROOT / "bench" / "results" / f"donate-profile-{backend}.txt"
                    out.parent.mkdir(exist_ok=True)
                    out.write_text(text)
                    print(f"profile of {args.profile} payments on {backend}: {out.relative_to(ROOT)}")
                    if args.profile_only:
                        continue
                for c in levels:
                    rows.append((backend, bench_pages(stack, args.pages, c)))
                for c in levels:
                    rows.append((backend, bench_payments(stack, args.payments, c)))
                sizes = sizes or asset_sizes(stack)
            finally:
                stack.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.profile_only:
        return 0

    print(
        f"\nserver time per request (Stripe's share excluded for payments); paydesk's CPU per request: "
        f"CPU/req = the workers' processes\n(all their threads) over the run divided by the requests, "
        f"in-request CPU = the request's own thread up to its response\n"
        f"{'backend':10} {'request':15} {'c':>3} {'n':>5} {'req/s':>7} {'p50 ms':>7} {'p95 ms':>7} "
        f"{'p99 ms':>7} {'max ms':>7} {'err':>4} {'CPU/req':>7} {'in-request p50/p95':>18}  "
        f"Stripe p50/p95 ms (excluded)"
    )
    for backend, r in rows:
        extra = f"  {r['stripe_p50']:.1f} / {r['stripe_p95']:.1f}" if "stripe_p50" in r else ""
        cpu = f"{r['cpu_p50']:.2f} / {r['cpu_p95']:.2f}"
        print(
            f"{backend:10} {r['what']:15} {r['c']:>3} {r['n']:>5} {r['rps']:>7.1f} {r['p50']:>7.2f} "
            f"{r['p95']:>7.2f} {r['p99']:>7.2f} {r['max']:>7.2f} {r['errors']:>4} {r['proc_cpu']:>7.2f} "
            f"{cpu:>18}{extra}"
        )
    total = sum(raw for raw, _ in sizes.values())
    print("\nthe page's own assets (Stripe.js excluded):")
    for name, (raw, gz) in sizes.items():
        print(f"  {name:10} {raw:>7,} bytes  ({gz:,} gzipped)")
    print(f"  {'total':10} {total:>7,} bytes  ({sum(gz for _, gz in sizes.values()):,} gzipped)\n")

    for backend, r in rows:
        if r["what"] == "GET page":
            ok = r["p95"] < PAGE_P95_MS and not r["errors"]
            print(
                f"  {'PASS' if ok else 'FAIL'}  page p95 {r['p95']:.2f} ms on {backend}, c={r['c']} "
                f"(target < {PAGE_P95_MS:.0f} ms, no errors)"
            )
            failures += [] if ok else [r]
        elif r["errors"]:
            print(f"  FAIL  {r['errors']} payments not accepted on {backend}, c={r['c']}")
            failures.append(r)
        else:
            ok = r["proc_cpu"] < PAY_CPU_MS
            print(
                f"  {'PASS' if ok else 'FAIL'}  payment CPU {r['proc_cpu']:.2f} ms per request on {backend}, "
                f"c={r['c']} (target < {PAY_CPU_MS:.0f} ms of paydesk CPU)"
            )
            failures += [] if ok else [r]
    print(f"  (load average at the end: {os.getloadavg()[0]:.2f})")
    ok = total < ASSETS_MAX
    print(f"  {'PASS' if ok else 'FAIL'}  own assets {total:,} bytes (target < {ASSETS_MAX:,})")
    return 0 if ok and not failures else 1


if __name__ == "__main__":
    sys.exit(main())
