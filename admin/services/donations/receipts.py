"""Receipt emails for completed contributions.

With ``SMTP_URL`` (smtp://user:pass@host:port, smtps://... for TLS) they are
sent; without it they are written to ``OUTBOX_DIR`` as ``.eml`` files, which
is what the demo and the tests read.
"""

from __future__ import annotations

import hashlib
import os
import smtplib
from collections.abc import Callable
from email.generator import Generator
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.policy import EmailPolicy
from typing import Any
from urllib.parse import unquote, urlparse

from flask import current_app
from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import joinedload

from admin.dbutil import immediate
from admin.extensions import db
from admin.models import Contribution, OutboxTask
from admin.money import format_money
from admin.services.core.outbox import begin_side_effect, runner
from admin.services.donations.give import frequency_of, receipts_wanted, reference
from admin.timeutil import utcnow


class _RememberingRegistry(HeaderRegistry):
    """The stdlib's header registry, remembering the class it made for each header name: it makes a new class
    at every ask (each header set asks for its limit), ~30 us each. The classes hold no state of their own."""

    def __getitem__(self, name):
        return _remembered(
            _CLASSES, (name.lower(),), lambda: super(_RememberingRegistry, self).__getitem__(name)
        )


class _RememberingPolicy(EmailPolicy):
    """``email.policy.default``, remembering the headers it parsed and folded before: most of a receipt's
    headers (From, Subject, MIME-Version, the parts' Content-Type and -Transfer-Encoding) are the same for every
    receipt, and parsing them is most of the cost of building one. Header objects are immutable, and a folded
    header depends only on its name, value and the policy's folding settings, which are in the key."""

    def header_store_parse(self, name, value):
        if not isinstance(value, str) or hasattr(value, "name"):
            return super().header_store_parse(name, value)
        return _remembered(
            _PARSED, (name, value), lambda: super(_RememberingPolicy, self).header_store_parse(name, value)
        )

    def fold_binary(self, name, value):
        key = (
            name,
            str(value),
            hasattr(value, "name"),
            self.linesep,
            self.max_line_length,
            self.utf8,
            self.cte_type,
        )
        return _remembered(_FOLDED, key, lambda: super(_RememberingPolicy, self).fold_binary(name, value))


_REMEMBERED = 256
_PARSED: dict = {}
_FOLDED: dict = {}
_CLASSES: dict = {}


def _remembered(table: dict, key: tuple, make: Callable[[], Any]) -> Any:
    """``table[key]``, made by ``make`` the first time; the table is emptied when it holds ``_REMEMBERED``."""
    found = table.get(key)
    if found is None:
        found = make()
        if len(table) >= _REMEMBERED:
            table.clear()
        table[key] = found
    return found


RECEIPT_POLICY = _RememberingPolicy(header_factory=_RememberingRegistry())


_TEMPLATES = ("receipts/receipt.txt", "receipts/receipt.html")


def build_receipt(contribution: Contribution) -> EmailMessage | None:
    """The receipt: HTML with a plain-text alternative (organisation, amount, date, frequency, reference).

    None when there is nobody to send it to, or the gift came through a donation form whose
    receipts are switched off.
    """
    contact = contribution.contact
    if contact is None or not contact.email or not receipts_wanted(contribution):
        return None
    site = current_app.config["SITE_NAME"]
    msg = EmailMessage(policy=RECEIPT_POLICY)
    msg["From"] = current_app.config["RECEIPT_FROM"]
    msg["To"] = contact.email
    msg["Subject"] = f"Thank you for your contribution to {site}"
    details = {
        "site": site,
        "name": contact.display_name or "supporter",
        "amount": format_money(contribution.amount, contribution.currency),
        "date": (contribution.receive_date or utcnow()).strftime("%d %B %Y"),
        "frequency": frequency_of(contribution),
        "reference": reference(contribution),
        "transaction": contribution.trxn_id or "",
    }
    # the templates read these details alone: no request context, context processors or signals needed
    text, html = (current_app.jinja_env.get_template(name).render(details) for name in _TEMPLATES)
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    # The boundary the generator would draw when writing the message (one random token, used unless it is a line
    # of a body), drawn now: the generator checks its pick with a regular expression compiled for that one message.
    # A body can hold it only as written (quoted-printable and base64 never write "=="), so a plain search of the
    # texts (stricter: anywhere, not only as a line) is enough; when one holds it, the generator draws as it did.
    boundary = Generator._make_boundary()  # type: ignore[attr-defined]
    if not any(f"--{boundary}" in body for body in (text, html)):
        msg.replace_header("Content-Type", f'multipart/alternative; boundary="{boundary}"')
    return msg


def message_id(contribution: Contribution) -> str:
    """The receipt's Message-ID: the same each time this contribution's receipt is sent, so a mail system
    can drop a repeat; different for every contribution, processor and paydesk site (BASE_URL, SITE_NAME)."""
    cfg = current_app.config
    host = urlparse(cfg["BASE_URL"]).hostname or "paydesk.invalid"
    seed = f"{cfg['SITE_NAME']}|{cfg['BASE_URL'].rstrip('/')}|{contribution.processor_id}|{contribution.id}"
    return f"<receipt.{contribution.id}.{hashlib.blake2b(seed.encode(), digest_size=8).hexdigest()}@{host}>"


_CONTRIBUTIONS = Contribution.__table__
# A receipt went out: its contribution says when (built once; nothing reads the row back in that transaction).
_SENT = (
    update(_CONTRIBUTIONS)
    .where(_CONTRIBUTIONS.c.id == bindparam("contribution_id"))
    .values(receipt_sent_at=bindparam("now"))
)


_RECEIPT_READ = (
    select(Contribution)
    .options(joinedload(Contribution.contact), joinedload(Contribution.recur))  # what a receipt reads
    .where(Contribution.id == bindparam("contribution_id"))
)


@runner("receipt")
def send_receipt(task: OutboxTask):
    """Send the receipt once; returns how to record it (the outbox commits that with the task's success,
    retrying while the database is away, so a receipt sent is never sent again because of an outage)."""
    immediate()  # read in the transaction that begin_side_effect commits: one transaction, not a read and a write
    contribution = db.session.execute(
        _RECEIPT_READ, {"contribution_id": task.payload["contribution_id"]}
    ).scalar()
    if contribution is None or contribution.receipt_sent_at:
        return None
    msg = build_receipt(contribution)
    if msg is None:
        return None  # nobody to send it to; nothing to retry
    msg["Message-ID"] = message_id(contribution)
    contribution_id = contribution.id
    begin_side_effect(task)  # from here on, this task is neither retried nor handed back blindly
    deliver(msg, f"receipt-{contribution_id}")

    def record() -> None:
        db.session.connection().execute(_SENT, {"contribution_id": contribution_id, "now": utcnow()})

    return record


def deliver(msg: EmailMessage, name: str) -> None:
    url = current_app.config.get("SMTP_URL")
    if not url:
        folder = current_app.config["OUTBOX_DIR"]
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{name}.eml")
        with open(path + ".tmp", "wb") as fh:
            fh.write(bytes(msg))
        os.replace(path + ".tmp", path)
        return
    u = urlparse(url)
    cls = smtplib.SMTP_SSL if u.scheme == "smtps" else smtplib.SMTP
    with cls(u.hostname or "localhost", u.port or (465 if u.scheme == "smtps" else 25), timeout=30) as smtp:
        if u.scheme == "smtp+starttls":
            smtp.starttls()
        if u.username:
            smtp.login(unquote(u.username), unquote(u.password or ""))
        smtp.send_message(msg)
