"""Encryption at rest for Stripe secret keys and webhook signing secrets.

The key is ``ENCRYPTION_KEY`` (``PAYDESK_ENCRYPTION_KEY``, else generated into the instance folder, see
``admin.keys``): a Fernet key, or any other string from which one is derived. Never the secret key.
"""

import base64
import hashlib
import json

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app

from admin.errors import ServiceError


class SecretDecryptError(ServiceError):
    """Stored secrets cannot be decrypted with the configured key. The message names the variable."""


def _fernet() -> Fernet:
    key = current_app.config.get("ENCRYPTION_KEY")
    if not key:
        raise SecretDecryptError("no encryption key configured: set PAYDESK_ENCRYPTION_KEY")
    cache = current_app.extensions.setdefault("paydesk_fernet", {})
    fernet = cache.get(key)
    if fernet is None:
        try:
            fernet = Fernet(key)
        except ValueError:  # not a Fernet key: derive one from it
            derived = hashlib.sha256(
                b"paydesk-secrets:" + (key.encode() if isinstance(key, str) else key)
            ).digest()
            fernet = Fernet(base64.urlsafe_b64encode(derived))
        cache.clear()
        cache[key] = fernet
    return fernet


def decrypt_error() -> SecretDecryptError:
    source = current_app.config.get("ENCRYPTION_KEY_SOURCE") or "PAYDESK_ENCRYPTION_KEY"
    where = (
        ""
        if source == "PAYDESK_ENCRYPTION_KEY"
        else f" (PAYDESK_ENCRYPTION_KEY is not set; the key is {source})"
    )
    return SecretDecryptError(
        f"the stored Stripe secrets cannot be decrypted with this encryption key{where}: set "
        "PAYDESK_ENCRYPTION_KEY to the key they were stored with, or enter them again with `processor set`"
    )


def encrypt(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet().decrypt(token.encode()).decode()
    except (InvalidToken, UnicodeError) as exc:
        raise decrypt_error() from exc


def encrypt_list(values: list[str]) -> str:
    return encrypt(json.dumps(values))


def decrypt_list(token: str | None) -> list[str]:
    if not token:
        return []
    try:
        values = json.loads(decrypt(token))
    except ValueError as exc:
        raise decrypt_error() from exc
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise decrypt_error()
    return values


# Prefixes Stripe puts on keys and secrets: shown as they are, because they say what a value is.
KNOWN_PREFIXES = (
    "sk_test_",
    "sk_live_",
    "rk_test_",
    "rk_live_",
    "pk_test_",
    "pk_live_",
    "whsec_",
    "pdwhsec_",
)
# Below this many characters after the prefix, not even the last four are shown.
_MIN_FOR_SUFFIX = 16


def mask(value: str | None) -> str:
    """``sk_test_…4242``: at most the known prefix and the last four characters, whatever the length.

    Short or unusual values show less (``sk_test_…``, ``…``): never enough to use, never the whole value.
    """
    if not value:
        return ""
    prefix = next((p for p in KNOWN_PREFIXES if value.startswith(p)), "")
    rest = value[len(prefix) :]
    return f"{prefix}…{rest[-4:] if len(rest) >= _MIN_FOR_SUFFIX else ''}"
