"""Fault soak: restart and stop PostgreSQL, and kill a worker process, under webhook ingest and the worker.

On a throwaway PostgreSQL cluster of its own (``pg_createcluster``, so root; the main cluster on port
5432 is never touched), with paydesk as an operator runs it: ``gunicorn -w 2 wsgi:app`` for the webhook
endpoint and ``flask worker --processes 2 --concurrency 2`` for the worker, receipts sent by SMTP to a
sink in this process, Stripe played by localstripe. The events are real localstripe events (donors,
subscriptions, one-off payments), delivered like Stripe does: signed, and retried until answered 2xx.

Three phases, each on a fresh batch of events delivered at ``--rate`` events/s, the fault coming when a
third of the batch has been sent:

1. ``pg_ctlcluster restart``;
2. ``pg_ctlcluster stop``, ``--stop-seconds`` (20) of outage, ``start``;
3. SIGKILL of one worker process.

Printed: events sent, stored and applied; receipts sent per contribution; seconds until ingest and the
worker resumed after each database return; log bytes per second of outage (gunicorn's and the worker's
logs, from the fault until ``OUTAGE_LOG_INTERVAL`` + 1 s after the return, so the trailing summary lines
count); worker processes restarted. Exit status 0 only when every target is met: nothing lost or
doubled, one receipt per contribution, processing resumed within 5 s of the database's return, under
100 kB of log per minute of outage.

    .venv/bin/python bench/faults.py                  # about 2-3 minutes
    .venv/bin/python bench/faults.py --events 300     # quicker
    .venv/bin/python bench/faults.py --code DIR       # run another source tree (e.g. before a change)

Only 127.0.0.1 is contacted. The cluster, localstripe, gunicorn and the worker are stopped and the
cluster dropped at the end (also on Ctrl-C). Logs go to ``bench/results/faults-<UTC time>/``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import importlib.util  # noqa: E402

import aiohttp  # noqa: E402
import psycopg  # noqa: E402
from db_faults import ThrowawayCluster, cluster_unavailable  # noqa: E402  (tests/db_faults.py)
from smtp_sink import SmtpSink  # noqa: E402  (tests/smtp_sink.py)

# bench/webhooks.py (localstripe events, ports, signatures), by path: tests/webhooks is a package of that name
_spec = importlib.util.spec_from_file_location("bench_webhooks", BENCH / "webhooks.py")
wb = sys.modules["bench_webhooks"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wb)

OUTAGE_LOG_INTERVAL = 10.0  # paydesk's default, stated here to know how long summary lines may trail


@dataclass
class Fault:
    name: str
    started: float = 0.0  # wall time (time.time()) the fault began
    back: float = 0.0  # wall time the database answered again (0: the database never went away)
    # started/back are the probe's: first failed connection, first successful one after it
    ingest_resumed: float | None = None  # seconds from back to the first 2xx
    worker_resumed: float | None = None  # seconds from back to the first event processed
    backlog_at_back: int = 0  # events stored but not processed when the database returned
    log_bytes: int = 0
    answers: collections.Counter = field(default_factory=collections.Counter)
    note: str = ""

    @property
    def outage(self) -> float:
        return max(0.0, self.back - self.started) if self.back else 0.0


class Delivery:
    """Stripe's side: every event signed and POSTed until it is answered 2xx (retried each second here,
    where Stripe waits longer), at ``rate`` new events per second."""

    def __init__(self, url: str, secret: str):
        self.url, self.secret = url, secret
        self.ok_times: list[float] = []  # wall time of every 2xx
        self.answers: list[tuple[float, str]] = []
        self.delivered: set[str] = set()
        self.failed: list[str] = []

    async def _one(self, session: aiohttp.ClientSession, event: dict, deadline: float) -> None:
        body = json.dumps(event, separators=(",", ":")).encode()
        while time.monotonic() < deadline:
            headers = {"Stripe-Signature": wb.sign(body, self.secret), "Content-Type": "application/json"}
            try:
                async with session.post(self.url, data=body, headers=headers) as resp:
                    await resp.read()
                    status = str(resp.status)
            except Exception as exc:  # noqa: BLE001 - a refused connection is an answer too
                status = type(exc).__name__
            now = time.time()
            self.answers.append((now, status))
            if status.startswith("2"):
                self.ok_times.append(now)
                self.delivered.add(event["id"])
                return
            await asyncio.sleep(1.0)
        self.failed.append(event["id"])

    async def _all(self, events: list[dict], rate: float, time_limit: float) -> None:
        deadline = time.monotonic() + time_limit
        connector = aiohttp.TCPConnector(limit=32)
        async with aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=30)
        ) as session:
            tasks = []
            for ev in events:
                tasks.append(asyncio.create_task(self._one(session, ev, deadline)))
                await asyncio.sleep(1.0 / rate)
            await asyncio.gather(*tasks)

    def run(self, events: list[dict], rate: float, time_limit: float) -> None:
        asyncio.run(self._all(events, rate, time_limit))


class Probe(threading.Thread):
    """Connects to the database every 50 ms: when it stopped answering (``down``) and when it answered again
    (``up``). ``pg_ctlcluster`` returns a few seconds after the server accepts connections again, so its
    return is not the moment of the database's return."""

    def __init__(self, url: str):
        super().__init__(daemon=True)
        self.url = url
        self.down: float | None = None
        self.up: float | None = None
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            t = time.time()
            try:
                with psycopg.connect(self.url, autocommit=True, connect_timeout=1) as conn:
                    conn.execute("SELECT 1")
                if self.down is not None and self.up is None:
                    self.up = time.time()
            except psycopg.Error:
                if self.down is None:
                    self.down = t
            self.halt.wait(0.05)


def query(url: str, sql: str, params: tuple = ()) -> list[tuple]:
    with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
        return conn.execute(sql, params).fetchall()


def wait_for(condition, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except psycopg.Error:
            pass
        time.sleep(step)
    return False


def pending(url: str) -> int:
    return query(
        url,
        "SELECT (SELECT count(*) FROM stripe_event WHERE status IN ('queued', 'processing')) + "
        "(SELECT count(*) FROM outbox_task WHERE status IN ('queued', 'processing', 'sending'))",
    )[0][0]


def log_size(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths if p.exists())


def children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return sorted(int(p) for p in out.split())


def worker_resumed_after(url: str, back: float) -> tuple[float | None, int]:
    """Seconds from ``back`` to the first event processed after it, and how many events were waiting then."""
    back_utc = datetime.fromtimestamp(back, UTC).replace(tzinfo=None)
    first, backlog = query(
        url,
        "SELECT min(processed_at) FILTER (WHERE processed_at > %s), "
        "count(*) FILTER (WHERE received_at <= %s AND (processed_at IS NULL OR "
        "processed_at > %s)) FROM stripe_event",
        (back_utc, back_utc, back_utc),
    )[0]
    return ((first - back_utc).total_seconds() if first else None), backlog


def receipt_counts(sink: SmtpSink) -> collections.Counter:
    """Receipts per contribution: by Message-ID, or (code without one) by the transaction in the text."""
    per: collections.Counter = collections.Counter()
    for msg in sink.messages:
        key = msg["Message-ID"]
        if not key:
            text = msg.get_payload(decode=False) if not msg.is_multipart() else str(msg)
            m = re.search(r"Transaction: (\S+)", str(text))
            key = m.group(1) if m else str(msg["To"])
        per[key] += 1
    return per


def run(args: argparse.Namespace) -> int:
    why = cluster_unavailable()
    if why:
        print(f"bench/faults.py needs a throwaway PostgreSQL cluster: {why}. Nothing measured.")
        return 2
    code = Path(args.code).resolve() if args.code else ROOT
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    workdir = BENCH / "results" / f"faults-{stamp}"
    workdir.mkdir(parents=True, exist_ok=True)
    procs: list[subprocess.Popen] = []
    worker = None
    cluster = ThrowawayCluster(name=f"paydesk_bench_faults_{os.getpid()}")
    created = False
    sink = SmtpSink().__enter__()
    report: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        report.append(line)

    try:
        # Stripe: localstripe and its events
        ls_port = wb.free_port()
        ls = subprocess.Popen(
            [sys.executable, str(ROOT / "scripts" / "localstripe_server.py"), "--port", str(ls_port)],
            stdout=subprocess.DEVNULL,
            stderr=open(workdir / "localstripe.log", "wb"),
        )  # noqa: SIM115
        procs.append(ls)
        wb.wait_for_port(ls_port, ls)
        api_base = f"http://127.0.0.1:{ls_port}"
        t0 = time.perf_counter()
        events, made = wb.make_stripe_events(api_base, args.events, time_limit=600)
        say(f"localstripe: {len(events)} events in {time.perf_counter() - t0:.0f} s from {made}")

        # PostgreSQL of our own, paydesk's schema, a processor pointing at localstripe
        t0 = time.perf_counter()
        cluster.create()
        created = True
        url = cluster.create_database("paydesk_faults")
        say(
            f"throwaway cluster {cluster.name} on port {cluster.port} (PostgreSQL {cluster.version}, fsync off) "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("PAYDESK_")}
        env.update(
            PAYDESK_DATABASE_URL=url,
            PAYDESK_SECRET_KEY=wb.SECRET_KEY,
            PAYDESK_SMTP_URL=sink.url,
            PAYDESK_STRIPE_API_BASES="127.0.0.1",
            PYTHONUNBUFFERED="1",
            PYTHONPATH=str(code),
        )

        def flask(*cli: str) -> str:
            res = subprocess.run(
                [wb.tool("flask"), "--app", "wsgi", *cli],
                cwd=code,
                env=env,
                capture_output=True,
                text=True,
                timeout=120,
            )
            if res.returncode:
                raise RuntimeError(f"flask {' '.join(cli)}: {res.stderr.strip()[-2000:]}")
            return res.stdout

        flask("db", "upgrade")
        ppid = json.loads(
            flask(
                "processor",
                "add",
                "--name",
                "bench",
                "--secret-key",
                wb.STRIPE_KEY,
                "--publishable-key",
                "pk_test_bench",
                "--webhook-secret",
                wb.WEBHOOK_SECRET,
                "--api-base",
                api_base,
                "--default",
                "--format",
                "json",
            )
            .strip()
            .splitlines()[-1]
        )["id"]

        # paydesk as an operator runs it
        web_log, worker_log = workdir / "gunicorn.log", workdir / "worker.log"
        port = wb.free_port()
        web = subprocess.Popen(
            [wb.tool("gunicorn"), "-w", "2", "-b", f"127.0.0.1:{port}", "wsgi:app"],
            cwd=code,
            env=env,
            stdout=open(web_log, "wb"),
            stderr=subprocess.STDOUT,
        )  # noqa: SIM115
        procs.append(web)
        worker = subprocess.Popen(
            [wb.tool("flask"), "--app", "wsgi", "worker", "--processes", "2", "--concurrency", "2"],
            cwd=code,
            env=env,
            stdout=open(worker_log, "wb"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(worker)
        wb.wait_for_port(port, web)
        logs = [web_log, worker_log]
        delivery = Delivery(f"http://127.0.0.1:{port}/webhooks/stripe/{ppid}", wb.WEBHOOK_SECRET)
        batches = [events[i::3] for i in range(3)]
        faults: list[Fault] = []

        def phase(name: str, batch: list[dict], act, database: bool) -> Fault:
            fault = Fault(name)
            probe = Probe(url)
            probe.start()
            sender = threading.Thread(target=delivery.run, args=(batch, args.rate, 600), daemon=True)
            sender.start()
            time.sleep(
                len(batch) / args.rate / 3
            )  # a third of the batch is in, the rest arrives during the fault
            size0 = log_size(logs)
            fault.started = time.time()
            act(fault)
            if database:
                wait_for(lambda: probe.up is not None, 60, 0.05)
                time.sleep(OUTAGE_LOG_INTERVAL + 1)  # the summary lines that trail the return
            probe.halt.set()
            fault.log_bytes = log_size(logs) - size0
            sender.join()
            drained = wait_for(lambda: pending(url) == 0, args.time_limit)
            if database and probe.up:
                fault.started, fault.back = probe.down or fault.started, probe.up
                refused = [t for t, st in delivery.answers if t >= fault.started and not st.startswith("2")]
                later = [t for t in delivery.ok_times if t >= fault.back]
                fault.ingest_resumed = min(later) - fault.back if refused and later else None
                fault.worker_resumed, fault.backlog_at_back = worker_resumed_after(url, fault.back)
                if not fault.backlog_at_back and not [t for t in delivery.ok_times if t >= fault.back]:
                    fault.worker_resumed = None  # nothing was waiting, nothing came: nothing to resume
                    fault.note += " no work waiting when the database returned;"
            elif database:
                fault.note += " the probe never saw the database return;"
            fault.answers = collections.Counter(
                st
                for t, st in delivery.answers
                if t >= fault.started and (not fault.back or t <= fault.back + 1)
            )
            if not drained:
                fault.note += f" queue not drained after {args.time_limit:.0f} s;"
            faults.append(fault)
            return fault

        def restart(f: Fault) -> None:
            cluster.restart()

        def stop_start(f: Fault) -> None:
            cluster.stop()
            time.sleep(args.stop_seconds)
            cluster.start()

        def kill_worker(f: Fault) -> None:
            kids = children(worker.pid)
            if not kids:
                f.note += " no worker child to kill;"
                return
            os.kill(kids[0], signal.SIGKILL)
            replaced = wait_for(
                lambda: kids[0] not in children(worker.pid) and len(children(worker.pid)) == len(kids),
                30,
                0.1,
            )
            f.note += (
                f" killed worker process {kids[0]}; {'replaced' if replaced else 'NOT replaced'} "
                f"({len(children(worker.pid))} of {len(kids)} running);"
            )
            zombie = Path(f"/proc/{kids[0]}/stat")
            if zombie.exists() and ") Z " in zombie.read_text():
                f.note += " left a zombie;"

        phase("pg restart", batches[0], restart, database=True)
        phase(f"pg stop {args.stop_seconds:g} s", batches[1], stop_start, database=True)
        phase("SIGKILL worker", batches[2], kill_worker, database=False)

        # the end: what was sent, stored, applied; receipts
        sent = len(events)
        stored = query(url, "SELECT count(*) FROM stripe_event")[0][0]
        distinct = query(url, "SELECT count(DISTINCT event_id) FROM stripe_event")[0][0]
        statuses = dict(query(url, "SELECT status, count(*) FROM stripe_event GROUP BY status"))
        outbox = dict(query(url, "SELECT kind || ' ' || status, count(*) FROM outbox_task GROUP BY 1"))
        contributions = query(url, "SELECT count(*) FROM contribution WHERE status = 'Completed'")[0][0]
        per = receipt_counts(sink)
        spread = collections.Counter(per.values())
        applied = statuses.get("success", 0) + statuses.get("ignored", 0)
        restarts = len(re.findall(r"restarted \(pid", worker_log.read_text(errors="replace")))
        tracebacks = sum(
            p.read_text(errors="replace").count("Traceback (most recent call last)") for p in logs
        )

        say()
        say(
            f"paydesk {wb.git_revision() if code == ROOT else code}, load {os.getloadavg()[0]:.1f} at the end"
        )
        say(
            f"{'fault':<16} {'outage s':>8} {'ingest resumed s':>16} {'worker resumed s':>16} {'backlog':>7} "
            f"{'log bytes':>10} {'log B/s':>8} {'log kB/min':>10}  answers during the fault"
        )
        for f in faults:
            per_s = f.log_bytes / f.outage if f.outage else 0.0
            answers = ", ".join(f"{k} {v}" for k, v in sorted(f.answers.items()))
            fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
            say(
                f"{f.name:<16} {f.outage:>8.1f} {fmt(f.ingest_resumed) if f.back else '-':>16} "
                f"{fmt(f.worker_resumed) if f.back else '-':>16} {f.backlog_at_back if f.back else '-':>7} "
                f"{f.log_bytes:>10} {per_s:>8.0f} {per_s * 60 / 1000:>10.1f}  {answers}{f.note}"
            )
        say()
        say(
            f"events: sent {sent}, delivered {len(delivery.delivered)}, stored {stored} ({distinct} distinct), "
            f"applied {applied} ({', '.join(f'{k} {v}' for k, v in sorted(statuses.items()))})"
        )
        say(f"outbox: {', '.join(f'{k} {v}' for k, v in sorted(outbox.items()))}")
        say(
            f"receipts: {sum(per.values())} mails for {len(per)} contributions ({contributions} completed); "
            f"mails per contribution: {dict(sorted(spread.items()))}"
        )
        say(
            f"worker processes restarted: {restarts}; tracebacks in the logs: {tracebacks}; "
            f"log total {log_size(logs)} bytes (gunicorn {log_size([web_log])}, worker {log_size([worker_log])})"
        )

        targets = [
            (
                f"nothing lost: {sent} sent, {stored} stored, {applied} applied",
                stored == sent == distinct and applied == sent and not delivery.failed,
            ),
            (
                f"one receipt per contribution: {dict(sorted(spread.items()))} mails per contribution, "
                f"{len(per)} contributions receipted of {contributions}",
                set(spread) == {1} and len(per) == contributions,
            ),
        ]
        for f in faults:
            if f.back:
                resumed = [v for v in (f.ingest_resumed, f.worker_resumed) if v is not None]
                idle = "no work waiting" in f.note
                worst = max(resumed) if resumed else None
                said = "never" if worst is None else f"{worst:.2f} s"
                targets.append(
                    (
                        f"{f.name}: processing resumed {'(nothing waiting)' if idle else said} after the "
                        f"database's return (target <= 5 s)",
                        idle or (worst is not None and worst <= 5),
                    )
                )
                minutes = max(1, math.ceil(f.outage / 60))  # a short outage is allowed the budget of a minute
                targets.append(
                    (
                        f"{f.name}: {f.log_bytes / 1000:.1f} kB of log for a {f.outage:.1f} s outage "
                        f"(target < 100 kB per started minute of outage)",
                        f.log_bytes < 100_000 * minutes,
                    )
                )
            else:
                targets.append(
                    (f"{f.name}:{f.note}", "NOT replaced" not in f.note and "zombie" not in f.note)
                )
        say()
        for text, ok in targets:
            say(f"  {'PASS' if ok else 'FAIL'}  {text}")
        (workdir / "report.txt").write_text("\n".join(report) + "\n")
        (workdir / "timeline.json").write_text(
            json.dumps(
                {
                    "faults": [{"name": f.name, "started": f.started, "back": f.back} for f in faults],
                    "answers": delivery.answers,
                }
            )
        )
        print(f"\nlogs and report: {workdir.relative_to(ROOT)}")
        return 0 if all(ok for _, ok in targets) else 1
    finally:
        for p in reversed(procs):
            if p is worker and p.poll() is None:
                p.send_signal(signal.SIGTERM)
            wb.stop_process(p, timeout=60)
        sink.__exit__(None, None, None)
        try:
            if created:
                cluster.drop()
        except Exception as exc:  # noqa: BLE001 - say so: the operator must drop it by hand then
            print(
                f"could not drop cluster {cluster.name}: {exc} (pg_dropcluster --stop {cluster.version} "
                f"{cluster.name})"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=900, help="localstripe events to deliver (3 batches)")
    parser.add_argument("--rate", type=float, default=40.0, help="new events per second from 'Stripe'")
    parser.add_argument("--stop-seconds", type=float, default=20.0, help="length of the PostgreSQL stop")
    parser.add_argument(
        "--time-limit",
        type=float,
        default=420.0,
        help="seconds to wait for each batch to drain (a receipt whose worker was killed mid-send "
        "waits for its lease, 60 s + DB_RETRY_SECONDS)",
    )
    parser.add_argument("--code", help="paydesk source tree to run (default: this one)")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
