"""The list-page pattern: filters read from the query string, keyset pages that never skip or repeat a row."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

import pytest
from werkzeug.datastructures import MultiDict

from admin.errors import ServiceError
from admin.extensions import db
from admin.listing import Amount, Filter, keyset_page
from admin.models import StripeEvent
from admin.services.events.queries import ORDER, EventFilter, local_query


@dataclass
class SampleFilter(Filter):
    status: list[str] = field(default_factory=list, metadata={"choices": ("a", "b")})
    ppid: int | None = None
    since: datetime | None = None
    until: datetime | None = field(default=None, metadata={"end": True})
    q: str | None = None
    flag: bool = False
    min_amount: Amount | None = None


def test_filter_reads_repeated_and_comma_separated_values_and_round_trips():
    flt, errors = SampleFilter.from_args(
        MultiDict(
            [
                ("status", "a"),
                ("status", "b"),
                ("ppid", "3"),
                ("since", "2026-11-01"),
                ("until", "2026-11-03"),
                ("flag", "1"),
                ("q", " ch_1 "),
                ("min_amount", "12.50"),
            ]
        )
    )
    assert errors == {}
    assert flt.status == ["a", "b"] and flt.ppid == 3 and flt.flag and flt.q == "ch_1"
    assert flt.since == datetime(2026, 11, 1) and flt.until == datetime(2026, 11, 4)  # the whole of the 3rd
    assert flt.min_amount.minor("usd") == 1250
    args = flt.to_args()
    assert args["until"] == "2026-11-03" and args["status"] == ["a", "b"] and args["flag"] == "1"
    again, _ = SampleFilter.from_args(
        MultiDict([(k, v) for k, vs in args.items() for v in (vs if isinstance(vs, list) else [vs])])
    )
    assert again == flt
    assert SampleFilter.from_args({"status": "a,b"})[0].status == ["a", "b"]


@pytest.mark.parametrize(
    "args, field_name",
    [
        ({"status": "c"}, "status"),
        ({"ppid": "x"}, "ppid"),
        ({"ppid": "99999999999999999999"}, "ppid"),
        ({"since": "yesterday"}, "since"),
        ({"min_amount": "12.345"}, "min_amount"),
        ({"q": "x" * 10_001}, "q"),
    ],
)
def test_a_filter_that_cannot_be_read_is_named_and_the_rest_still_applies(args, field_name):
    flt, errors = SampleFilter.from_args({**args, "flag": "1"})
    assert list(errors) == [field_name] and errors[field_name]
    assert flt.flag is True


def test_parse_or_raise_refuses_a_filter_with_any_bad_field_naming_each():
    assert SampleFilter.parse_or_raise({"status": "a", "ppid": "3"}).ppid == 3
    with pytest.raises(ServiceError) as err:
        SampleFilter.parse_or_raise({"status": "c", "min_amount": "12.345", "flag": "1"})
    # named as the page labels them (the web), or as the CLI's options
    assert (
        err.value.message.startswith("Status: 'c' is not one of a, b; Amount from: ")
        and err.value.field == "status"
    )
    with pytest.raises(ServiceError, match=r"^--min-amount: "):
        SampleFilter.parse_or_raise({"min_amount": "lots"}, options=True)  # as the CLI names its options


def test_page_size_is_one_of_the_offered_sizes():
    assert SampleFilter.from_args({"size": "100"})[0].size == 100
    assert SampleFilter.from_args({"size": "100000"})[0].size == 25


def test_changing_a_filter_starts_again_at_the_first_page():
    flt = SampleFilter(after="abc", ppid=1)
    assert "after" not in flt.to_args(ppid=2)
    assert flt.to_args(size=100)["after"] == "abc"


def _events(processor, n: int, created_same: bool = False) -> list[int]:
    ids = []
    for i in range(n):
        row = StripeEvent(
            processor_id=processor.id,
            event_id=f"evt_page{i:03d}",
            type="invoice.paid",
            created=1_700_000_000 + (0 if created_same else i),
            raw="{}",
            status="success",
        )
        db.session.add(row)
        db.session.flush()
        ids.append(row.id)
    db.session.commit()
    return ids


@pytest.mark.postgres
@pytest.mark.parametrize("created_same", [False, True])
def test_keyset_pages_walk_every_row_once_both_ways(offline_processor, backend, created_same):
    ids = _events(offline_processor, 60, created_same)
    flt = EventFilter(size=25)
    seen, pages = [], []
    while True:
        page = keyset_page(local_query(flt), ORDER, flt)
        pages.append(page)
        seen += [e.id for e in page.rows]
        if not page.next_after:
            break
        flt = EventFilter(size=25, after=page.next_after)
    assert seen == sorted(ids, reverse=True)  # newest first, nothing skipped or repeated
    assert [len(p.rows) for p in pages] == [25, 25, 10]
    assert pages[0].first and not pages[1].first
    # back from the last page: the newer rows, in the same order as going forward
    back = keyset_page(local_query(flt), ORDER, EventFilter(size=25, before=pages[2].prev_before))
    assert [e.id for e in back.rows] == [e.id for e in pages[1].rows]
    assert back.next_after and back.prev_before


def test_a_damaged_page_link_is_a_filter_error(offline_processor):
    from admin.listing import FilterError

    with pytest.raises(FilterError):
        keyset_page(local_query(EventFilter()), ORDER, EventFilter(after="not-a-cursor!!"))


# -- crafted cursors: a message and the first page, never a 500 -------------------------------------

LIST_PAGES = [
    "/events",
    "/audit",
    "/jobs",
    "/jobs/outbox",
    "/intents",
    "/subscriptions",
    "/customers",
    "/contributions",
    "/payments",
]
CRAFTED_KEYS = [
    (1e30, 1e30),
    (None, None),
    ([1], [2]),
    ({"dt": "2026-01-01"}, {"dt": 5}),
    (True, False),
    (2**80, 2**80),
    ("2026-01-01", 1),
    ({"dt": "2026-01-01T00:00"}, "x"),
    ({"dt": "2026-01-01T00:00+05:00"}, 1),
    (-(2**70), {"dt": "2026-01-01"}),
]
# Each as a two-column key (time, id) and as a one-column key (id): pages key on either.
CRAFTED_CURSORS = (
    [json.dumps(list(k)) for k in CRAFTED_KEYS]
    + [json.dumps([k[0]]) for k in CRAFTED_KEYS]
    + ['{"a":1,"b":2}', '{"a":1}', "[]", '"x"', "7"]
)


@pytest.mark.postgres
@pytest.mark.parametrize("path", LIST_PAGES)
def test_a_crafted_page_link_shows_the_first_page_with_a_message(client, auth, path):
    import base64

    auth.login("viewer@example.org", "viewer")
    for crafted in CRAFTED_CURSORS:
        cursor = base64.urlsafe_b64encode(crafted.encode()).decode().rstrip("=")
        for param in ("after", "before"):
            resp = client.get(f"{path}?{param}={cursor}")
            assert resp.status_code == 200, (path, crafted, param)
            assert "this page link is damaged; start again from the first page" in resp.get_data(
                as_text=True
            ), (path, crafted, param)
