"""Cached reads from one processor's Stripe account, for the length of one operation.

Handlers and imports ask for the same object several times while they resolve
links (charge -> intent -> invoice); each is fetched once. With ``fresh=True``
expanded objects inside payloads are not trusted and are fetched again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..models import PaymentProcessor
from ..stripe_gateway import Gateway, GatewayError

PAGE = 100  # Stripe's largest list page


class StripeReader:
    def __init__(self, processor: PaymentProcessor, gateway: Gateway | None = None, *, fresh: bool = False):
        self.processor = processor
        self._gateway = gateway
        self.fresh = fresh
        self._cache: dict[tuple[str, str], dict] = {}
        self.request_ids: list[str] = []  # of every call made, for the record of an attempt

    def _note(self, result: Any) -> Any:
        rid = getattr(result, "request_id", None)
        if rid:
            self.request_ids.append(rid)
        return result

    @property
    def gateway(self) -> Gateway:
        if self._gateway is None:
            self._gateway = Gateway.for_processor(self.processor)
        return self._gateway

    def get(self, resource: str, obj_id: str, expand: list[str] | None = None) -> dict:
        key = (resource, obj_id)
        if key not in self._cache:
            self._cache[key] = dict(self._note(self.gateway.retrieve(resource, obj_id, expand=expand)))
        return self._cache[key]

    def remember(self, resource: str, obj: dict) -> dict:
        """Keep an object this operation already has (e.g. from a list page), so asking for it by
        id does not fetch it again."""
        self._cache[(resource, obj["id"])] = obj
        return obj

    def list_page(self, resource: str, **params: Any) -> tuple[list[dict], bool]:
        """One page of a list endpoint and whether Stripe has more: (data, has_more)."""
        params.setdefault("limit", PAGE)
        res = self._note(self.gateway.list(resource, **params))
        return list(res.get("data") or []), bool(res.get("has_more"))

    def pages(self, resource: str, *, starting_after: str | None = None, limit: int | None = None,
              **params: Any) -> Iterator[list[dict]]:
        """Stripe's whole list of ``resource`` (newest first) from after ``starting_after``, a page of up
        to 100 at a time, at most ``limit`` objects in all: the one pager for every Stripe list.

        Each object is remembered (asking for it by id later fetches nothing) and each page's request
        id is collected. A caller that has seen enough stops iterating: no further page is asked for.
        Parameters Stripe filters by (``created``, ``subscription``, ``type``, ...) pass through."""
        left = limit
        while left is None or left > 0:
            data, more = self.list_page(resource, limit=min(PAGE, left or PAGE), starting_after=starting_after,
                                        **params)
            data = [o for o in data if isinstance(o, dict) and o.get("id")]
            if left is not None:
                data = data[:left]
                left -= len(data)
            for obj in data:
                self.remember(resource, obj)
            if data:
                yield data
            if not more or not data:
                return
            starting_after = data[-1]["id"]

    def list(self, resource: str, **params: Any) -> list[dict]:
        """One page (up to 100) of a list endpoint."""
        params.setdefault("limit", 100)
        res = self._note(self.gateway.list(resource, **params))
        return list(res.get("data") or [])

    def list_optional(self, resource: str, **params: Any) -> list[dict] | None:
        """Like ``list``, but None where the endpoint does not exist on this server or API version."""
        try:
            return self.list(resource, **params)
        except GatewayError as err:
            if err.not_found or err.http_status in (400, 501) or (err.http_status == 500 and "implemented" in
                                                                 err.message.lower()):
                return None
            raise

    def expanded(self, resource: str, ref: Any, required: tuple[str, ...] = ()) -> dict | None:
        """The object behind an expandable field: the expanded copy when it can be trusted, else fetched."""
        if ref is None:
            return None
        if isinstance(ref, dict) and not self.fresh and all(k in ref for k in required):
            return ref
        obj_id = ref.get("id") if isinstance(ref, dict) else ref
        return self.get(resource, obj_id) if obj_id else None
