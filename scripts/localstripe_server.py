"""Start localstripe bound to loopback with no persistence (its own CLI binds all
interfaces and pickles state to a shared file under /tmp).

    python scripts/localstripe_server.py [--port 8420]

One gap is filled here: localstripe refuses ``description``,
``statement_descriptor_suffix`` and ``receipt_email`` on PaymentIntents ("Unexpected
..."), which Stripe accepts and which paydesk's donation form sends. They are
accepted, checked the way Stripe checks them (suffix at most 22 characters, none of
``<>\\'"*``) and kept on the intent, so tests can see what paydesk sent.
"""

import argparse
import logging

from aiohttp import web
from localstripe.errors import UserError
from localstripe.resources import PaymentIntent
from localstripe.server import app

_FORBIDDEN = set("<>\\'\"*")


def _accept_intent_descriptions() -> None:
    original = PaymentIntent.__init__
    if getattr(original, "paydesk_patched", False):
        return

    def __init__(self, description=None, statement_descriptor_suffix=None, receipt_email=None, **kwargs):
        if description is not None and (not isinstance(description, str) or len(description) > 1000):
            raise UserError(400, "Invalid description")
        suffix = statement_descriptor_suffix
        if suffix is not None and (not isinstance(suffix, str) or not 1 <= len(suffix) <= 22
                                   or set(suffix) & _FORBIDDEN):
            raise UserError(400, "Invalid statement_descriptor_suffix")
        original(self, **kwargs)
        self.description = description
        self.statement_descriptor_suffix = suffix
        self.receipt_email = receipt_email

    __init__.paydesk_patched = True
    PaymentIntent.__init__ = __init__


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    _accept_intent_descriptions()
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
