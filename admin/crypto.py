"""Encryption at rest for Stripe secret keys and webhook signing secrets."""

import base64
import hashlib
import json

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app


class SecretDecryptError(RuntimeError):
    """Stored secret cannot be decrypted with the configured key."""


def _fernet() -> Fernet:
    key = current_app.config.get("ENCRYPTION_KEY")
    if key:
        try:
            return Fernet(key)
        except ValueError:
            pass  # not a Fernet key: derive one from it below
    material = (key or current_app.config["SECRET_KEY"]).encode()
    derived = hashlib.sha256(b"paydesk-secrets:" + material).digest()
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretDecryptError("stored secret cannot be decrypted: wrong PAYDESK_ENCRYPTION_KEY?") from exc


def encrypt_list(values: list[str]) -> str:
    return encrypt(json.dumps(values))


def decrypt_list(token: str | None) -> list[str]:
    return json.loads(decrypt(token)) if token else []


def mask(value: str | None) -> str:
    """``sk_test_…4242``: enough to recognise a key, never enough to use it."""
    if not value:
        return ""
    prefix = value[: value.find("_", 3) + 1] if value.count("_") >= 2 else value[:3]
    return f"{prefix}…{value[-4:]}"
