"""Typed job parameters (services/core/params.py): one class per job kind, read the same from a page's form,
a CLI command's options and a stored job; defaults and bounds defined once."""

from __future__ import annotations

import re

import pytest

from admin.errors import ServiceError
from admin.services.core import jobs as jobs_service
from admin.services.events.jobs import Populate, RetryAll
from admin.services.records.jobs import ImportSome


def test_defaults_and_bounds_apply_to_dicts_and_forms(app):
    assert RetryAll.of({}).as_dict() == {"limit": 25, "days": 30}
    assert RetryAll.from_form({"limit": " 10 ", "days": ""}).as_dict() == {"limit": 10, "days": 30}
    with pytest.raises(ServiceError, match=r"^At most: a whole number from 1 to 10,000, please$"):
        RetryAll.of({"limit": 0})
    with pytest.raises(ServiceError, match=r"^--days: a whole number from 1 to 365, please$"):
        RetryAll.of({"days": "366"}, options=True)
    with pytest.raises(ServiceError, match="unknown parameter 'dayz'"):
        RetryAll.of({"dayz": 3})
    assert Populate.of({"types": ["all"]}).types == []  # "all" is every type
    assert ImportSome.from_form({"limit": "", "starting_after": ""}).as_dict() == {
        "limit": None,
        "starting_after": None,
    }


def test_every_job_kind_has_a_parameter_class_and_start_reads_through_it(app):
    untyped = [
        k
        for k in jobs_service.kind_names()
        if jobs_service.kind(k).params is None and not k.startswith("test.")
    ]
    assert untyped == ["reconcile.scan"]  # its own ScanParams (reconcile/scan.py): to become a JobParams
    assert jobs_service.prepare("events.retry_all", {"limit": 7}) == {"limit": 7, "days": 30}
    with pytest.raises(ServiceError):
        jobs_service.prepare("events.retry_all", {"limit": 10_001})


def test_retry_all_defaults_are_one_on_the_page_and_in_the_cli(app, client, auth, offline_processor):
    """The page's form and the CLI's options show the class's defaults and bounds."""
    from admin.cli.events import retry_all_cmd

    options = {p.name: p for p in retry_all_cmd.params}
    assert (options["limit"].default, options["days"].default) == (RetryAll.limit, RetryAll.days)
    assert (options["limit"].type.min, options["limit"].type.max) == (1, 10_000)
    auth.login("operator@example.org", "operator")
    html = client.get("/events").get_data(as_text=True)
    form = html[html.index("Retry all</h3>") :]
    assert re.search(r'name="limit"\s+value="25" min="1" max="10000"', form)
    assert re.search(r'name="days"\s+value="30" min="1" max="365"', form)
    assert 'name="types" value="invoice.payment_succeeded"' in html


def test_only_ascii_whole_numbers_are_numbers(app):
    for bad in ("\u00b2", "\u0663", "1.5", "1e3", "99999999999999999999999", " "):
        with pytest.raises(ServiceError, match="a whole number from 1 to 10,000"):
            RetryAll.of({"limit": bad or "x"})
