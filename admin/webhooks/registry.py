"""One handler per Stripe event type.

A handler is ``fn(ctx: EventContext) -> None``. It reads the event through
``ctx``, writes business records through services, and may call
``ctx.ignore(reason)`` or ``ctx.note(text)`` to say what it did. It must be
idempotent and commutative with the other handlers for the same objects: the
worker may run it twice (a retry after a crash) and events arrive in any order.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from admin.webhooks.context import EventContext

Handler = Callable[["EventContext"], None]

_HANDLERS: dict[str, Handler] = {}


def handles(*types: str) -> Callable[[Handler], Handler]:
    """Mark a function as the handler of these event types (``register`` makes it known: at app creation,
    ``admin.worker.registries``)."""

    def mark(fn: Handler) -> Handler:
        fn.event_types = types  # type: ignore[attr-defined]
        return fn

    return mark


def register(*fns: Handler) -> None:
    for fn in fns:
        for t in fn.event_types:  # type: ignore[attr-defined]
            if t in _HANDLERS and _HANDLERS[t] is not fn:
                raise RuntimeError(f"two handlers for {t}: {_HANDLERS[t].__name__} and {fn.__name__}")
            _HANDLERS[t] = fn


def handlers_in(*modules) -> list[Handler]:
    """The ``@handles`` functions defined in these modules."""
    return [
        fn
        for m in modules
        for fn in vars(m).values()
        if inspect.isfunction(fn) and hasattr(fn, "event_types")
    ]


def handler_for(event_type: str) -> Handler | None:
    return _HANDLERS.get(event_type)


def handled_types() -> list[str]:
    return sorted(_HANDLERS)
