"""Ids typed by people (in a URL, a query string, a form field) that are no id: a 404 or a message that says
so, never a 500, on SQLite and on PostgreSQL (whose int4 ids make 3000000000 "out of range")."""

from __future__ import annotations

import re

import pytest

# Not ids: a superscript two ("²".isdigit() is true in Python), Arabic-Indic digits, zero, negative, past
# PostgreSQL's int4, past a 64-bit integer, not whole.
BAD_IDS = ["\u00b2", "\u0663", "0", "-1", "3000000000", "99999999999999999999", "1.5"]

pytestmark = pytest.mark.postgres


def _id_rules(app):
    """Every route that takes a numeric id in its path, with the methods it answers."""
    for rule in app.url_map.iter_rules():
        if any(
            type(conv).__name__ in ("IdConverter", "IntegerConverter") for conv in rule._converters.values()
        ):
            yield rule, sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})


def _url(rule, bad: str) -> str:
    def fill(m):
        return bad if m.group(1) in ("int", "id") else "x"

    return re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>", fill, rule.rule)


def test_no_id_in_a_path_is_a_500(app, client, auth):
    auth.login()
    token = auth.token()
    seen = set()
    for rule, methods in _id_rules(app):
        for method in methods:
            for bad in BAD_IDS:
                resp = client.open(
                    _url(rule, bad), method=method, data={"csrf_token": token}, headers={"X-CSRFToken": token}
                )
                assert resp.status_code == 404, f"{method} {_url(rule, bad)}: {resp.status_code}"
            seen.add(rule.rule.split("<")[0])
    assert {"/contributions/", "/contacts/", "/jobs/", "/jobs/outbox/", "/events/", "/forms/"} <= seen


def test_ids_in_links_still_work(app, client, auth):
    from admin.extensions import db
    from admin.services.records.contacts import new_contact

    auth.login()
    contact = new_contact("Ada Lovelace", "ada@example.org", None, "test")
    db.session.commit()
    assert client.get(f"/contacts/{contact.id}").status_code == 200
    assert client.get(f"/contacts/{contact.id + 1}").status_code == 404


def test_no_id_in_the_intents_filter_is_a_500(client, auth):
    auth.login()
    for bad in BAD_IDS:
        contact = client.get("/intents", query_string={"contact": bad})
        assert contact.status_code == 200, (bad, contact.status_code)
        contribution = client.get("/intents", query_string={"contribution": bad})
        assert contribution.status_code == 200, (bad, contribution.status_code)
        assert "give a contribution id" in contribution.get_data(as_text=True), (
            bad
        )  # not an id, "none" or "any"


def test_import_charge_for_a_contact_id_that_is_none(client, auth, offline_processor):
    auth.login()
    for bad in BAD_IDS:
        resp = client.post(
            "/contributions/import-charge",
            data={"charge": "ch_1", "contact_id": bad},
            headers={"HX-Request": "true", "X-CSRFToken": auth.token()},
        )
        assert resp.status_code == 422, (bad, resp.status_code)
        assert "the contact id is a number" in resp.get_data(as_text=True), bad


@pytest.mark.parametrize(
    "path, data, field",
    [
        ("/customers/import", {}, "limit"),
        ("/subscriptions/import", {}, "limit"),
        ("/events/tools/populate-log", {}, "limit"),
        ("/events/tools/retry-all", {}, "limit"),
        ("/events/tools/retry-all", {"limit": "5"}, "days"),
    ],
)
def test_no_number_in_a_tool_form_is_a_500(client, auth, offline_processor, path, data, field):
    auth.login()
    for bad in ("\u00b2", "\u0663", "-1", "99999999999999999999", "1.5", "1e3"):
        resp = client.post(
            path, data={**data, field: bad}, headers={"HX-Request": "true", "X-CSRFToken": auth.token()}
        )
        assert resp.status_code == 422, (bad, resp.status_code)
        assert "a whole number from" in resp.get_data(as_text=True), bad
