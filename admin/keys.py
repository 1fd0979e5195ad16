"""The two keys paydesk needs: ``SECRET_KEY`` (sessions, CSRF) and ``ENCRYPTION_KEY`` (Stripe secrets at rest).

Each comes from configuration (``PAYDESK_SECRET_KEY`` / ``PAYDESK_ENCRYPTION_KEY``, instance/config.py or
``create_app(config)``). Where one is not configured, a random key is generated once into the instance
folder (``instance/secret_key``, ``instance/encryption_key``, readable by their owner only) and reused by
every later start and every process sharing that folder; the process that generates it says so once, in a
warning naming the variable to set (later starts, every command included, stay quiet). There is
no fixed fallback value, and the encryption key is never derived from the secret key (rotating one must not
make the other's data unreadable).

Why generate rather than refuse to start: a single-machine install (the demo, a small charity's one
server) then works safely out of the box; what it must not do is sign sessions with a value printed in the
source. Several machines behind one address must share keys, so they set the variables.
"""

from __future__ import annotations

import logging
import os
import secrets

from cryptography.fernet import Fernet
from flask import Flask

log = logging.getLogger(__name__)

SECRET_FILE = "secret_key"
ENCRYPTION_FILE = "encryption_key"


def ensure_keys(app: Flask) -> None:
    """Fill ``SECRET_KEY`` and ``ENCRYPTION_KEY`` from the instance folder where configuration left them unset.

    Also records where each came from (``SECRET_KEY_SOURCE``, ``ENCRYPTION_KEY_SOURCE``) for messages.
    """
    for name, filename, make in (
        ("SECRET_KEY", SECRET_FILE, lambda: secrets.token_urlsafe(48)),
        ("ENCRYPTION_KEY", ENCRYPTION_FILE, lambda: Fernet.generate_key().decode()),
    ):
        value = app.config.get(name)
        if isinstance(value, str | bytes) and value:
            app.config[f"{name}_SOURCE"] = f"PAYDESK_{name}"
            continue
        path = os.path.join(app.instance_path, filename)
        value, created = _read_or_create(path, make)
        app.config[name] = value
        app.config[f"{name}_SOURCE"] = f"instance/{filename}"
        if created:  # said once, by the process that made it; later starts (every command) use it quietly
            log.warning(
                "PAYDESK_%s is not set: generated a key into %s (keep it; every process must share it, "
                "or set PAYDESK_%s)",
                name,
                path,
                name,
            )


def _read_or_create(path: str, make) -> tuple[str, bool]:
    """The key in ``path``; created (mode 0600, atomically, so racing processes agree) if missing."""
    try:
        return _read(path), False
    except FileNotFoundError:
        pass
    tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(make() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)  # fails if another process created it first: then theirs wins
            return _read(path), True
        except FileExistsError:
            return _read(path), False
    finally:
        os.unlink(tmp)


def _read(path: str) -> str:
    with open(path) as handle:
        value = handle.read().strip()
    if not value:
        raise RuntimeError(f"{path} is empty: delete it to have a new key generated, or set the variable")
    mode = os.stat(path).st_mode & 0o777
    if mode & 0o077:
        log.warning("%s is readable by others (mode %o): chmod 600 it", path, mode)
    return value
