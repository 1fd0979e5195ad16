"""The one pager over Stripe's lists (``StripeReader.pages``): every page in turn, at most ``limit``
objects, no page more than needed, each object remembered and each request id kept."""

from __future__ import annotations

import stripe_objects as so

from admin.services.core.stripe_reader import StripeReader


def test_pages_go_through_the_whole_list_and_remember_what_they_carry(world, offline_processor):
    customers = [so.customer() for _ in range(250)]
    world.add(*customers)
    reader = StripeReader(offline_processor)
    pages = list(reader.pages("customers"))
    assert [len(p) for p in pages] == [100, 100, 50]
    assert {c["id"] for p in pages for c in p} == {c["id"] for c in customers}
    assert len(reader.request_ids) == 3 and all(r.startswith("req_") for r in reader.request_ids)
    assert reader.get("customers", customers[7]["id"])["email"] == "donor@example.org"
    assert world.count("GET", r"^/v1/customers") == 3  # the customer came from the list, not fetched again


def test_pages_stop_at_the_limit_and_when_the_caller_stops(world, offline_processor):
    world.add(*(so.customer() for _ in range(250)))
    assert [len(p) for p in StripeReader(offline_processor).pages("customers", limit=120)] == [100, 20]
    assert world.count("GET", r"^/v1/customers$") == 2
    first = next(StripeReader(offline_processor).pages("customers"))
    after = list(StripeReader(offline_processor).pages("customers", starting_after=first[-1]["id"]))
    assert [len(p) for p in after] == [100, 50] and after[0][0]["id"] != first[-1]["id"]
    assert world.count("GET", r"^/v1/customers$") == 2 + 1 + 2
