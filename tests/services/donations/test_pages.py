"""admin.services.donations.pages: what the public donation pages answer, in the order the checks run."""

from __future__ import annotations

from donate_support import make_form

from admin.services.donations import guard, pages


def test_requests_without_a_valid_token_never_spend_what_donors_share(app, offline_processor):
    app.config["DONATE_RATE_LIMIT_FORM"] = "1 per minute"
    form = make_form(offline_processor)
    with app.test_request_context("/donate/spring/pay", method="POST"):
        for data in ({"token": "forged"}, {}, {"token": 7}):
            answer = pages.pay(form, data, "198.51.100.7")
            assert (answer.status, answer.body) == (400, {"status": "refused", "error": pages.EXPIRED})
        first = pages.pay(form, {"token": guard.issue_token(form)}, "198.51.100.7")  # the first with a token
        assert first.status == 422 and first.body["error"] == pages.FIX_FIELDS and first.body["token"]
        second = pages.pay(form, {"token": guard.issue_token(form)}, "198.51.100.8")
        assert second.status == 429 and second.body["error"] == pages.BUSY.format(wait="1 minute")
        assert second.retry_after and second.retry_after <= 60


def test_a_body_that_is_not_an_object_is_refused_without_a_token(app, offline_processor):
    form = make_form(offline_processor)
    with app.test_request_context("/donate/spring/pay", method="POST"):
        for data in (None, ["token"], "token", 12):
            assert pages.pay(form, data, "198.51.100.7").body == {"status": "invalid", "error": pages.REFUSED}


def test_the_page_fills_in_a_donor_links_contact_and_says_why_a_link_cannot_be_used(app, offline_processor):
    form = make_form(offline_processor)
    with app.test_request_context("/donate/spring"):
        shown = pages.page(form, "not-a-link")
        assert shown.status == 200 and shown.context["notice"].endswith("You can still give below.")
        assert shown.context["values"] == {} and shown.context["donor_token"] == ""
        assert shown.context["known_postcode"] == "" and shown.context["token"]
