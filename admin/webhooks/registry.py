"""One handler per Stripe event type.

A handler is ``fn(ctx: EventContext) -> None``. It reads the event through
``ctx``, writes business records through services, and may call
``ctx.ignore(reason)`` or ``ctx.note(text)`` to say what it did. It must be
idempotent and commutative with the other handlers for the same objects: the
worker may run it twice (a retry after a crash) and events arrive in any order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from admin.webhooks.context import EventContext

Handler = Callable[["EventContext"], None]

_HANDLERS: dict[str, Handler] = {}


def handles(*types: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for t in types:
            if t in _HANDLERS and _HANDLERS[t] is not fn:
                raise RuntimeError(f"two handlers for {t}: {_HANDLERS[t].__name__} and {fn.__name__}")
            _HANDLERS[t] = fn
        return fn

    return register


def handler_for(event_type: str) -> Handler | None:
    _load()
    return _HANDLERS.get(event_type)


def _load() -> None:
    from admin.webhooks import handlers  # noqa: F401  (importing registers them)
