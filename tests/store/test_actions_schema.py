"""schemas/actions.py: idempotency keys, suppression matching and validation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from schemas.actions import Action, RevocationTarget, Suppression, action_id
from tests.store.helpers import T0, action, alert_doc


def test_action_id_is_deterministic_per_alert_and_target() -> None:
    fam = RevocationTarget(kind="family", id="fam-1", issuer="https://idp.example")
    assert action_id("tw-1", fam) == action_id("tw-1", RevocationTarget(kind="family", id="fam-1",
                                                                           issuer="https://idp.example",
                                                                           user_id="someone"))
    others = {action_id("tw-2", fam), action_id("tw-1", fam.model_copy(update={"kind": "session"})),
              action_id("tw-1", fam.model_copy(update={"id": "fam-2"})),
              action_id("tw-1", fam.model_copy(update={"issuer": None}))}
    assert action_id("tw-1", fam) not in others and len(others) == 4
    assert action_id("tw-1", fam).startswith("act-")


def test_action_round_trips_through_json_and_refuses_unknown_fields() -> None:
    a = action("tw-1", "fam-1")
    assert Action.model_validate_json(a.model_dump_json()) == a
    with pytest.raises(ValidationError):
        Action.model_validate({**a.model_dump(), "token": "secret"})
    with pytest.raises(ValidationError):
        Action.model_validate({**a.model_dump(), "state": "done"})


def _suppression(**criteria: object) -> Suppression:
    return Suppression(reason="r", actor="carol", created=T0, expires=T0 + timedelta(hours=1), **criteria)


@pytest.mark.parametrize(("criteria", "matches"), [
    ({"rule_id": "replay.refresh_reuse"}, True),
    ({"rule_id": "replay.concurrent_use"}, False),
    ({"user_id": "alice", "client_id": "portal"}, True),
    ({"user_id": "alice", "client_id": "cli"}, False),
    ({"ip": "203.0.113.7"}, True),
    ({"ip": "203.0.113.0/24"}, True),
    ({"ip": "2001:db8::/32"}, False),
    ({"asn": 64500}, True),
    ({"asn": 64501}, False),
    ({"rule_id": "replay.refresh_reuse", "asn": 64500, "ip": "203.0.0.0/8"}, True),
])
def test_suppression_matches_when_every_criterion_does(criteria: dict, matches: bool) -> None:
    assert _suppression(**criteria).matches(alert_doc("a1")) is matches


def test_suppression_matching_with_a_time_honours_expiry() -> None:
    s = _suppression(user_id="alice")
    doc = alert_doc("a1")
    assert s.matches(doc, T0) and s.matches(doc, T0 + timedelta(minutes=59))
    assert not s.matches(doc, T0 + timedelta(hours=1))
    assert not s.matches(doc, T0 - timedelta(seconds=1))


def test_alert_without_the_field_does_not_match() -> None:
    doc = alert_doc("a1")
    del doc["source"]
    assert not _suppression(ip="203.0.113.0/24").matches(doc)
    assert not _suppression(asn=64500).matches(doc)


@pytest.mark.parametrize(("criteria", "message"), [
    ({}, "at least one criterion"),
    ({"ip": "not-an-ip"}, "does not appear to be an IPv4 or IPv6"),
    ({"user_id": "alice", "expires": T0}, "expires must be after created"),
])
def test_suppression_validation(criteria: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Suppression(**{"reason": "r", "actor": "carol", "created": T0, "expires": T0 + timedelta(hours=1),
                       **criteria})
