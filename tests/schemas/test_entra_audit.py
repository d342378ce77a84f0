"""Entra ID audit log: revoked sessions and disabled users, in both export shapes.

``entra_audit.jsonl`` is built from Microsoft's own references:
- diagnostic-settings records: the ``AuditLogs`` sample of "Interpret the Microsoft Entra
  audit logs schema in Azure Monitor" (top-level ``time``/``operationName``/``tenantId``,
  ``properties`` as Graph's ``directoryAudit``: ``result`` 0, ``initiatedBy``,
  ``targetResources`` of Graph ``targetResource`` with ``modifiedProperty`` values as
  JSON text);
- a Log Analytics row: the columns of the Azure Monitor Logs reference "AuditLogs"
  (``ActivityDisplayName``, ``Result`` success, dynamic ``InitiatedBy``/``TargetResources``);
- the activity names of the "Microsoft Entra audit log activity reference", Core
  Directory: ``Update StsRefreshTokenValidFrom Timestamp``, ``Update user``,
  ``Delete user``, ``Disable account``, ``Hard Delete user``, ``Add member to group``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given

from pipeline.synthetic.vocabulary import CITIES, NETWORKS
from pipeline.synthetic.world import emit
from pipeline.synthetic.world.net import Place
from schemas.events import CanonicalEvent, EventKind, Outcome, Revocation, Subject
from schemas.sources import FORMATS, AdapterContext, InvalidRecord, UnsupportedEventType
from schemas.sources.entra import EntraFormat
from tests.detect_helpers import detect_lines
from tests.fuzzing import FUZZ, assert_accounted_for, cut_lines, mutated_lines, normalize

LINES = (Path(__file__).resolve().parents[1] / "data" / "formats" / "entra_audit.jsonl").read_bytes().splitlines()
TENANT = "4bbb79f7-0000-4000-8000-000000000001"
ERIN = Subject(id="5f0a7c21-0000-4000-8000-0000000000e1", name="erin@contoso.example", kind="user")
DAVE = Subject(id="7b3c9d10-0000-4000-8000-0000000000bb", name="dave@contoso.example", kind="user")
UTC = timezone.utc
OK = Outcome(result="success")


@pytest.fixture
def ctx(hasher) -> AdapterContext:
    return AdapterContext(hash_token=hasher)


def _line(n: int) -> dict[str, Any]:
    return orjson.loads(LINES[n])


def _events(raw: dict[str, Any], ctx: AdapterContext) -> list[CanonicalEvent]:
    return EntraFormat().to_events(raw, ctx)


def test_revoke_sign_in_sessions_is_a_revocation_of_the_target_user(ctx: AdapterContext) -> None:
    assert _events(_line(0), ctx) == [CanonicalEvent(
        event_id="entra:Directory_8f2a1c3e-0001", kind=EventKind.REVOKED,
        time=datetime(2026, 11, 24, 8, 30, tzinfo=UTC), source="entra", tenant=TENANT, subject=ERIN,
        revocation=Revocation(target="subject", actor="admin@contoso.example"), outcome=OK,
    )]


def test_update_user_setting_account_enabled_false_disables_the_user(ctx: AdapterContext) -> None:
    assert _events(_line(1), ctx) == [CanonicalEvent(
        event_id="entra:Directory_8f2a1c3e-0002", kind=EventKind.PRINCIPAL_DISABLED,
        time=datetime(2026, 11, 24, 8, 40, tzinfo=UTC), source="entra", tenant=TENANT, subject=ERIN, outcome=OK,
    )]


def test_delete_user_row_disables_the_user(ctx: AdapterContext) -> None:
    expected = [CanonicalEvent(
        event_id="entra:Directory_8f2a1c3e-0004", kind=EventKind.PRINCIPAL_DISABLED,
        time=datetime(2026, 11, 24, 9, 0, tzinfo=UTC), source="entra", tenant=TENANT, subject=DAVE, outcome=OK,
    )]
    row = _line(3)
    assert _events(row, ctx) == expected
    # Dynamic columns handed out as JSON text, and a query that projected the table name away.
    text = {**row, "InitiatedBy": orjson.dumps(row["InitiatedBy"]).decode(),
            "TargetResources": orjson.dumps(row["TargetResources"]).decode()}
    del text["Type"]
    assert EntraFormat().matches(text) and _events(text, ctx) == expected


@pytest.mark.parametrize("activity", ["Disable account", "Delete user", "Hard Delete user"])
def test_disabling_activities_are_principal_disabled(ctx: AdapterContext, activity: str) -> None:
    raw = emit.entra_audit("Directory_x", 1794214800.0, activity, ERIN.id, ERIN.name or "", "admin@contoso.example")
    [event] = _events(raw, ctx)
    assert (event.kind, event.subject, event.event_id) == (EventKind.PRINCIPAL_DISABLED, ERIN, "entra:Directory_x")


@pytest.mark.parametrize("new_value", ["[true]", None, "not json", "[]"])
def test_update_user_that_does_not_disable_is_skipped(ctx: AdapterContext, new_value: str | None) -> None:
    raw = _line(1)
    raw["properties"]["targetResources"][0]["modifiedProperties"][0]["newValue"] = new_value
    with pytest.raises(UnsupportedEventType, match="^AuditLogs$"):
        _events(raw, ctx)


def test_other_activities_are_skipped_unvalidated_under_one_label(ctx: AdapterContext) -> None:
    with pytest.raises(UnsupportedEventType, match="^AuditLogs$"):
        _events(_line(2), ctx)
    raw = _line(2)
    raw["properties"]["activityDisplayName"] = "x" * 900
    raw["properties"]["targetResources"] = "not a list"
    with pytest.raises(UnsupportedEventType, match="^AuditLogs$"):
        _events(raw, ctx)


@pytest.mark.parametrize(("result", "outcome"), [
    (1, Outcome(result="failure", reason="failure")), (2, Outcome(result="failure", reason="timeout")),
    (3, Outcome(result="unknown", reason="3")),
])
def test_a_failed_revocation_keeps_its_result(ctx: AdapterContext, result: int, outcome: Outcome) -> None:
    raw = _line(0)
    raw["properties"]["result"] = result
    assert _events(raw, ctx)[0].outcome == outcome


def test_a_revocation_naming_no_user_is_invalid(ctx: AdapterContext) -> None:
    raw = _line(0)
    raw["properties"]["targetResources"][0]["type"] = "Group"
    with pytest.raises(InvalidRecord, match="no User with an id"):
        _events(raw, ctx)


def test_an_app_initiated_revocation_names_the_app(ctx: AdapterContext) -> None:
    raw = _line(0)
    raw["properties"]["initiatedBy"] = {"app": {"appId": "a1", "displayName": "Defender XDR automated response"}}
    assert _events(raw, ctx)[0].revocation == Revocation(target="subject", actor="Defender XDR automated response")


@pytest.mark.parametrize("line", LINES)
def test_every_audit_line_is_recognised_as_entra_only(line: bytes) -> None:
    raw = orjson.loads(line)
    assert [name for name, fmt in FORMATS.items() if fmt.matches(raw)] == ["entra"]


@FUZZ
@given(mutated_lines(LINES))
def test_mutated_audit_lines_are_events_skips_or_dead_letters(line: bytes) -> None:
    assert_accounted_for(normalize(line), adapter_crash=False)


@FUZZ
@given(cut_lines(LINES))
def test_truncated_audit_lines_are_events_skips_or_dead_letters(line: bytes) -> None:
    assert_accounted_for(normalize(line), adapter_crash=False)


def test_an_over_long_modified_value_is_cut_not_the_event(hasher) -> None:
    raw = _line(1)
    raw["properties"]["targetResources"][0]["modifiedProperties"].insert(
        0, {"displayName": "DisplayName", "oldValue": None, "newValue": "y" * 10_000})
    result = normalize(orjson.dumps(raw))
    assert result.dead_letter is None
    assert [e.kind for e in result.events] == [EventKind.PRINCIPAL_DISABLED]


# -- end to end: a disabled user's stolen token, and its benign twin --------------------
T0 = 1794214800.0  # 2026-11-09T09:00:00Z
BERLIN = CITIES["DE"][0]
HOME = Place("79.200.1.10", NETWORKS["telekom"], BERLIN)
USER, UPN, APP = "6a1f0d4e-2222-4b2c-9d3e-5f6a7b8c9d0e", "frank@acme.example", "04b07795-8ddb-461a-bbee-02f9e1bf7b46"
SCOPES = ["User.Read"]


def _sign_in() -> dict[str, Any]:
    return emit.entra("uti-f1", T0, "SignInLogs", USER, UPN, APP, "Azure Portal", HOME, "sess-f", "none", SCOPES,
                      {"operatingSystem": "Windows 10"})


def _use(n: int, t: float) -> dict[str, Any]:
    return emit.graph(f"g-f{n}", t, HOME, "GET", "/me", 200, "Mozilla/5.0", APP, USER, "uti-f1", SCOPES, T0)


def _disable(t: float) -> dict[str, Any]:
    return emit.entra_audit("Directory_dis-1", t, "Update user", USER, UPN, "admin@acme.example", [
        {"displayName": "AccountEnabled", "oldValue": "[true]", "newValue": "[false]"}])


def test_token_of_a_disabled_user_accepted_alerts() -> None:
    detected = detect_lines([_sign_in(), _disable(T0 + 300), _use(1, T0 + 900)])
    assert detected.hits == [("post_revocation_use.after_disable", "uti-f1")]
    assert detected.alerts[0]["details"]["revocation_event_id"] == "entra:Directory_dis-1"


def test_token_used_before_the_user_was_disabled_is_benign() -> None:
    detected = detect_lines([_sign_in(), _use(1, T0 + 200), _disable(T0 + 300)])
    assert detected.dead_letters == [] and detected.hits == []


def test_a_row_with_null_or_too_many_targets_is_invalid_not_an_adapter_crash(ctx: AdapterContext) -> None:
    """The bound on ``TargetResources`` once applied to null too: a TypeError out of the
    adapter (found by the mutation test) instead of a validation refusal."""
    from schemas.sources.entra_audit import MAX_TARGETS

    row = _line(3)
    with pytest.raises(InvalidRecord, match="no User with an id"):
        _events({**row, "TargetResources": None}, ctx)
    with pytest.raises(InvalidRecord, match="TargetResources"):
        _events({**row, "TargetResources": row["TargetResources"] * (MAX_TARGETS + 1)}, ctx)
    assert _events({**row, "TargetResources": row["TargetResources"] * MAX_TARGETS}, ctx)
