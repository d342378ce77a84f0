"""Replay rules: each attack beside the benign twin it must not be confused with.

Attack tests switch the other detector families off (``ONLY_REPLAY``) so they
assert exactly what this family raises; benign twins run every detector and
expect silence, except where the twin is benign only for replay (a jump
Berlin -> Hamburg within a minute is geo's business, not ours).
"""

from __future__ import annotations

import pytest

from detectors import DETECTORS
from detectors.replay import SEEN_REQUEST, ReplayConfig, ReplayDetector
from detectors.state import StateStore, stable_hash
from pipeline.runtime.alerting import alert_id
from schemas.events import Binding, CanonicalEvent, Network
from tests.factories import (
    BERLIN_HOME,
    BERLIN_MOBILE,
    CORP_VPN_TOKYO,
    HAMBURG_SAME_ASN,
    MUNICH_OTHER_ISP,
    SINGAPORE_VPS,
    Place,
    engine,
    event,
    rule_hits,
    run,
)

ONLY_REPLAY = {name: {"enabled": False} for name in DETECTORS if name != "replay"}
SCOPES = ("openid", "read")
DAY = 86_400.0
AT_LIFE = 3_600.0
KEY_A = Binding(method="dpop", value="jkt-AAAA")
KEY_B = Binding(method="dpop", value="jkt-BBBB")
# A second uplink of the same allowlisted VPN concentrator: other IP and ASN, same egress name.
# Another ISP in Berlin's metro area: a handover to it is plausible travel (same country, no hosting).
O2_BERLIN = Place("84.150.2.2", "DE", "Berlin", 52.52, 13.41, 6805, "Telefonica Germany")
CORP_VPN_TOKYO_2 = Place("198.51.100.20", "JP", "Tokyo", 35.69, 139.70, 17676, "SoftBank Corp.", egress="corp-vpn")


# Cloud and cluster addresses. Place has no provider field: ``on`` adds it (and other network facts).
AWS_FRANKFURT = Place("3.120.15.20", "DE", "Frankfurt", 50.11, 8.68, 16509, "AMAZON-02", hosting=True)
GCP_EEMSHAVEN = Place("34.90.1.1", "NL", "Eemshaven", 53.44, 6.83, 396982, "GOOGLE-CLOUD-PLATFORM", hosting=True)
ON_AWS = Binding(method="network", value="aws")
AKID = "ASIAQEXAMPLE7KEY"
POD_UID = "7d3c1e52-9b1a-4c8e-a0f2-5b6c7d8e9f01"
POD = Binding(method="pod", value=POD_UID)
NODE_IP, POD_IP, OTHER_IP = "10.0.1.7", "10.20.3.41", "10.99.0.5"
SA = "system:serviceaccount:shop:checkout"
SA_LIFE = 3_607.0


def on(ev: CanonicalEvent, place: Place | None = None, **network: object) -> CanonicalEvent:
    """``ev`` seen from ``place`` (or from no address), with extra network facts such as
    ``provider`` or ``service`` — what enrichment and the cloud adapters fill in."""
    base = place.network() if place is not None else Network()
    return ev.model_copy(update={"network": base.model_copy(update=network)})


def sts(t: float, kind: str = "used", **kw: object) -> CanonicalEvent:
    """CloudTrail: temporary credentials of an EC2 instance profile (issued at t=0 for 6 h)."""
    return event(kind, t, token=AKID, token_type="temporary_credential", expires_in=6 * 3_600.0 - t,
                 subject="arn:aws:sts::111122223333:assumed-role/web/i-0abc", client=None, place=None,
                 source="cloudtrail", **kw)  # type: ignore[arg-type]  # **kw: object, checked by event() itself


def instance_profile() -> CanonicalEvent:
    """EC2 assumed the instance role: the credentials are bound to AWS."""
    return on(sts(0, "issued", bound=ON_AWS, grant_type="AssumeRole"), service="ec2.amazonaws.com")


def pod_token(
    t: float, ip: str | None, kind: str = "used", token: str = "sa-tok-1", pod: Binding = POD, **kw: object
) -> CanonicalEvent:
    """k8s: a projected service-account token of ``pod`` (the adapter keeps the binding on uses)."""
    ev = event(kind, t, token=token, token_type="service_account", bound=pod, expires_in=SA_LIFE - t,
               subject=SA, client=None, place=None, source="k8s", **kw)  # type: ignore[arg-type]  # **kw: object, checked by event() itself
    return on(ev, ip=ip)


def login(t: float = 0.0, bound: Binding | None = None, place: Place = BERLIN_HOME) -> list[CanonicalEvent]:
    """Authorization-code login: a refresh token rt-1 and an access token at-1 in family fam-1."""
    common = dict(family="fam-1", session="s-1", scopes=SCOPES, grant_type="authorization_code", place=place)
    return [
        event("issued", t, token="rt-1", token_type="refresh", expires_in=DAY, **common),
        event("issued", t, token="at-1", token_type="access", expires_in=AT_LIFE, bound=bound, **common),
    ]


def refresh(t: float, new: str, parent: str = "rt-1", place: Place = BERLIN_HOME, **kw: object) -> CanonicalEvent:
    """Redeem ``parent``; the IdP rotates it and mints the refresh token ``new``."""
    return event("refreshed", t, token=new, token_type="refresh", family="fam-1", parent=parent, session="s-1",
                 scopes=SCOPES, expires_in=DAY, grant_type="refresh_token", place=place, **kw)  # type: ignore[arg-type]  # **kw: object, checked by event() itself


def use(t: float, token: str = "at-1", place: Place = BERLIN_HOME, **kw: object) -> CanonicalEvent:
    """A resource-server request with the access token issued at t=0."""
    return event("used", t, token=token, family="fam-1", session="s-1", scopes=SCOPES, required=("read",),
                 expires_in=AT_LIFE - t, place=place, **kw)  # type: ignore[arg-type]  # **kw: object, checked by event() itself


# -- metadata and config --------------------------------------------------------------

def test_registered_with_four_rules_and_documented_thresholds() -> None:
    assert DETECTORS["replay"] is ReplayDetector
    assert [r.id for r in ReplayDetector.rules] == [
        "replay.refresh_reuse", "replay.concurrent_use", "replay.binding_mismatch", "replay.duplicate_request",
    ]
    reuse = ReplayDetector.rule("replay.refresh_reuse")
    assert (reuse.severity, reuse.risk_score, reuse.response) == ("high", 80, "revoke_family")
    assert [t[0] for t in reuse.techniques] == ["T1550.001", "T1528"]
    config = ReplayConfig()
    assert (config.refresh_grace_s, config.concurrent_window_s, config.duplicate_request_window_s) == (30, 60, 300)
    assert "aws" in config.cloud_providers and config.pod_address_ttl_s == DAY
    assert all(field.description for name, field in ReplayConfig.model_fields.items() if name != "enabled")
    with pytest.raises(ValueError):
        engine({"replay": {"refresh_grace": 10}})


def test_irrelevant_kinds_return_nothing_without_touching_state() -> None:
    detector, state = ReplayDetector(), StateStore()
    for ev in (*login(), event("revoked", 5, token="at-1", revoke="token"), event("session_ended", 6, session="s-1")):
        assert detector.process(ev, state) == []
    assert all(len(table) == 0 for table in state.tables.values())


# -- refresh reuse --------------------------------------------------------------------

def test_reuse_after_grace_from_another_network() -> None:
    rotation = refresh(60, "rt-2")
    reuse = refresh(360, "rt-2x", place=SINGAPORE_VPS)
    alerts = run([*login(), rotation, use(100), reuse], ONLY_REPLAY)

    # token.id is the trigger's token (what the reuse minted); the reused token is the key.
    assert rule_hits(alerts) == [("replay.refresh_reuse", "rt-1")]
    alert = alerts[0]
    assert alert.alert.id == alert_id("replay.refresh_reuse", "rt-1", reuse.event_id)
    assert alert.details["refresh_token_id"] == "rt-1"
    assert alert.token.family_id == "fam-1"
    assert (alert.alert.severity, alert.alert.risk_score, alert.response.action) == ("high", 80, "revoke_family")
    assert [e.event_id for e in alert.evidence] == [rotation.event_id, reuse.event_id]
    assert alert.alert.summary == (
        "Refresh token redeemed again 5 min after it was rotated, from 139.59.1.1 (Singapore, SG, "
        "DigitalOcean, LLC) vs 79.200.1.10 (Berlin, DE, Deutsche Telekom AG) (token rt-1, family fam-1)."
    )


def test_reuse_after_grace_from_the_same_context_is_still_reuse() -> None:
    alerts = run([*login(), refresh(60, "rt-2"), refresh(60 + 31, "rt-2b")], ONLY_REPLAY)
    assert rule_hits(alerts) == [("replay.refresh_reuse", "rt-1")]


@pytest.mark.parametrize(
    ("place", "client", "why"),
    [
        (SINGAPORE_VPS, "portal", "from another network"),
        (BERLIN_HOME, "evil-app", "from client evil-app vs portal"),
    ],
)
def test_reuse_inside_grace_from_another_client_context(place: Place, client: str, why: str) -> None:
    alerts = run([*login(), refresh(60, "rt-2"), refresh(70, "rt-2x", place=place, client=client)], ONLY_REPLAY)
    assert rule_hits(alerts) == [("replay.refresh_reuse", "rt-1")]
    assert f"inside the 30 s grace period, but {why}" in alerts[0].alert.summary


@pytest.mark.parametrize("named", ["parent", "token"])
def test_failed_redemption_of_a_rotated_token_is_reuse(named: str) -> None:
    if named == "parent":
        reuse = refresh(600, "rt-none", place=SINGAPORE_VPS, success=False)
    else:  # the IdP names only the presented token when nothing was minted
        reuse = event("refreshed", 600, token="rt-1", token_type="refresh", family="fam-1",
                      place=SINGAPORE_VPS, success=False, grant_type="refresh_token")
    alerts = run([*login(), refresh(60, "rt-2"), reuse], ONLY_REPLAY)
    assert [a.rule.id for a in alerts] == ["replay.refresh_reuse"]
    assert alerts[0].details["refresh_token_id"] == "rt-1"
    assert "the IdP rejected it, so someone still holds the old token" in alerts[0].alert.summary


def test_retry_inside_grace_from_the_same_context_is_benign() -> None:
    assert run([*login(), refresh(60, "rt-2"), refresh(62, "rt-2b"), use(70)]) == []


def test_retry_inside_grace_after_a_nat_change_within_the_asn_is_benign() -> None:
    assert run([*login(), refresh(60, "rt-2"), refresh(65, "rt-2b", place=BERLIN_MOBILE)]) == []


def test_retry_with_clock_skew_arriving_late_is_benign() -> None:
    # The retry's IdP node clock is 3 s behind: it sorts before the rotation and arrives after it.
    events = [*login(), refresh(60, "rt-2"), refresh(57, "rt-2b")]
    assert run(events) == []
    assert run(events, allowed_lateness_s=0) == []


def test_rotation_chain_and_non_rotating_refresh_are_benign() -> None:
    chain = [*login(), refresh(600, "rt-2"), refresh(1200, "rt-3", parent="rt-2"),
             refresh(1800, "rt-4", parent="rt-3")]
    assert run(chain) == []
    # A refresh that mints only an access token leaves rt-1 valid: redeeming it again is allowed.
    reusable = [*login(),
                event("refreshed", 600, token="at-2", family="fam-1", parent="rt-1", session="s-1", scopes=SCOPES,
                      grant_type="refresh_token"),
                event("refreshed", 1200, token="at-3", family="fam-1", parent="rt-1", session="s-1", scopes=SCOPES,
                      grant_type="refresh_token")]
    assert run(reusable) == []


@pytest.mark.parametrize("lateness", [5.0, 0.0])
def test_reuse_arriving_before_the_rotation_it_follows(lateness: float) -> None:
    """The attacker's redemption is processed first; the legitimate rotation shows up late."""
    rotation = refresh(60, "rt-2")
    reuse = refresh(360, "rt-2x", place=SINGAPORE_VPS)
    alerts = run([*login(), reuse, rotation], ONLY_REPLAY, allowed_lateness_s=lateness)
    assert [a.rule.id for a in alerts] == ["replay.refresh_reuse"]
    assert [e.event_id for e in alerts[0].evidence] == [rotation.event_id, reuse.event_id]
    assert "redeemed again 5 min after it was rotated, from 139.59.1.1" in alerts[0].alert.summary


def test_repeated_reuse_folds_into_one_alert() -> None:
    rotation = refresh(60, "rt-2")
    reuses = [refresh(60 + 120 * i, f"rt-x{i}", place=SINGAPORE_VPS) for i in (1, 2, 3)]
    alerts = run([*login(), rotation, *reuses], ONLY_REPLAY)
    assert rule_hits(alerts) == [("replay.refresh_reuse", "rt-1")]
    assert alerts[0].alert.count == 3
    assert [e.event_id for e in alerts[0].evidence] == [rotation.event_id] + [r.event_id for r in reuses]


def test_reuse_delivered_twice_counts_once() -> None:
    reuse = refresh(360, "rt-2x", place=SINGAPORE_VPS)
    alerts = run([*login(), refresh(60, "rt-2"), reuse, reuse], ONLY_REPLAY)
    assert [(a.rule.id, a.alert.count) for a in alerts] == [("replay.refresh_reuse", 1)]


def test_grace_is_configurable() -> None:
    events = [*login(), refresh(60, "rt-2"), refresh(100, "rt-2b")]
    assert run(events, ONLY_REPLAY) != []
    assert run(events, {**ONLY_REPLAY, "replay": {"refresh_grace_s": 60}}) == []


# -- reuse reported by the IdP ----------------------------------------------------------

def reported(t: float, token: str = "rt-1", family: str = "fam-1", place: Place = SINGAPORE_VPS) -> CanonicalEvent:
    """Okta's own refresh-token reuse detection fired for ``token``."""
    return event("reuse_reported", t, token=token, token_type="refresh", family=family, session="s-1",
                 place=place, source="okta")


def test_idp_reported_reuse() -> None:
    issue = login()
    report = reported(500)
    alerts = run([*issue, use(10), report], ONLY_REPLAY)
    assert rule_hits(alerts) == [("replay.refresh_reuse", "rt-1")]
    alert = alerts[0]
    assert alert.alert.summary == (
        "Refresh token reuse reported by Okta, from 139.59.1.1 (Singapore, SG, DigitalOcean, LLC) "
        "(token rt-1, family fam-1)."
    )
    assert (alert.response.action, alert.token.family_id) == ("revoke_family", "fam-1")
    assert alert.details == {"refresh_token_id": "rt-1", "reported_by": "okta",
                             "lineage_family_tokens": '["rt-1", "at-1"]'}  # for the family's revocation
    assert [e.event_id for e in alert.evidence] == [issue[0].event_id, report.event_id]
    # The report alone, for a token we never saw minted, is still the IdP's word.
    alone = run([reported(500, token="rt-9", family="fam-9", place=BERLIN_HOME)])
    assert rule_hits(alone) == [("replay.refresh_reuse", "rt-9")]
    assert alone[0].alert.summary == (
        "Refresh token reuse reported by Okta, from 79.200.1.10 (Berlin, DE, Deutsche Telekom AG) "
        "(token rt-9, family fam-9)."
    )


def test_idp_report_and_our_own_reuse_detection_fold_into_one_alert() -> None:
    reuse = refresh(360, "rt-2x", place=SINGAPORE_VPS)
    report = reported(361)
    alerts = run([*login(), refresh(60, "rt-2"), reuse, report, report], ONLY_REPLAY)
    assert [(a.rule.id, a.token.id, a.alert.count) for a in alerts] == [("replay.refresh_reuse", "rt-1", 2)]


def test_reuse_report_without_a_token_or_a_plain_refresh_is_benign() -> None:
    assert run([*login(), event("reuse_reported", 500, place=SINGAPORE_VPS, source="okta")]) == []
    assert run([*login(), refresh(600, "rt-2", source="okta"), use(700)]) == []


# -- concurrent use ------------------------------------------------------------------

def test_concurrent_use_berlin_and_singapore() -> None:
    first, second = use(10), use(30, place=SINGAPORE_VPS)
    alerts = run([*login(), first, second], ONLY_REPLAY)
    assert rule_hits(alerts) == [("replay.concurrent_use", "at-1")]
    alert = alerts[0]
    assert (alert.alert.severity, alert.alert.risk_score, alert.response.action) == ("high", 70, "revoke_token")
    assert [e.event_id for e in alert.evidence] == [first.event_id, second.event_id]
    assert alert.alert.summary == (
        "Access token was accepted from 139.59.1.1 (Singapore, SG, DigitalOcean, LLC) 20 s after a use "
        "from 79.200.1.10 (Berlin, DE, Deutsche Telekom AG); one holder cannot be in both places "
        "(DigitalOcean, LLC is a hosting, anonymising or reputation-listed network) (token at-1)."
    )
    assert (alert.details["difference"], alert.details["handovers_before"]) == ("anonymising", 0)


@pytest.mark.parametrize("lateness", [30.0, 0.0])
def test_concurrent_use_arriving_out_of_order(lateness: float) -> None:
    """Singapore (t=30) is delivered before Berlin (t=10): within the allowed lateness the engine
    reorders them; with none, the detector itself compares against the later use."""
    first, second = use(10), use(30, place=SINGAPORE_VPS)
    alerts = run([*login(), second, first], ONLY_REPLAY, allowed_lateness_s=lateness)
    assert rule_hits(alerts) == [("replay.concurrent_use", "at-1")]
    assert [e.event_id for e in alerts[0].evidence] == [first.event_id, second.event_id]
    assert "from 139.59.1.1 (Singapore, SG, DigitalOcean, LLC) 20 s after a use from 79.200.1.10" in (
        alerts[0].alert.summary)


def test_a_new_client_certificate_alone_is_drift_not_a_second_holder() -> None:
    """A key change inside one token is evidence (issue 14), a rule only with another signal:
    on one network it raises nothing; with a change of network in the window it is an alert."""
    cert_a, cert_b = Binding(method="mtls", value="x5t-A"), Binding(method="mtls", value="x5t-B")
    assert run([*login(), use(10, proof=cert_a), use(25, proof=cert_b)], ONLY_REPLAY) == []
    alerts = run([*login(), use(10, proof=cert_a), use(25, proof=cert_b, place=O2_BERLIN)], ONLY_REPLAY)
    assert rule_hits(alerts) == [("replay.concurrent_use", "at-1")]
    assert (alerts[0].details["difference"], alerts[0].details["device_drift"]) == ("drift", "key")
    assert alerts[0].alert.summary.endswith(
        "; and the network changed along with the device: proven key mtls:x5t-A then mtls:x5t-B (token at-1).")
    # Without the key change the same move is roaming.
    assert run([*login(), use(10, proof=cert_a), use(25, proof=cert_a, place=O2_BERLIN)], ONLY_REPLAY) == []


def test_nat_or_mobile_change_within_one_asn_is_benign() -> None:
    assert run([*login(), use(10), use(30, place=BERLIN_MOBILE), use(45)]) == []


def test_far_jump_within_one_asn_is_not_replay() -> None:
    # Mobile carriers geolocate loosely; whether this is impossible travel is geo_divergence's call.
    assert run([*login(), use(10), use(30, place=HAMBURG_SAME_ASN)], ONLY_REPLAY) == []


def test_same_allowlisted_vpn_egress_is_benign() -> None:
    events = [*login(place=CORP_VPN_TOKYO), use(10, place=CORP_VPN_TOKYO), use(20, place=CORP_VPN_TOKYO_2)]
    assert run(events) == []


def test_other_network_outside_the_window_or_failed_is_not_concurrent() -> None:
    assert run([*login(), use(10), use(10 + 61, place=MUNICH_OTHER_ISP)], ONLY_REPLAY) == []
    assert run([*login(), use(10), use(20, place=SINGAPORE_VPS, success=False)], ONLY_REPLAY) == []


# -- binding mismatch --------------------------------------------------------------------

def test_dpop_key_mismatch() -> None:
    issue = login(bound=KEY_A)
    wrong = use(20, proof=KEY_B)
    alerts = run([*issue, use(10, proof=KEY_A), wrong], ONLY_REPLAY)
    # Only the binding rule: for a bound token a foreign key is not also "concurrent use".
    assert rule_hits(alerts) == [("replay.binding_mismatch", "at-1")]
    alert = alerts[0]
    assert (alert.alert.severity, alert.alert.risk_score, alert.response.action) == ("high", 85, "revoke_token")
    assert [e.event_id for e in alert.evidence] == [issue[1].event_id, wrong.event_id]
    assert alert.alert.summary == (
        "Access token bound to DPoP key jkt-AAAA was accepted with DPoP key jkt-BBBB, "
        "from 79.200.1.10 (Berlin, DE, Deutsche Telekom AG) (token at-1)."
    )


def test_bound_token_accepted_without_proof() -> None:
    alerts = run([*login(bound=KEY_A), use(10)], ONLY_REPLAY)
    assert rule_hits(alerts) == [("replay.binding_mismatch", "at-1")]
    assert "bound to DPoP key jkt-AAAA was accepted without proving that DPoP key" in alerts[0].alert.summary
    # Resource-server logs that never record the proof: only a wrong key is evidence then.
    quiet = {**ONLY_REPLAY, "replay": {"alert_on_missing_proof": False}}
    assert run([*login(bound=KEY_A), use(10)], quiet) == []
    assert rule_hits(run([*login(bound=KEY_A), use(10, proof=KEY_B)], quiet)) == [("replay.binding_mismatch", "at-1")]


def test_binding_known_only_from_the_presented_cnf_claim() -> None:
    # The issue event never reached us; the token's cnf at use still says which key it needs.
    alerts = run([use(10, bound=KEY_A, proof=KEY_B)], ONLY_REPLAY)
    assert rule_hits(alerts) == [("replay.binding_mismatch", "at-1")]


def test_network_bound_credential_used_from_another_network() -> None:
    issued_in = Binding(method="network", value="vpc-0a1")
    events = [event("issued", 0, token="ak-1", token_type="temporary_credential", bound=issued_in,
                     expires_in=AT_LIFE),
              event("used", 10, token="ak-1", token_type="temporary_credential", expires_in=AT_LIFE - 10,
                    proof=Binding(method="network", value="vpc-0a1")),
              event("used", 20, token="ak-1", token_type="temporary_credential", expires_in=AT_LIFE - 20,
                    proof=Binding(method="network", value="ext:139.59.1.1"))]
    alerts = run(events, ONLY_REPLAY)
    assert rule_hits(alerts) == [("replay.binding_mismatch", "ak-1")]
    assert alerts[0].alert.summary.startswith("Temporary credential bound to network vpc-0a1 was accepted with network")
    assert alerts[0].alert.summary.endswith("(token ak-1).")
    # Without network evidence at the request there is nothing to compare.
    assert run(events[:1] + [event("used", 10, token="ak-1", token_type="temporary_credential",
                                   expires_in=AT_LIFE - 10)]) == []


def test_correct_dpop_proof_is_benign() -> None:
    assert run([*login(bound=KEY_A), use(10, proof=KEY_A), use(20, proof=KEY_A, place=BERLIN_MOBILE)]) == []


def test_failed_use_with_wrong_proof_is_benign() -> None:
    assert run([*login(bound=KEY_A), use(10, proof=KEY_B, success=False), use(20, success=False)]) == []


# -- network-bound cloud credentials --------------------------------------------------------

@pytest.mark.parametrize(
    ("place", "provider", "where"),
    [
        (Place("5.255.255.5", "NL", "Amsterdam", 52.37, 4.89, 1136, "KPN B.V."), None,
         "5.255.255.5 (Amsterdam, NL, KPN B.V.), outside aws"),
        (SINGAPORE_VPS, None, "139.59.1.1 (Singapore, SG, DigitalOcean, LLC), outside aws"),
        (GCP_EEMSHAVEN, "gcp", "34.90.1.1 (Eemshaven, NL, GOOGLE-CLOUD-PLATFORM), a gcp address outside aws"),
    ],
)
def test_instance_credentials_used_outside_aws(place: Place, provider: str | None, where: str) -> None:
    issue = instance_profile()
    stolen = on(sts(600), place, provider=provider)
    alerts = run([issue, on(sts(10), AWS_FRANKFURT, provider="aws"), stolen], ONLY_REPLAY)
    assert rule_hits(alerts) == [("replay.binding_mismatch", AKID)]
    alert = alerts[0]
    assert alert.alert.summary == (
        f"Temporary credentials issued to an AWS service (bound to aws) were used from {where}"
        f" — the credential exfiltration pattern (credentials {AKID})."
    )
    assert (alert.alert.severity, alert.response.action) == ("high", "revoke_token")
    assert [e.event_id for e in alert.evidence] == [issue.event_id, stolen.event_id]
    assert alert.details["used_from_provider"] == provider
    assert alert.details["related_technique"] == "T1552.005 Unsecured Credentials: Cloud Instance Metadata API"


def test_instance_credentials_used_outside_aws_soon_after_inside_is_one_alert() -> None:
    # Also a network change within a minute: the binding rule says more, concurrent use stays quiet.
    alerts = run([instance_profile(), on(sts(10), AWS_FRANKFURT, provider="aws"), on(sts(20), SINGAPORE_VPS)],
                 ONLY_REPLAY)
    assert rule_hits(alerts) == [("replay.binding_mismatch", AKID)]


def test_instance_credentials_used_inside_aws_are_benign() -> None:
    events = [
        instance_profile(),
        on(sts(10), AWS_FRANKFURT, provider="aws"),
        on(sts(20), service="s3.amazonaws.com"),  # S3 acting on the role's behalf
        on(sts(30), service="AWS Internal"),
        on(sts(40), AWS_FRANKFURT, provider="AWS"),
    ]
    assert run(events) == []


def test_instance_credentials_failed_or_from_an_unrecorded_address_are_benign() -> None:
    assert run([instance_profile(), on(sts(10, success=False), SINGAPORE_VPS), sts(20)]) == []


def test_binding_to_a_provider_known_only_from_the_presented_credential() -> None:
    ev = on(sts(10, bound=ON_AWS), BERLIN_HOME)
    assert rule_hits(run([ev], ONLY_REPLAY)) == [("replay.binding_mismatch", AKID)]


# -- pod-bound Kubernetes tokens -------------------------------------------------------------

def test_pod_token_used_from_another_address() -> None:
    issue = pod_token(0, NODE_IP, "issued", grant_type="TokenRequest")
    first, stolen = pod_token(10, POD_IP), pod_token(30, OTHER_IP)
    alerts = run([issue, first, pod_token(20, POD_IP), stolen], ONLY_REPLAY)
    assert rule_hits(alerts) == [("replay.binding_mismatch", "sa-tok-1")]
    alert = alerts[0]
    assert alert.alert.summary == (
        f"Pod-bound service-account token used from {OTHER_IP}, not its pod's address {POD_IP} "
        f"or its node address {NODE_IP} (token sa-tok-1, pod {POD_UID})."
    )
    assert [e.event_id for e in alert.evidence] == [issue.event_id, first.event_id, stolen.event_id]
    assert alert.details["pod_address"] == POD_IP and alert.details["node_address"] == NODE_IP


def test_pod_address_is_learned_per_pod_across_rotated_tokens() -> None:
    """The kubelet rotates the token; the pod (and its address) stay. The first use has long
    left the new token's state, so its evidence is rebuilt from what was learned."""
    first = pod_token(10, POD_IP)
    events = [first, *(pod_token(20 + i, POD_IP) for i in range(6)),
              pod_token(2_900, NODE_IP, "issued", token="sa-tok-2", grant_type="TokenRequest"),
              pod_token(2_910, POD_IP, token="sa-tok-2"), pod_token(2_920, OTHER_IP, token="sa-tok-2")]
    alerts = run(events, ONLY_REPLAY)
    assert rule_hits(alerts) == [("replay.binding_mismatch", "sa-tok-2")]
    evidence = alerts[0].evidence
    assert (evidence[0].event_id, evidence[0].token_id, evidence[0].ip) == (first.event_id, "sa-tok-1", POD_IP)


def test_pod_token_from_its_pod_or_its_node_is_benign() -> None:
    issue = pod_token(0, NODE_IP, "issued", grant_type="TokenRequest")
    assert run([issue, pod_token(10, POD_IP), pod_token(20, POD_IP)]) == []
    # hostNetwork pods and SNAT-ed pod traffic show the node's address; it teaches nothing about the pod's.
    assert run([issue, pod_token(10, NODE_IP), pod_token(20, POD_IP), pod_token(30, NODE_IP),
                pod_token(40, POD_IP)]) == []


def test_pod_token_failed_or_unaddressed_use_from_elsewhere_is_benign() -> None:
    issue = pod_token(0, NODE_IP, "issued", grant_type="TokenRequest")
    assert run([issue, pod_token(10, POD_IP), pod_token(20, OTHER_IP, success=False), pod_token(30, None)]) == []


def test_pod_token_presenting_another_pod_is_a_mismatch() -> None:
    other = Binding(method="pod", value="0b0e-other-pod")
    alerts = run([pod_token(0, NODE_IP, "issued"), pod_token(10, POD_IP, proof=other)], ONLY_REPLAY)
    assert rule_hits(alerts) == [("replay.binding_mismatch", "sa-tok-1")]
    assert f"bound to pod {POD_UID} was accepted with pod 0b0e-other-pod" in alerts[0].alert.summary


def test_pod_addresses_expire_after_the_pod_is_quiet_and_are_capped() -> None:
    from detectors.binding import POD_ADDRESS  # the binding check's table, kept in replay's name

    eng = engine(ONLY_REPLAY, expire_every_s=1)
    for ev in [pod_token(0, POD_IP), pod_token(DAY / 2, POD_IP)]:
        eng.submit(ev)
    eng.flush()
    pods = eng.state.table("replay", "pods", POD_ADDRESS)
    assert list(pods) == [POD_UID]
    eng.submit(event("session_started", DAY / 2 + DAY + 10, session="s-x"))  # event time moves on
    eng.flush()
    assert len(pods) == 0

    capped = engine({**ONLY_REPLAY, "replay": {"max_tracked_pods": 2}})
    for i in range(4):
        capped.submit(pod_token(i, f"10.20.0.{i}", token=f"sa-{i}", pod=Binding(method="pod", value=f"pod-{i}")))
    capped.flush()
    assert list(capped.state.table("replay", "pods", POD_ADDRESS)) == ["pod-2", "pod-3"]


# -- duplicate request -------------------------------------------------------------------

def test_duplicate_request_id_accepted_twice() -> None:
    first, replayed = use(10, request_id="req-42"), use(50, request_id="req-42")
    alerts = run([*login(), first, use(20), replayed], ONLY_REPLAY)
    assert rule_hits(alerts) == [("replay.duplicate_request", "at-1")]
    alert = alerts[0]
    assert (alert.alert.severity, alert.alert.risk_score, alert.response.action) == ("medium", 60, "revoke_token")
    assert [e.event_id for e in alert.evidence] == [first.event_id, replayed.event_id]
    assert alert.alert.summary == (
        "Request accepted twice, 40 s apart, both times from 79.200.1.10 (Berlin, DE, Deutsche Telekom AG) "
        "(request req-42, access token at-1)."
    )


def test_duplicate_request_arriving_out_of_order_without_the_first_use_in_state() -> None:
    first, replayed = use(10, request_id="req-42"), use(250, request_id="req-42")
    # Many uses in between push the first one out of the token's recent-use list.
    filler = [use(20 + i) for i in range(6)]
    alerts = run([*login(), replayed, *filler, first], ONLY_REPLAY, allowed_lateness_s=0)
    assert rule_hits(alerts) == [("replay.duplicate_request", "at-1")]
    assert [e.event_id for e in alerts[0].evidence] == [first.event_id, replayed.event_id]


def test_same_request_delivered_twice_as_the_same_event_is_benign() -> None:
    once = use(10, request_id="req-42")
    assert run([*login(), once, once, use(20)]) == []


def test_same_request_id_for_other_tokens_or_after_the_window_is_benign() -> None:
    other = event("issued", 0, token="at-9", family="fam-9", session="s-9", scopes=SCOPES, expires_in=AT_LIFE,
                  grant_type="authorization_code")
    assert run([*login(), other, use(10, request_id="req-42"), use(12, token="at-9", request_id="req-42")]) == []
    assert run([*login(), use(10, request_id="req-42"), use(10 + 301, request_id="req-42")]) == []


def test_request_ids_expire_with_event_time_and_are_capped() -> None:
    eng = engine(ONLY_REPLAY, expire_every_s=1)
    for ev in [*login(), *(use(t, request_id=f"req-{t}") for t in range(0, 1000, 50))]:
        eng.submit(ev)
    # In-order uses are judged at once (t=950 too); the watermark is 945: ids older than 945 - 300 s
    # are forgotten.
    requests = eng.state.table("replay", "requests", SEEN_REQUEST)
    assert sorted(requests) == sorted(stable_hash("at-1", f"req-{t}") for t in range(650, 1000, 50))

    capped = engine({**ONLY_REPLAY, "replay": {"max_tracked_requests": 3}})
    for ev in [*login(), *(use(t, request_id=f"req-{t}") for t in range(10, 40, 2))]:
        capped.submit(ev)
    capped.flush()
    assert len(capped.state.table("replay", "requests", SEEN_REQUEST)) == 3
