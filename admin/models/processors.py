"""Payment processors: the Stripe accounts paydesk talks to."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    DateTime,
    String,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column

from admin import crypto
from admin.extensions import Model
from admin.models.base import created_column
from admin.timeutil import utcnow


class PaymentProcessor(Model):
    """A Stripe account paydesk talks to (the CiviCRM "ppid")."""

    __tablename__ = "payment_processor"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    mode: Mapped[str] = mapped_column(String(4), default="test")  # test | live
    secret_key_enc: Mapped[str] = mapped_column(Text)
    # Publishable keys are public by design (they are sent to every donor's browser).
    publishable_key: Mapped[str | None] = mapped_column(String(255))
    webhook_secrets_enc: Mapped[str | None] = mapped_column(Text)
    api_base: Mapped[str | None] = mapped_column(String(255))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = created_column()
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)

    @property
    def livemode(self) -> bool:
        return self.mode == "live"

    @property
    def secret_key(self) -> str:
        return crypto.decrypt(self.secret_key_enc)

    @secret_key.setter
    def secret_key(self, value: str) -> None:
        self.secret_key_enc = crypto.encrypt(value)

    @property
    def webhook_secrets(self) -> list[str]:
        return crypto.decrypt_list(self.webhook_secrets_enc)

    @webhook_secrets.setter
    def webhook_secrets(self, values: list[str]) -> None:
        self.webhook_secrets_enc = crypto.encrypt_list([v for v in values if v])

    def public_dict(self) -> dict[str, Any]:
        """What listings show: secrets masked, never in clear."""
        return {
            "id": self.id,
            "name": self.name,
            "mode": self.mode,
            "secret_key": crypto.mask(self.secret_key),
            "publishable_key": self.publishable_key,
            "webhook_secrets": [crypto.mask(s) for s in self.webhook_secrets],
            "api_base": self.api_base,
            "default": self.is_default,
            "active": self.active,
        }
