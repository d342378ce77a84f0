"""Each format's ``match_keys`` is a necessary condition of its ``matches``, so detecting a
line's format by asking only the formats whose keys it has gives the answer asking every
format gives: the same format, or the same refusal (unknown or ambiguous)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.sources import FORMATS, UnknownFormat, detect_format, parse_text_record
from schemas.sources.cloudtrail import INSIGHT
from schemas.sources.entra_audit import CATEGORY as AUDIT_CATEGORY
from schemas.sources.entra_shapes import CATEGORY_KINDS, OTHER_FORMAT_CATEGORIES, TABLE_CATEGORIES
from schemas.sources.k8s_aks import CATEGORIES as AKS_CATEGORIES
from schemas.sources.k8s_gke import AUDIT_LOG_TYPE
from schemas.sources.keycloak_text import LOGGER_KEYS
from tests.fuzzing import FUZZ, ORJSON_VALUES

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "formats"
BUNDLED = Path(__file__).resolve().parents[2] / "pipeline" / "data" / "sample.jsonl"
_TIME = "2026-11-24T09:00:00Z"

SHAPES: dict[str, list[dict[str, Any]]] = {
    "canonical": [{"canonical_version": 1}],
    "gateway": [{"client_ip": "192.0.2.1", "status": 200, "jwt": {}}, {"client_ip": "192.0.2.1", "status": 200, "request_id": "r"}],
    "keycloak": [{"realmId": "main", "type": "LOGIN"}, {"operationType": "DELETE", "resourcePath": "users/u"},
                 {"operationType": "DELETE", "authDetails": {}},
                 {"message": "type=LOGIN", "loggerName": "org.keycloak.events"}, {"message": "x", "log.logger": "o.k.events"}],
    "okta": [{"eventType": "user.session.start", "published": _TIME}],
    "entra": [{"TimeGenerated": _TIME, "Type": "SigninLogs"}, {"TimeGenerated": _TIME, "Type": AUDIT_CATEGORY},
              {"TimeGenerated": _TIME, "ActivityDisplayName": "x", "TargetResources": []},
              {"TimeGenerated": _TIME, "UniqueTokenIdentifier": "u"},
              {"category": "SignInLogs", "properties": {}, "operationName": "Sign-in activity"}],
    "graph": [{"category": "MicrosoftGraphActivityLogs", "properties": {}},
              {"TimeGenerated": _TIME, "Type": "MicrosoftGraphActivityLogs"},
              {"TimeGenerated": _TIME, "SignInActivityId": "s"}, {"TimeGenerated": _TIME, "RequestUri": "/me"}],
    "cloudtrail": [{"eventSource": "sts.amazonaws.com", "eventName": "AssumeRole"}, {"Records": []}, {"eventType": INSIGHT}],
    "k8s": [{"kind": "Event", "apiVersion": "audit.k8s.io/v1"}],
    "aks": [{"category": "kube-audit", "properties": {}}, {"Category": "kube-audit", "log_s": "{}"},
            {"AuditId": "a", "Stage": "ResponseComplete", "TimeGenerated": _TIME}],
    "gke": [{"protoPayload": {"@type": AUDIT_LOG_TYPE}}],
}
"""Each way a format's ``matches`` can say yes, with as few keys as it takes: leaving a key
out of ``match_keys`` leaves one of these without any of its format's match keys."""


def _records() -> list[dict[str, Any]]:
    """Every sample record (JSON lines, Keycloak's text lines read as records, the records
    inside envelopes, which are detected one by one) and every shape."""
    found: list[dict[str, Any]] = [raw for shapes in SHAPES.values() for raw in shapes]
    for sample in [*sorted(SAMPLES.iterdir()), BUNDLED]:
        for line in sample.read_bytes().splitlines():
            raw = orjson.loads(line) if line.startswith(b"{") else parse_text_record(line)
            if isinstance(raw, dict):
                found.append(raw)
                found.extend(entry for key in ("records", "items", "Records") if isinstance(raw.get(key), list)
                             for entry in raw[key] if isinstance(entry, dict))
    return found


RECORDS = _records()

KEYS = sorted({
    *(key for fmt in FORMATS.values() for key in fmt.match_keys), *LOGGER_KEYS,
    # every other key a ``matches`` reads
    "status", "jwt", "request_id", "type", "resourcePath", "authDetails", "message", "eventType", "Type",
    "UniqueTokenIdentifier", "SignInActivityId", "RequestUri", "ActivityDisplayName", "TargetResources",
    "properties", "operationName", "log_s", "Stage", "eventName", "kind", "hello",
})
"""Top-level keys generated records are made of."""

_NAMES = [INSIGHT, AUDIT_CATEGORY, AUDIT_LOG_TYPE, *CATEGORY_KINDS, *OTHER_FORMAT_CATEGORIES, *TABLE_CATEGORIES,
          *AKS_CATEGORIES, "Event", "EventList", "audit.k8s.io/v1", "v1", "org.keycloak.events", "o.k.events",
          "type=LOGIN", "x"]
VALUES = st.one_of(
    st.sampled_from(_NAMES), st.builds(lambda t: {"@type": t}, st.sampled_from(_NAMES)),
    st.lists(st.sampled_from(_NAMES), max_size=2), st.dictionaries(st.sampled_from(_NAMES), ORJSON_VALUES, max_size=2),
    ORJSON_VALUES,
)


def _reference(raw: dict[str, Any]) -> str:
    """What asking every format says: its name, or the refusal's words."""
    found = [fmt for fmt in FORMATS.values() if fmt.matches(raw)]
    if len(found) == 1:
        return found[0].name
    if not found:
        keys = ", ".join(sorted(str(k) for k in list(raw)[:8]))
        return f"unknown format: no adapter matches keys [{keys}]"
    return f"ambiguous format: matches {', '.join(fmt.name for fmt in found)}"


def _detected(raw: dict[str, Any]) -> str:
    try:
        return detect_format(raw).name
    except UnknownFormat as exc:
        return exc.reason


def _assert_necessary(raw: dict[str, Any]) -> None:
    for fmt in FORMATS.values():
        if fmt.matches(raw):
            assert not fmt.match_keys.isdisjoint(raw), (fmt.name, sorted(raw))
    assert _detected(raw) == _reference(raw)


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    """A sample record with keys dropped, overwritten or added, or merged with another's; or a
    record made of the keys the ``matches`` tests read."""
    if draw(st.booleans()):
        return draw(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6))
    raw = dict(draw(st.sampled_from(RECORDS)))
    if draw(st.booleans()):
        raw.update(draw(st.sampled_from(RECORDS)))
    for key in draw(st.lists(st.sampled_from(sorted(raw) or ["hello"]), max_size=4)):
        raw.pop(key, None)
    raw.update(draw(st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=3)))
    return raw


def test_every_format_declares_match_keys() -> None:
    for fmt in FORMATS.values():
        assert fmt.match_keys and all(isinstance(key, str) for key in fmt.match_keys), fmt.name


@pytest.mark.parametrize("index", range(len(RECORDS)))
def test_match_keys_are_necessary_on_sample_records(index: int) -> None:
    raw = RECORDS[index]
    _assert_necessary(raw)
    for fmt in FORMATS.values():  # without its match keys, no sample record is its format's
        if fmt.matches(raw):
            assert not fmt.matches({k: v for k, v in raw.items() if k not in fmt.match_keys}), fmt.name


def test_sample_records_are_detected() -> None:
    assert len(RECORDS) >= 100
    assert {_detected(raw) for raw in RECORDS} >= set(FORMATS)


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_shape_is_its_format(name: str) -> None:
    assert SHAPES.keys() == FORMATS.keys()
    assert [_detected(raw) for raw in SHAPES[name]] == [name] * len(SHAPES[name])


@FUZZ
@given(records())
def test_match_keys_are_necessary_on_generated_records(raw: dict[str, Any]) -> None:
    _assert_necessary(raw)


def test_ambiguous_and_unknown_lines_are_still_refused() -> None:
    keycloak, okta = (next(r for r in RECORDS if FORMATS[name].matches(r)) for name in ("keycloak", "okta"))
    with pytest.raises(UnknownFormat, match="ambiguous format: matches keycloak, okta"):
        detect_format({**keycloak, **okta})
    with pytest.raises(UnknownFormat, match="no adapter matches keys"):
        detect_format({"status": 200, "jwt": {}})  # gateway's keys but client_ip
