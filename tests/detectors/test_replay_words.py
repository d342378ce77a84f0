"""Replay, deciding and wording apart (issue 15, "Decide, then describe"): refresh reuse, the
IdP's reuse report and the duplicate request are decided into frozen facts (``RefreshReuse``,
``ReportedReuse``, ``DuplicateRequest``); ``refresh_reuse_finding``, ``reported_reuse_finding``
and ``duplicate_request_finding`` word hand-built facts, exactly."""

from __future__ import annotations

from datetime import datetime, timezone

from detectors.replay import (
    DuplicateRequest,
    RefreshReuse,
    ReplayDetector,
    ReportedReuse,
    SeenRequest,
    duplicate_request_finding,
    refresh_reuse_finding,
    reported_reuse_finding,
)
from detectors.state import Observation, StateStore, TokenState
from schemas.alerts import EvidenceItem
from schemas.events import CanonicalEvent
from tests.factories import BERLIN_HOME, SINGAPORE_VPS, T0, Place, event

SCOPES = ("openid", "read")


def _issued(t: float = 0.0, token: str = "rt-1", token_type: str = "refresh") -> CanonicalEvent:
    return event("issued", t, token=token, token_type=token_type, family="fam-1", session="s-1", scopes=SCOPES,
                 grant_type="authorization_code", expires_in=86_400.0)


def _refresh(t: float, new: str, place: Place = BERLIN_HOME, client: str = "portal") -> CanonicalEvent:
    return event("refreshed", t, token=new, token_type="refresh", family="fam-1", parent="rt-1", session="s-1",
                 scopes=SCOPES, expires_in=86_400.0, grant_type="refresh_token", place=place, client=client)


def _use(t: float, request_id: str, place: Place = BERLIN_HOME) -> CanonicalEvent:
    return event("used", t, token="at-1", family="fam-1", session="s-1", scopes=SCOPES, required=("read",),
                 expires_in=3_600.0 - t, place=place, request_id=request_id)


def _state(*events: CanonicalEvent) -> tuple[ReplayDetector, StateStore]:
    """A detector and state that saw ``events`` as the engine sends them (``process``, then
    the lineage state applies the event)."""
    detector, state = ReplayDetector(), StateStore()
    for ev in events:
        detector.process(ev, state)
        state.apply(ev)
    return detector, state


def _token(state: StateStore, token_id: str) -> TokenState:
    token_state = state.tokens.get(token_id)
    assert token_state is not None
    return token_state


# -- refresh reuse --------------------------------------------------------------------
def test_refresh_reuse_finding_words_a_reuse_past_the_grace_period_exactly() -> None:
    rotation, reuse = _refresh(60, "rt-2"), _refresh(360, "rt-2x", place=SINGAPORE_VPS)
    found = RefreshReuse(reuse, "rt-1", Observation(rotation), Observation(reuse), "fam-1", 300.0, 30.0, None)
    finding = refresh_reuse_finding(found)
    assert finding.summary == (
        "Refresh token redeemed again 5 min after it was rotated, from 139.59.1.1 (Singapore, SG, "
        "DigitalOcean, LLC) vs 79.200.1.10 (Berlin, DE, Deutsche Telekom AG) (token rt-1, family fam-1)."
    )
    assert (finding.rule.id, finding.event, finding.key, finding.family_id, finding.token_id) == (
        "replay.refresh_reuse", reuse, "rt-1", "fam-1", "rt-1")
    assert finding.evidence == (Observation(rotation).evidence("rt-1"), Observation(reuse).evidence("rt-1"))
    assert finding.details == {"refresh_token_id": "rt-1", "minted_token_id": "rt-2x", "gap_s": 300.0,
                               "inside_grace": False, "reuse_outcome": "success"}


def test_refresh_reuse_finding_words_each_reason_inside_the_grace_period_exactly() -> None:
    rotation = _refresh(60, "rt-2")
    other_client = _refresh(70, "rt-2x", client="evil-app")
    by_client = refresh_reuse_finding(RefreshReuse(
        other_client, "rt-1", Observation(rotation), Observation(other_client), None, 10.0, 30.0, "client"))
    assert by_client.summary == (
        "Refresh token redeemed again 10 s after it was rotated (inside the 30 s grace period, but from client "
        "evil-app vs portal), from 79.200.1.10 (Berlin, DE, Deutsche Telekom AG) vs 79.200.1.10 (Berlin, DE, "
        "Deutsche Telekom AG) (token rt-1)."
    )
    assert (by_client.family_id, by_client.details["inside_grace"]) == (None, True)
    other_network = _refresh(70, "rt-2x", place=SINGAPORE_VPS)
    by_network = refresh_reuse_finding(RefreshReuse(
        other_network, "rt-1", Observation(rotation), Observation(other_network), "fam-1", 10.0, 30.0, "network"))
    assert by_network.summary == (
        "Refresh token redeemed again 10 s after it was rotated (inside the 30 s grace period, but from another "
        "network), from 139.59.1.1 (Singapore, SG, DigitalOcean, LLC) vs 79.200.1.10 (Berlin, DE, Deutsche "
        "Telekom AG) (token rt-1, family fam-1)."
    )


def test_refresh_reuse_finding_words_a_rejected_redemption_arriving_first_exactly() -> None:
    """The reuse sorts before the rotation it follows: evidence and places in time order."""
    rotation = _refresh(600, "rt-2")
    rejected = event("refreshed", 300, token="rt-1", token_type="refresh", family="fam-1", place=SINGAPORE_VPS,
                     success=False, grant_type="refresh_token")
    finding = refresh_reuse_finding(RefreshReuse(
        rejected, "rt-1", Observation(rotation), Observation(rejected), "fam-1", 300.0, 30.0, None))
    assert finding.summary == (
        "Refresh token redeemed again 5 min after it was rotated, from 79.200.1.10 (Berlin, DE, Deutsche Telekom AG) "
        "vs 139.59.1.1 (Singapore, SG, DigitalOcean, LLC); the IdP rejected it, so someone still holds the old "
        "token (token rt-1, family fam-1)."
    )
    assert [item.event_id for item in finding.evidence] == [rejected.event_id, rotation.event_id]
    assert (finding.details["minted_token_id"], finding.details["reuse_outcome"]) == (None, "failure")


def test_refresh_decides_the_facts_it_words() -> None:
    rotation, reuse = _refresh(60, "rt-2"), _refresh(70, "rt-2x", client="evil-app")
    detector, state = _state(_issued(), rotation)
    rotated = _token(state, "rt-1").rotation
    assert rotated is not None
    expected = RefreshReuse(reuse, "rt-1", rotated, Observation(reuse), "fam-1", 10.0, 30.0, "client")
    assert detector.process(reuse, state) == [refresh_reuse_finding(expected)]
    # Its benign twin: the same client retrying from the same network inside the grace period.
    assert detector.process(_refresh(62, "rt-2b"), state) == []


# -- reuse reported by the IdP ----------------------------------------------------------
def test_reported_reuse_finding_words_a_report_with_and_without_a_token_exactly() -> None:
    issue = _issued()
    _, state = _state(issue)
    report = event("reuse_reported", 500, token="rt-1", token_type="refresh", family="fam-1", session="s-1",
                   place=SINGAPORE_VPS, source="okta")
    finding = reported_reuse_finding(ReportedReuse(report, _token(state, "rt-1"), "fam-1"))
    assert finding.summary == (
        "Refresh token reuse reported by Okta, from 139.59.1.1 (Singapore, SG, DigitalOcean, LLC) "
        "(token rt-1, family fam-1)."
    )
    assert (finding.rule.id, finding.event, finding.key, finding.family_id, finding.token_id) == (
        "replay.refresh_reuse", report, "rt-1", "fam-1", None)
    assert [item.event_id for item in finding.evidence] == [issue.event_id, report.event_id]
    assert finding.details == {"refresh_token_id": "rt-1", "reported_by": "okta"}
    # No token named: the alert is about the session's family, keyed by it.
    bare = event("reuse_reported", 500, session="s-1", place=BERLIN_HOME, source="keycloak")
    family_only = reported_reuse_finding(ReportedReuse(bare, None, "s-1"))
    assert family_only.summary == (
        "Refresh token reuse reported by Keycloak, from 79.200.1.10 (Berlin, DE, Deutsche Telekom AG) (family s-1)."
    )
    assert (family_only.key, family_only.family_id, family_only.details) == (
        "family:s-1", "s-1", {"refresh_token_id": None, "reported_by": "keycloak"})
    assert [item.event_id for item in family_only.evidence] == [bare.event_id]


def test_reported_reuse_decides_the_facts_it_words() -> None:
    detector, state = _state(_issued())
    report = event("reuse_reported", 500, token="rt-1", token_type="refresh", session="s-1", place=SINGAPORE_VPS,
                   source="okta")
    expected = ReportedReuse(report, _token(state, "rt-1"), "fam-1")  # the family state knows
    assert detector.process(report, state) == [reported_reuse_finding(expected)]
    assert detector.process(event("reuse_reported", 500, place=SINGAPORE_VPS, source="okta"), state) == []


# -- duplicate request -------------------------------------------------------------------
def test_duplicate_request_finding_words_both_uses_known_exactly() -> None:
    _, state = _state(_issued(token="at-1", token_type="access"))
    first, again = _use(10, "req-42"), _use(50, "req-42", place=SINGAPORE_VPS)
    seen = SeenRequest(first.epoch, first.event_id, first.source)
    finding = duplicate_request_finding(
        DuplicateRequest(again, "req-42", seen, Observation(first), _token(state, "at-1")))
    assert finding.summary == (
        "Request accepted twice, 40 s apart, from 79.200.1.10 (Berlin, DE, Deutsche Telekom AG) and 139.59.1.1 "
        "(Singapore, SG, DigitalOcean, LLC) (request req-42, access token at-1)."
    )
    assert (finding.rule.id, finding.event, finding.key, finding.family_id) == (
        "replay.duplicate_request", again, "at-1", "fam-1")
    assert finding.evidence == (Observation(first).evidence("at-1"), EvidenceItem.of(again))
    assert finding.details == {"request_id": "req-42", "first_event_id": first.event_id, "gap_s": 40.0}
    same_place = duplicate_request_finding(
        DuplicateRequest(_use(50, "req-42"), "req-42", seen, Observation(first), None))
    assert same_place.summary == (
        "Request accepted twice, 40 s apart, both times from 79.200.1.10 (Berlin, DE, Deutsche Telekom AG) "
        "(request req-42, access token at-1)."
    )


def test_duplicate_request_finding_rebuilds_a_first_use_state_no_longer_has() -> None:
    """The second acceptance is the older one (it arrived late): evidence in time order."""
    late = _use(10, "req-42")
    seen = SeenRequest(250.0 + T0.timestamp(), "ev-first", "gateway")
    finding = duplicate_request_finding(DuplicateRequest(late, "req-42", seen, None, None))
    assert finding.summary == (
        "Request accepted twice, 4 min apart, the second time from 79.200.1.10 (Berlin, DE, Deutsche Telekom AG) "
        "(request req-42, access token at-1)."
    )
    rebuilt = EvidenceItem(event_id="ev-first", kind="used", time=datetime.fromtimestamp(seen.first_seen, timezone.utc),
                           source="gateway", token_id="at-1", request_id="req-42", outcome="success")
    assert finding.evidence == (EvidenceItem.of(late), rebuilt)
    assert (finding.family_id, finding.details) == (
        "fam-1", {"request_id": "req-42", "first_event_id": "ev-first", "gap_s": 240.0})


def test_duplicate_request_decides_the_facts_it_words() -> None:
    first, again = _use(10, "req-42"), _use(50, "req-42")
    detector, state = _state(_issued(token="at-1", token_type="access"), first)
    token_state = _token(state, "at-1")
    earlier = next(use for use in token_state.accepted if use.event_id == first.event_id)
    seen = SeenRequest(first.epoch, first.event_id, first.source)
    expected = DuplicateRequest(again, "req-42", seen, earlier, token_state)
    assert detector.process(again, state) == [duplicate_request_finding(expected)]
    # Its benign twin: the same event delivered again.
    assert detector.process(first, state) == []
