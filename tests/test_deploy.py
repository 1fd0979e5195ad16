"""The deploy/ examples, used as an operator uses them (docs/deploy.md).

- The systemd units pass ``systemd-analyze verify``, agree with each other (paths, the timer's schedule and the
  job's ``--period``), and their commands run for real: ``ExecStart=`` (and ``ExecStartPre=``) read from each
  unit, ``/srv/paydesk`` replaced by a scratch install laid out as docs/deploy.md lays it out (a link to a
  release directory of symlinks to this checkout, the instance folder in a state directory), the environment the
  example environment file gives and nothing else from the caller: migrations, the scheduled job with nothing
  to do, the worker started and stopped as systemd stops it, gunicorn on the socket systemd would hand it,
  answering ``/healthz`` after telling systemd it is ready (``Type=notify``).
- The upgrade as docs/deploy.md describes it (new release linked, migrations, restart) while webhooks keep
  arriving: every delivery is answered 200 and stored, and the new gunicorn runs the new release.
- The environment file example reads the same in systemd and in a shell, names only real settings, holds no
  secret, and its database pool fits the threads that share it.
- The nginx example passes ``nginx -t``, and in front of gunicorn it serves TLS, passes the client's address
  and scheme (paydesk sees them with ``PAYDESK_TRUSTED_PROXIES=1``), refuses bodies over paydesk's limits,
  buffers slow bodies so they hold no gunicorn thread, and serves the static files itself.

nginx comes from ``make test`` (its ``nginx`` step installs it with apt when it can); without it those tests are
skipped with the reason. Each test here fails when the example it checks is broken.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import PG_URL, ROOT, free_port

DEPLOY = ROOT / "deploy"
INSTALL = "/srv/paydesk"
ENV_PATH = "/etc/paydesk/env"
SERVICES = (
    "paydesk-web.service",
    "paydesk-worker.service",
    "paydesk-migrate.service",
    "paydesk-process-stripe.service",
)
TIMER = "paydesk-process-stripe.timer"
SOCKET = "paydesk-web.socket"
SERVER_NAME = "paydesk.example.org"
APP_BIND = "127.0.0.1:8000"  # where paydesk-web.socket listens and nginx's upstream points


# -- reading the examples ----------------------------------------------------------------------------------


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file: section -> key -> values (a key may repeat), continuation lines joined."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        assert current is not None, f"{path.name}: {line!r} comes before any [Section]"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def parse_env_file(text: str) -> dict[str, str]:
    """``KEY=value`` lines as systemd's EnvironmentFile= reads them: comments on lines of their own, a value
    in single or double quotes taken as it is inside them, otherwise up to the end of the line."""
    env: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key.strip()), f"line {number}: {raw!r}"
        value = value.strip()
        if value[:1] in ("'", '"'):
            quote = value[0]
            assert value.endswith(quote) and len(value) > 1, f"line {number}: unclosed quote in {raw!r}"
            value = value[1:-1]
            if quote == '"':
                value = re.sub(r'\\(["\\$`])', r"\1", value)
        env[key.strip()] = value
    return env


def env_example() -> str:
    return (DEPLOY / "paydesk.env.example").read_text()


def commands(unit: dict, install: Path, *keys: str) -> list[list[str]]:
    """The unit's ``keys`` command lines (ExecStartPre, ExecStart, ...), for ``install`` instead of /srv/paydesk."""
    out = []
    for key in keys:
        for value in unit["Service"].get(key, []):
            value = value.lstrip("-@:+!")  # systemd's prefixes: ignore failure, run privileged, ...
            out.append([part.replace(INSTALL, str(install)) for part in shlex.split(value)])
    return out


def make_release(tmp_path: Path, name: str) -> Path:
    """/srv/paydesk-releases/<name>: this checkout's code (symlinked), the test's virtualenv, and instance/ linked to
    the state directory (/var/lib/paydesk), as docs/deploy.md sets a release up."""
    release = tmp_path / "srv" / "paydesk-releases" / name
    release.mkdir(parents=True)
    for item in ("admin", "migrations", "wsgi.py", "gunicorn.conf.py"):
        os.symlink(ROOT / item, release / item)
    os.symlink(sys.prefix, release / ".venv")
    os.symlink(tmp_path / "var" / "lib" / "paydesk", release / "instance")
    return release


def switch(tmp_path: Path, release: Path) -> Path:
    """Point /srv/paydesk at ``release`` in one step (a new link renamed over the old one)."""
    link = tmp_path / "srv" / "paydesk"
    new = tmp_path / "srv" / "paydesk.new"
    os.symlink(release, new)
    os.replace(new, link)
    return link


@pytest.fixture
def install(tmp_path):
    """A scratch /srv/paydesk (a link to release r1), its state directory, and /etc/paydesk/env made from the
    example with a scratch SQLite database in the state directory."""
    state = tmp_path / "var" / "lib" / "paydesk"
    state.mkdir(parents=True, mode=0o750)
    root = switch(tmp_path, make_release(tmp_path, "r1"))
    text = re.sub(
        r"(?m)^PAYDESK_DATABASE_URL=.*$",
        f"PAYDESK_DATABASE_URL=sqlite:///{root}/instance/paydesk.sqlite3",
        env_example(),
    )
    env_file = tmp_path / "etc" / "paydesk" / "env"
    env_file.parent.mkdir(parents=True)
    env_file.write_text(text)
    return root


def service_env(install: Path, unit: dict, **extra: str) -> dict[str, str]:
    """What systemd gives the unit's processes: a bare environment plus its EnvironmentFile= and Environment=."""
    (env_file,) = unit["Service"]["EnvironmentFile"]
    assert env_file == ENV_PATH
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(install)}
    env.update(parse_env_file((install.parent.parent / "etc" / "paydesk" / "env").read_text()))
    for assignment in unit["Service"].get("Environment", []):
        for part in shlex.split(assignment):
            key, _, value = part.partition("=")
            env[key] = value
    env.update(extra)
    return env


def run_unit_command(
    install: Path, unit_name: str, key: str = "ExecStart", timeout: float = 120, **extra: str
):
    unit = parse_unit(DEPLOY / unit_name)
    done = []
    for argv in commands(unit, install, key):
        cwd = unit["Service"]["WorkingDirectory"][0].replace(INSTALL, str(install))
        res = subprocess.run(
            argv,
            cwd=cwd,
            env=service_env(install, unit, **extra),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert res.returncode == 0, (
            f"{unit_name} {key} {argv} exited {res.returncode}:\n{res.stdout}\n{res.stderr}"
        )
        done.append(res)
    assert done, f"{unit_name} has no {key}="
    return done


def start_unit(
    install: Path, unit_name: str, log: Path, *, listen: socket.socket | None = None, **extra: str
) -> subprocess.Popen:
    """Start the unit's ExecStart= as systemd would; ``listen``: the socket its .socket unit hands it (fd 3,
    LISTEN_FDS=1, LISTEN_PID its own pid)."""
    unit = parse_unit(DEPLOY / unit_name)
    for argv in commands(unit, install, "ExecStartPre"):
        subprocess.run(argv, cwd=install, env=service_env(install, unit, **extra), check=True, timeout=120)
    (argv,) = commands(unit, install, "ExecStart")
    cwd = unit["Service"]["WorkingDirectory"][0].replace(INSTALL, str(install))
    env = service_env(install, unit, **extra)
    preexec = None
    if listen is not None:
        env["LISTEN_FDS"] = "1"
        argv = ["/bin/sh", "-c", 'LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"', *argv]
        fd = listen.fileno()

        def preexec():
            os.dup2(fd, 3)  # systemd's first passed socket; dup2 leaves it inheritable

    with open(log, "ab") as handle:
        return subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            close_fds=False,
            preexec_fn=preexec,
        )


def web_socket() -> socket.socket:
    """What paydesk-web.socket listens on (its ListenStream=, on a free port here), held by the test as systemd
    holds it: across gunicorn's restarts."""
    sock_unit = parse_unit(DEPLOY / SOCKET)["Socket"]
    assert sock_unit["ListenStream"] == [APP_BIND], "nginx's upstream and the test expect the socket here"
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(int(sock_unit.get("Backlog", ["128"])[0]))
    return sock


def stop_timeout(unit_name: str) -> float:
    unit = parse_unit(DEPLOY / unit_name)
    value = unit["Service"]["TimeoutStopSec"][0]
    assert value.isdigit(), f"{unit_name}: TimeoutStopSec={value} (write seconds)"
    return float(value)


def stop_as_systemd_does(proc: subprocess.Popen, unit_name: str) -> int:
    """KillMode=mixed: SIGTERM to the main process only; it must be gone (children too) within TimeoutStopSec."""
    unit = parse_unit(DEPLOY / unit_name)
    assert unit["Service"].get("KillMode") == ["mixed"], f"{unit_name}: the test assumes KillMode=mixed"
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=stop_timeout(unit_name))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        pytest.fail(f"{unit_name} did not stop within TimeoutStopSec after SIGTERM")


def children(pid: int) -> list[int]:
    """The live processes whose parent is ``pid`` (Linux /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def wait_for_text(log: Path, text: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(
                f"no {text!r} in the output (exit {proc.poll()}):\n{log.read_text(errors='replace')[-3000:]}"
            )
        time.sleep(0.1)


def healthz(base: str, timeout: float = 5) -> int:
    conn = http.client.HTTPConnection(base, timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    finally:
        conn.close()


def wait_healthy(base: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if healthz(base) == 200:
                return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"gunicorn did not answer /healthz:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.1)


# -- the units -------------------------------------------------------------------------------------------------


def test_the_units_pass_systemd_analyze_verify(tmp_path, install):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (the units' commands are still run by the tests below)")
    env_file = install.parent.parent / "etc" / "paydesk" / "env"
    units = (*SERVICES, TIMER, SOCKET)
    for name in units:  # the paths they name must exist: point them at the scratch install
        text = (DEPLOY / name).read_text().replace(INSTALL, str(install)).replace(ENV_PATH, str(env_file))
        (tmp_path / name).write_text(text)
    res = subprocess.run(
        [tool, "verify", "--man=no", *(str(tmp_path / n) for n in units)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    # verify exits 0 on a setting it cannot parse ("ignoring"): any line about our units is a failure
    ours = [line for line in (res.stdout + res.stderr).splitlines() if "paydesk" in line]
    assert res.returncode == 0 and not ours, res.stdout + res.stderr


def test_the_units_agree_on_paths_user_and_schedule():
    for name in SERVICES:
        service = parse_unit(DEPLOY / name)["Service"]
        assert service["User"] == ["paydesk"] and service["Group"] == ["paydesk"], name
        assert service["WorkingDirectory"] == [INSTALL], name
        assert service["EnvironmentFile"] == [ENV_PATH], name
        assert service["StateDirectory"] == ["paydesk"] and service["ProtectSystem"] == ["strict"], (
            f"{name}: paydesk writes its generated keys, SQLite database and receipts to instance/ (the state directory)"
        )
        for argv in commands({"Service": service}, Path(INSTALL), "ExecStart"):
            assert argv[0].startswith(f"{INSTALL}/.venv/bin/"), f"{name}: {argv[0]} is not the install's venv"
    timer = parse_unit(DEPLOY / TIMER)
    (calendar,) = timer["Timer"]["OnCalendar"]
    minutes = re.fullmatch(r"\*:0/(\d+)", calendar)
    assert minutes, f"OnCalendar={calendar}: the test reads the */N-minutes form"
    (argv,) = commands(parse_unit(DEPLOY / "paydesk-process-stripe.service"), Path(INSTALL), "ExecStart")
    assert argv[argv.index("--period") + 1] == f"{minutes.group(1)} minutes", (
        "process-stripe's --period must be the timer's interval, or hosts' runs fall in different periods"
    )
    assert timer["Timer"].get("AccuracySec") == ["1s"] and "RandomizedDelaySec" not in timer["Timer"]
    web = parse_unit(DEPLOY / "paydesk-web.service")
    assert web["Service"]["Type"] == ["notify"], "gunicorn tells systemd when it is ready"
    assert SOCKET in web["Unit"]["Requires"] and SOCKET in web["Unit"]["After"][0].split()
    (argv,) = commands(web, Path(INSTALL), "ExecStart")
    assert not any(a.startswith(("-b", "--bind")) for a in argv), "the socket comes from paydesk-web.socket"
    assert stop_timeout("paydesk-web.service") > 30, "gunicorn.conf.py gives requests 30 s (graceful_timeout)"
    assert stop_timeout("paydesk-worker.service") > 60, "the worker supervisor waits up to 60 s per process"


def test_the_units_commands_run_migrate_schedule_work_and_serve(tmp_path, install):
    """Every unit's commands, as systemd would run them, on a scratch SQLite install."""
    # migrations first: a fresh database at the head revision, the keys generated into instance/ (mode 0600)
    run_unit_command(install, "paydesk-migrate.service")
    db_file = install / "instance" / "paydesk.sqlite3"
    with sqlite3.connect(db_file) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone()
        assert conn.execute("SELECT count(*) FROM stripe_event").fetchone() == (0,)
    for key in ("secret_key", "encryption_key"):
        assert (install / "instance" / key).stat().st_mode & 0o777 == 0o600

    # the scheduled job, twice in one period: the first run does the (empty) work, the second finds it done
    (first,) = run_unit_command(install, "paydesk-process-stripe.service")
    assert "nothing to do" in first.stdout, first.stdout
    (second,) = run_unit_command(install, "paydesk-process-stripe.service")
    assert "already did this period's run" in second.stdout, second.stdout

    # the worker: starts (one thread on SQLite, saying so), stops on SIGTERM with status 0
    worker_log = tmp_path / "worker.log"
    worker = start_unit(install, "paydesk-worker.service", worker_log)
    try:
        wait_for_text(worker_log, "paydesk worker running", worker)
    finally:
        code = stop_as_systemd_does(worker, "paydesk-worker.service")
    assert code == 0, worker_log.read_text()

    # gunicorn on the socket systemd hands it: tells systemd it is ready (Type=notify), answers /healthz, stops
    # on SIGTERM within TimeoutStopSec
    notify_path = tmp_path / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify.settimeout(60)
    listen = web_socket()
    base = f"127.0.0.1:{listen.getsockname()[1]}"
    web_log = tmp_path / "web.log"
    web = start_unit(install, "paydesk-web.service", web_log, listen=listen, NOTIFY_SOCKET=str(notify_path))
    try:
        message = notify.recv(4096).decode()
        assert "READY=1" in message, message
        wait_healthy(base, web, web_log)
    finally:
        notify.close()
        code = stop_as_systemd_does(web, "paydesk-web.service")
        listen.close()
    assert code == 0, web_log.read_text()[-3000:]
    assert "Booting worker" in web_log.read_text()


@contextmanager
def postgres_database():
    """A scratch PostgreSQL database of this test's own (the suite's shared one is left alone), dropped after."""
    try:
        import psycopg

        name = f"paydesk_deploy_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # noqa: BLE001 - no server: skipped, and said so
        pytest.skip(f"PostgreSQL not available at {PG_URL}: {type(exc).__name__}")
    try:
        yield re.sub(r"/[^/]*$", "/" + name, PG_URL)
    finally:
        with psycopg.connect(PG_URL, autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_the_worker_unit_runs_its_processes_on_postgresql_and_stops_them_all(tmp_path, install):
    with postgres_database() as url:
        run_unit_command(install, "paydesk-migrate.service", PAYDESK_DATABASE_URL=url)
        (argv,) = commands(parse_unit(DEPLOY / "paydesk-worker.service"), install, "ExecStart")
        processes = int(argv[argv.index("--processes") + 1])
        threads = int(argv[argv.index("--concurrency") + 1])
        log = tmp_path / "worker.log"
        worker = start_unit(install, "paydesk-worker.service", log, PAYDESK_DATABASE_URL=url)
        try:
            wait_for_text(log, f"running with {processes} process(es) x {threads} thread(s)", worker)
            deadline = time.monotonic() + 30
            while len(kids := children(worker.pid)) < processes and time.monotonic() < deadline:
                time.sleep(0.1)
            assert len(kids) == processes, kids
            # the pool of each process holds what its threads use (the environment file's pool settings)
            time.sleep(2)
            import psycopg

            with psycopg.connect(url, autocommit=True) as conn:
                held = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()"
                ).fetchone()[0]
            assert held <= processes * (threads + 1), held
        finally:
            code = stop_as_systemd_does(worker, "paydesk-worker.service")
        assert code == 0, log.read_text()[-3000:]
        for pid in kids:
            assert (
                not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
            ), f"worker process {pid} outlived its supervisor"


# -- the environment file ------------------------------------------------------------------------------------


def test_the_environment_file_reads_the_same_in_systemd_and_in_a_shell(tmp_path):
    path = tmp_path / "env"
    path.write_text(env_example())
    ours = parse_env_file(env_example())
    shell = subprocess.run(
        ["bash", "-c", f"set -a; . {shlex.quote(str(path))}; set +a; env -0"],
        capture_output=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=30,
        check=True,
    )
    theirs = dict(item.split("=", 1) for item in shell.stdout.decode().split("\0") if "=" in item)
    assert ours and {k: theirs.get(k) for k in ours} == ours


def test_the_environment_file_names_real_settings_and_holds_no_secret():
    from admin.config import DefaultConfig

    env = parse_env_file(env_example())
    for key in env:
        if key == "WEB_CONCURRENCY":  # gunicorn.conf.py's
            continue
        assert key.startswith("PAYDESK_"), key
        name = key[len("PAYDESK_") :]
        assert hasattr(DefaultConfig, name) or name == "SQLALCHEMY_ENGINE_OPTIONS", (
            f"{key} is not a paydesk setting"
        )
    assert env["PAYDESK_TRUSTED_PROXIES"] == "1", "one proxy: deploy/nginx/paydesk.conf"
    assert env["PAYDESK_SESSION_COOKIE_SECURE"] == "true"
    assert "PAYDESK_SECRET_KEY" not in env and "PAYDESK_ENCRYPTION_KEY" not in env, "no keys in an example"
    assert re.fullmatch(r"postgresql://paydesk:CHANGE-ME@[^/]+/paydesk", env["PAYDESK_DATABASE_URL"])


def test_the_environment_files_pool_fits_the_threads_that_share_it(tmp_path):
    """Each gunicorn thread holds a connection, and the donation rate limiter a second one for a moment (measured:
    2 processes x 8 threads under load opened 27); each worker thread one, and a job's lease one more. A pool
    smaller than that makes requests wait (and fail after pool_timeout)."""
    from admin import create_app
    from admin.config import env_overrides

    env = parse_env_file(env_example())
    app = create_app(
        {
            **env_overrides(env),
            "DATABASE_URL": "postgresql://paydesk@127.0.0.1:9/paydesk",
            "SECRET_KEY": "x",
            "ENCRYPTION_KEY": "x",
        }
    )
    options = app.config["SQLALCHEMY_ENGINE_OPTIONS"]
    assert options["hide_parameters"], "paydesk's own engine options are kept"
    size, overflow = options["pool_size"], options["max_overflow"]
    threads = int(re.search(r"(?m)^threads = (\d+)", (ROOT / "gunicorn.conf.py").read_text()).group(1))
    assert size >= threads and size + overflow >= 2 * threads, (size, overflow, threads)
    (argv,) = commands(parse_unit(DEPLOY / "paydesk-worker.service"), Path(INSTALL), "ExecStart")
    assert size + overflow >= int(argv[argv.index("--concurrency") + 1]) + 1
    assert options["pool_timeout"] < 30, (
        "a request waiting for a connection gives up before gunicorn's timeout"
    )


# -- nginx -----------------------------------------------------------------------------------------------------


def _nginx() -> str:
    path = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if path is None:
        pytest.skip(
            "nginx is not installed (make test installs it with apt when run as root): "
            "the nginx example is not checked"
        )
    return path


@pytest.fixture
def certificate(tmp_path):
    """A throwaway self-signed certificate for paydesk.example.org."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: no certificate for the nginx example")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            f"/CN={SERVER_NAME}",
            "-addext",
            f"subjectAltName=DNS:{SERVER_NAME}",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def substitute(text: str, changes: list[tuple[str, str]]) -> str:
    for old, new in changes:
        assert old in text, f"the nginx example no longer has {old!r}: update this test with it"
        text = text.replace(old, new)
    return text


def nginx_config(tmp_path: Path, certificate, *, ports=None, install: Path | None = None, edit=None) -> Path:
    """The example as a site, inside a minimal nginx.conf of the test's own (its temp files and logs in tmp)."""
    cert, key = certificate
    text = substitute(
        (DEPLOY / "nginx" / "paydesk.conf").read_text(),
        [
            (f"/etc/letsencrypt/live/{SERVER_NAME}/fullchain.pem", str(cert)),
            (f"/etc/letsencrypt/live/{SERVER_NAME}/privkey.pem", str(key)),
        ],
    )
    if ports:
        http_port, https_port, app_port = ports
        text = substitute(
            text,
            [
                ("listen 80;", f"listen 127.0.0.1:{http_port};"),
                ("listen [::]:80;", ""),
                ("listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;"),
                ("listen [::]:443 ssl http2;", ""),
                (f"server {APP_BIND};", f"server 127.0.0.1:{app_port};"),
                (f"alias {INSTALL}/admin/static/;", f"alias {install}/admin/static/;"),
            ],
        )
    if edit:
        text = edit(text)
    site = tmp_path / "paydesk.conf"
    site.write_text(text)
    for folder in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (tmp_path / "nginx-temp" / folder).mkdir(parents=True, exist_ok=True)
    temp = "\n".join(
        f"    {kind}_temp_path {tmp_path}/nginx-temp/{folder};"
        for kind, folder in (
            ("client_body", "body"),
            ("proxy", "proxy"),
            ("fastcgi", "fastcgi"),
            ("uwsgi", "uwsgi"),
            ("scgi", "scgi"),
        )
    )
    main = tmp_path / "nginx.conf"
    main.write_text(f"""{"user root;" if os.geteuid() == 0 else ""}
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/nginx-error.log info;
daemon off;
events {{ worker_connections 256; }}
http {{
    types {{ text/css css; application/javascript js; image/svg+xml svg; text/plain txt; }}
    access_log {tmp_path}/nginx-access.log;
{temp}
    include {site};
}}
""")
    return main


def nginx_t(tmp_path: Path, main: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [_nginx(), "-t", "-c", str(main), "-p", str(tmp_path), "-e", "stderr"],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_nginx_example_passes_nginx_t(tmp_path, certificate):
    res = nginx_t(tmp_path, nginx_config(tmp_path, certificate))
    assert res.returncode == 0, res.stderr
    assert "[warn]" not in res.stderr and "[emerg]" not in res.stderr, res.stderr


def test_nginx_t_catches_a_broken_directive_in_the_example(tmp_path, certificate):
    """The check above has teeth: the example with one directive misspelt is refused."""
    main = nginx_config(
        tmp_path,
        certificate,
        edit=lambda t: substitute(t, [("proxy_request_buffering on;", "proxy_request_buffering yes;")]),
    )
    res = nginx_t(tmp_path, main)
    assert res.returncode != 0 and "proxy_request_buffering" in res.stderr, res.stderr


def test_nginx_refuses_readyz_and_metrics_from_outside(tmp_path, certificate):
    """/readyz and /metrics are for monitoring asking each machine directly: the example answers 403 itself
    (the app behind it, here a stand-in that answers everything 200, never sees them); other paths pass."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []

    class App(BaseHTTPRequestHandler):
        def do_GET(self):
            seen.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    app = ThreadingHTTPServer(("127.0.0.1", 0), App)
    threading.Thread(target=app.serve_forever, daemon=True).start()
    http_port, https_port = free_port(), free_port()
    main = nginx_config(
        tmp_path, certificate, ports=(http_port, https_port, app.server_address[1]), install=tmp_path
    )
    proxy = subprocess.Popen(
        [_nginx(), "-c", str(main), "-p", str(tmp_path), "-e", "stderr"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                status, _, _ = _request(https_port, cert=certificate[0], method="GET", path="/healthz")
                break
            except OSError:
                if proxy.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"nginx did not start:\n{(tmp_path / 'nginx-error.log').read_text()}")
                time.sleep(0.1)
        assert status == 200 and seen == ["/healthz"]
        for path in ("/readyz", "/metrics", "/metrics/", "/metrics?format=x", "/%6Detrics", "//readyz"):
            status, _, _ = _request(https_port, certificate[0], "GET", path)
            assert status == 403, path
        status, _, _ = _request(https_port, certificate[0], "GET", "/metrics-report")
        assert status == 200
        assert seen == ["/healthz", "/metrics-report"]
    finally:
        proxy.send_signal(signal.SIGQUIT)
        try:
            proxy.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proxy.kill()
        app.shutdown()


class _TLS(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 as https://paydesk.example.org (SNI and certificate name), from a chosen address."""

    def connect(self):
        http.client.HTTPConnection.connect(self)
        self.sock = self._context.wrap_socket(self.sock, server_hostname=SERVER_NAME)


def _request(
    port: int,
    cert: Path,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict | None = None,
    source: str = "127.0.0.1",
) -> tuple[int, dict, bytes]:
    conn = _TLS(
        "127.0.0.1",
        port,
        context=ssl.create_default_context(cafile=str(cert)),
        timeout=15,
        source_address=(source, 0),
    )
    try:
        conn.request(method, path, body=body, headers={"Host": SERVER_NAME, **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def _is_nginx_413(status: int, body: bytes) -> bool:
    return status == 413 and b"<center>nginx</center>" in body  # nginx's own page: paydesk never saw the body


def _slow_client(port: int, cert: Path, path: str) -> ssl.SSLSocket:
    """A client that sends its headers and the start of its body, then nothing more."""
    ctx = ssl.create_default_context(cafile=str(cert))
    sock = ctx.wrap_socket(
        socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname=SERVER_NAME
    )
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: {SERVER_NAME}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: 1000\r\n\r\nemail=".encode()
    )
    return sock


def test_nginx_in_front_of_gunicorn_as_the_examples_set_them_up(tmp_path, install, certificate):
    nginx = _nginx()
    cert, _ = certificate
    run_unit_command(install, "paydesk-migrate.service")
    listen = web_socket()
    app_port, http_port, https_port = listen.getsockname()[1], free_port(), free_port()
    web_log = tmp_path / "web.log"
    # one gunicorn process (8 threads), so that a handful of slow clients would hold them all without nginx
    web = start_unit(install, "paydesk-web.service", web_log, listen=listen, WEB_CONCURRENCY="1")
    nginx_log = tmp_path / "nginx.out"
    proxy = None
    try:
        wait_healthy(f"127.0.0.1:{app_port}", web, web_log)
        main = nginx_config(tmp_path, certificate, ports=(http_port, https_port, app_port), install=install)
        with open(nginx_log, "wb") as handle:
            proxy = subprocess.Popen(
                [nginx, "-c", str(main), "-p", str(tmp_path), "-e", "stderr"],
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 20
        while True:
            try:
                status, headers, body = _request(https_port, cert, "GET", "/healthz")
                break
            except OSError:
                if proxy.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"nginx did not start:\n{nginx_log.read_text()}")
                time.sleep(0.1)

        # TLS, and paydesk's answer through it, with HSTS
        assert status == 200 and json.loads(body)["status"] == "ok"
        assert headers["strict-transport-security"].startswith("max-age=")
        # plain HTTP is only a redirect
        conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=10)
        conn.request("GET", "/healthz?x=1", headers={"Host": SERVER_NAME})
        resp = conn.getresponse()
        assert (resp.status, resp.getheader("Location")) == (301, f"https://{SERVER_NAME}/healthz?x=1")
        conn.close()

        # the client's address reaches paydesk (PAYDESK_TRUSTED_PROXIES=1 from the environment file), and one
        # the client made up in X-Forwarded-For does not: a failed sign-in is audited with the real one
        client = "127.0.0.5"
        status, headers, page = _request(https_port, cert, "GET", "/login", source=client)
        cookie = headers["set-cookie"].split(";", 1)[0]
        token = re.search(rb'name="csrf_token"[^>]*value="([^"]+)"', page).group(1).decode()
        form = f"email=nobody%40example.org&password=wrong-password&csrf_token={token}".encode()
        post = {
            "Cookie": cookie,
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Forwarded-For": "203.0.113.66",
        }
        status, _, _ = _request(
            https_port,
            cert,
            "POST",
            "/login",
            form,
            {**post, "Referer": f"https://{SERVER_NAME}/login"},
            source=client,
        )
        assert status == 422
        with sqlite3.connect(install / "instance" / "paydesk.sqlite3") as db:
            (params,) = db.execute(
                "SELECT parameters FROM audit_log WHERE action = 'user.sign_in_failed'"
            ).fetchone()
        assert json.loads(params)["address"] == client
        # ... and the scheme: paydesk knows the request came over HTTPS, so its CSRF check (Flask-WTF's, strict
        # on HTTPS only) refuses the same form without a Referer
        status, _, body = _request(https_port, cert, "POST", "/login", form, post, source=client)
        assert status == 400 and b"security token" in body, body[:500]

        # bodies over paydesk's limits stop at nginx; bodies within them reach paydesk
        big = 1024 * 1024
        for path, limit in (("/donate/spring/pay", 16 * 1024), ("/webhooks/stripe/1", big), ("/login", big)):
            status, _, body = _request(
                https_port, cert, "POST", path, b"x" * (limit + 1), {"Content-Type": "application/json"}
            )
            assert _is_nginx_413(status, body), (path, status, body[:200])
            status, _, body = _request(
                https_port, cert, "POST", path, b"x" * limit, {"Content-Type": "application/json"}
            )
            assert not _is_nginx_413(status, body), (path, status)

        # slow bodies wait in nginx: more of them than gunicorn has threads, and paydesk still answers at once
        # (a sign-in form: paydesk reads every POST's form, for its CSRF check, before anything else)
        slow = [_slow_client(https_port, cert, "/login") for _ in range(12)]
        try:
            time.sleep(0.5)
            started = time.monotonic()
            status, _, _ = _request(https_port, cert, "GET", "/healthz")
            assert status == 200 and time.monotonic() - started < 3
        finally:
            for sock in slow:
                sock.close()

        # the static files come from nginx, from the install's admin/static/, with paydesk's headers
        status, headers, body = _request(https_port, cert, "GET", "/static/app.css")
        assert status == 200 and body == (ROOT / "admin" / "static" / "app.css").read_bytes()
        assert headers["x-content-type-options"] == "nosniff" and headers["cache-control"] == "no-cache"
        assert headers["content-type"].startswith("text/css")
        assert "/static/app.css" not in web_log.read_text()
    finally:
        if proxy is not None:
            proxy.send_signal(signal.SIGQUIT)
            try:
                proxy.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proxy.kill()
        stop_as_systemd_does(web, "paydesk-web.service")
        listen.close()


# -- upgrading ---------------------------------------------------------------------------------------------------


def _post_webhooks(base: str, ppid: int, secret: str, stop, results: list) -> None:
    """Stripe, delivering one new event after another (a new connection each, as nginx opens them)."""
    import stripe_objects as so

    while not stop.is_set():
        event = so.event("customer.updated", so.customer())
        body, headers = so.signed(event, secret)
        conn = http.client.HTTPConnection(base, timeout=60)
        try:
            conn.request("POST", f"/webhooks/stripe/{ppid}", body=body, headers=headers)
            results.append((event["id"], conn.getresponse().status))
        except OSError as exc:
            results.append((event["id"], f"{type(exc).__name__}: {exc}"))
        finally:
            conn.close()
        time.sleep(0.02)


def test_an_upgrade_as_the_guide_does_it_refuses_no_webhook(tmp_path, install):
    """docs/deploy.md, "Upgrading": the new release linked as /srv/paydesk, paydesk-migrate started, paydesk-web
    restarted (its socket held by systemd, here the test), all while Stripe keeps delivering: every delivery is
    answered 200 and stored, and the restarted gunicorn runs the new release."""
    import threading

    run_unit_command(install, "paydesk-migrate.service")
    secret = "whsec_deploy_test_upgrade"
    flask = str(install / ".venv" / "bin" / "flask")
    unit = parse_unit(DEPLOY / "paydesk-migrate.service")
    added = subprocess.run(
        [
            flask,
            "--app",
            "wsgi",
            "processor",
            "add",
            "--name",
            "Stripe",
            "--secret-key",
            "sk_test_deploy",
            "--webhook-secret",
            secret,
            "--api-base",
            "http://127.0.0.1:9",
            "--default",
            "--format",
            "json",
        ],
        cwd=install,
        env=service_env(install, unit, PAYDESK_STRIPE_API_BASES="127.0.0.1"),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    ppid = json.loads(added.stdout.strip().splitlines()[-1])["id"]
    listen = web_socket()
    base = f"127.0.0.1:{listen.getsockname()[1]}"
    web_log = tmp_path / "web.log"
    web = start_unit(install, "paydesk-web.service", web_log, listen=listen)
    stop, results = threading.Event(), []
    poster = threading.Thread(target=_post_webhooks, args=(base, ppid, secret, stop, results), daemon=True)
    try:
        wait_healthy(base, web, web_log)
        poster.start()
        time.sleep(1)
        release = make_release(tmp_path, "r2")
        switch(tmp_path, release)
        run_unit_command(
            install, "paydesk-migrate.service"
        )  # at head already: nothing to do, and says so quietly
        before_restart = len(results)
        code = stop_as_systemd_does(
            web, "paydesk-web.service"
        )  # systemctl restart paydesk-web: stop, then start
        assert code == 0
        web = start_unit(install, "paydesk-web.service", web_log, listen=listen)
        wait_healthy(base, web, web_log)
        deadline = time.monotonic() + 30
        while len(results) < before_restart + 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert Path(f"/proc/{web.pid}/cwd").resolve() == release.resolve(), (
            "the new gunicorn runs the new release"
        )
    finally:
        stop.set()
        poster.join(timeout=70)
        stop_as_systemd_does(web, "paydesk-web.service")
        listen.close()
    refused = [r for r in results if r[1] != 200]
    assert len(results) >= before_restart + 20 and not refused, refused[:5]
    with sqlite3.connect(install / "instance" / "paydesk.sqlite3") as db:
        stored = {row[0] for row in db.execute("SELECT event_id FROM stripe_event WHERE status = 'queued'")}
    assert stored == {event_id for event_id, _ in results}  # stored and queued for the worker, none lost
