"""The one idempotency key of a staff action (services/core/idempotency.py): stable for one action, fresh for
a new one, never taken from a value that is not a plain key."""

from __future__ import annotations

import re

from admin.services.core.idempotency import action_key, idempotency_key, new_action_key


def test_the_same_action_gives_the_same_key():
    assert idempotency_key("refund", "ch_1", "form1", 1250) == "paydesk-refund-ch_1-form1-1250"
    assert idempotency_key("refund", "ch_1", "form1", 1250) == idempotency_key(
        "refund", "ch_1", "form1", 1250
    )


def test_no_object_leaves_its_part_out():
    assert idempotency_key("account-create", None, "a1") == "paydesk-account-create-a1"


def test_a_missing_or_odd_action_key_gets_a_fresh_one():
    for given in (None, "", "has space", "x" * 101, "semi;colon"):
        key = idempotency_key("cancel", "pi_1", given)
        assert re.fullmatch(r"paydesk-cancel-pi_1-[0-9a-f]{32}", key), key
    assert idempotency_key("cancel", "pi_1", None) != idempotency_key("cancel", "pi_1", None)
    assert action_key("job12") == "job12" and action_key("cli:x.y-z_1") == "cli:x.y-z_1"
    assert new_action_key() != new_action_key()


def test_the_key_is_at_most_255_characters():
    assert len(idempotency_key("capture", "pi_" + "a" * 300, "k")) == 255


def test_long_keys_that_differ_only_past_255_characters_stay_different():
    long_id = "pi_" + "a" * 300
    first, second = (
        idempotency_key("capture", long_id, "k1", 100),
        idempotency_key("capture", long_id, "k2", 100),
    )
    assert first != second
    assert idempotency_key("capture", long_id, "k1", 100) != idempotency_key("capture", long_id, "k1", 200)
    assert len(first) == len(second) == 255
    assert first.startswith("paydesk-capture-pi_aaa") and re.fullmatch(r".*-[0-9a-f]{64}", first)
    assert first == idempotency_key("capture", long_id, "k1", 100)


def test_a_key_at_exactly_255_characters_is_kept_as_it_is():
    key = idempotency_key("cancel", "x" * (255 - len("paydesk-cancel--k")), "k")
    assert len(key) == 255 and key.endswith("-k")
