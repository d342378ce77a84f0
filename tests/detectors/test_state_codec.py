"""State changelog codec: a restored store is the original, field by field, and
detection continued on it raises exactly the alerts the original would have."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from detectors import build_detectors
from detectors.replay import SEEN_REQUEST, SeenRequest
from detectors.state import Observation, ScopeState, StateLimits, StateStore, TokenState, stable_hash
from detectors.state_codec import (
    CodecError,
    Encoder,
    apply_record,
    dirty_records,
    encode,
    parse_key,
    record_key,
    restore,
    snapshot_records,
)
from detectors.tables import PLAIN, Table
from pipeline.runtime.alerting import Alerter
from pipeline.runtime.config import EngineConfig
from pipeline.runtime.engine import Engine
from schemas.alerts import Alert
from schemas.events import Binding, CanonicalEvent, Network
from tests.factories import (
    MUNICH_OTHER_ISP,
    SINGAPORE_VPS,
    T0,
    event,
)

CONFIG = {"scope_escalation": {"learning_period_s": 100}}
POD = Binding(method="pod", value="7d3c1e52-9b1a-4c8e-a0f2-5b6c7d8e9f01")
NODE_IP, POD_IP, OTHER_IP = "10.0.1.7", "10.20.3.41", "10.99.0.5"
FAM = dict(family="fam-1", session="s-1")


def pod_use(t: float, ip: str, kind: str = "used") -> CanonicalEvent:
    ev = event(kind, t, token="sa-tok-1", token_type="service_account", bound=POD, expires_in=3_600 - t,
               subject="system:serviceaccount:shop:checkout", client=None, place=None, source="k8s")
    return ev.model_copy(update={"network": Network(ip=ip)})


def before_handover() -> list[CanonicalEvent]:
    """Grants, rotations, revocations and learned context, all before t=300."""
    return [
        event("issued", 0, token="rt-1", token_type="refresh", expires_in=86_400, scopes=("read", "profile"), **FAM),
        event("issued", 0, token="at-1", scopes=("read", "profile"), expires_in=3_600, **FAM),
        pod_use(0, NODE_IP, "issued"),
        event("used", 10, token="at-1", request_id="r-1", **FAM),
        event("used", 12, token="at-1", status=404, success=False, **FAM),  # failed uses are kept apart
        event("used", 15, token="junk-1", success=False, place=SINGAPORE_VPS),  # only failing: the LRU
        pod_use(20, POD_IP),
        event("refreshed", 60, token="rt-2", token_type="refresh", parent="rt-1", expires_in=86_400,
              scopes=("read", "profile"), **FAM),
        event("issued", 60, token="at-2", scopes=("read",), expires_in=3_600, **FAM),
        event("issued", 100, token="at-3", subject="bob", session="s-2", expires_in=3_600),
        event("issued", 120, token="at-4", subject="carol", session="s-3", expires_in=3_600),
        event("issued", 130, token="at-5", subject="dave", expires_in=3_600),
        event("issued", 140, token="at-6", subject="erin", scopes=("read",), expires_in=3_600),
        event("revoked", 200, token="at-3", subject="bob", revoke="token"),
        event("session_ended", 210, token=None, subject="carol", session="s-3"),
        event("principal_disabled", 220, token=None, subject="dave"),
        event("used", 290, token="at-8", subject="frank", expires_in=600),
    ]


def after_handover() -> list[CanonicalEvent]:
    """Each of these alerts only because of what happened before the handover."""
    return [
        event("used", 305, token="at-1", request_id="r-1", **FAM),  # duplicate request
        event("refreshed", 310, token="rt-3", token_type="refresh", parent="rt-1", place=SINGAPORE_VPS,
              expires_in=86_400, **FAM),  # refresh reuse
        event("used", 320, token="at-3", subject="bob", session="s-2"),  # after revocation
        event("used", 320, token="at-8", subject="frank", place=MUNICH_OTHER_ISP, expires_in=570),  # concurrent
        event("used", 325, token="at-4", subject="carol", session="s-3"),  # after logout
        event("used", 330, token="at-5", subject="dave"),  # after disable
        pod_use(340, OTHER_IP),  # not its pod's address
        event("used", 350, token="at-6", subject="erin", scopes=("read", "write")),  # scope not granted
        event("issued", 360, token="at-7", subject="erin", scopes=("admin",)),  # new privileged scope
        event("refreshed", 370, token="rt-4", token_type="refresh", parent="rt-2", expires_in=86_400,
              scopes=("read", "profile", "write"), **FAM),  # grant widening
        event("used", 380, token="at-2", place=SINGAPORE_VPS, **FAM),  # session travel
        # Far later: expiry forgets tokens and scopes in both stores alike.
        event("used", 9_000, token="late-1", subject="gina", session="s-9"),
        event("used", 200_000, token="late-2", subject="gina", session="s-9"),
    ]


def new_engine(store: StateStore) -> Engine:
    return Engine(build_detectors(CONFIG), store, Alerter(), EngineConfig())


def feed(eng: Engine, events: list[CanonicalEvent]) -> list[Alert]:
    alerts: list[Alert] = []
    for ev in events:
        alerts.extend(eng.submit(ev))
    return alerts + eng.flush()


def dumps(alerts: list[Alert]) -> list[dict[str, Any]]:
    return sorted((a.model_dump(mode="json") for a in alerts), key=lambda d: (d["alert"]["id"]))


def view(store: StateStore) -> dict[str, Any]:
    """Everything a store holds (but metrics), as comparable plain values; wheels as where
    each live key is filed."""

    def obs(o: Observation | None) -> Any:
        return None if o is None else tuple(getattr(o, name) for name in Observation.__slots__)

    def token(t: TokenState) -> Any:
        return tuple(
            [obs(u) for u in getattr(t, name)] if name in ("accepted", "failed") else
            obs(getattr(t, name)) if name in ("issue", "rotation", "revoked") else getattr(t, name)
            for name in TokenState.__slots__
        )

    def scope(s: ScopeState) -> Any:
        return tuple(
            obs(getattr(s, name)) if name in ("revoked", "ended", "disabled") else getattr(s, name)
            for name in ScopeState.__slots__
        )

    def typed(value: Any) -> Any:
        """Values with their types, so a tuple restored as a list would not compare equal."""
        if isinstance(value, dict):
            return ("dict", [(typed(k), typed(v)) for k, v in value.items()])  # order matters: expiry
        if isinstance(value, (list, tuple)):
            return (type(value).__name__, [typed(v) for v in value])
        if isinstance(value, (set, frozenset)):
            return (type(value).__name__, sorted(map(repr, value)))
        if dataclasses.is_dataclass(value) and not isinstance(value, type):  # a table row: its fields, as values
            return (type(value).__name__, [(f.name, typed(getattr(value, f.name))) for f in dataclasses.fields(value)])
        slots = getattr(type(value), "__slots__", None)
        if isinstance(slots, tuple) and slots:  # a plain row class (compiled: no dataclass) or an observation
            return (type(value).__name__, [(name, typed(getattr(value, name))) for name in slots])
        return (type(value).__name__, value)

    def rows(table: Table[Any, Any]) -> list[tuple[Any, Any]]:
        order = table.codec.order
        if order is None:
            return list(table.items())
        return sorted(table.items(), key=lambda row: (order(row[1]), repr(row[0])))

    scope_slots: dict[tuple[str, str], set[int]] = {}
    for slot, entries in store._scope_wheel.items():  # noqa: SLF001 -- store internals the codec restores (typed-state rewrite, issue 15)
        for entry in entries:
            scope_slots.setdefault(entry, set()).add(slot)
    return {
        "tokens": {k: token(t) for k, t in store.tokens.items()},
        "token_filed": {k: k in store._wheel.get(t.wheel_slot, ()) for k, t in store.tokens.items()},  # noqa: SLF001 -- store internals the codec restores (typed-state rewrite, issue 15)
        "unseen_failing": list(store.unseen_failing),  # order matters: the least recent go first
        "families": {k: scope(s) for k, s in store.families.items()},
        "sessions": {k: scope(s) for k, s in store.sessions.items()},
        "subjects": {k: scope(s) for k, s in store.subjects.items()},
        "scope_slots": {
            (name, k): scope_slots.get((name, k))
            for name, table in (("family", store.families), ("session", store.sessions), ("subject", store.subjects))
            for k in table
        },
        # tables are looked up by name (their order is irrelevant; an empty one is no table);
        # inside them order matters: arrival order, or the codec's order (ties: either way)
        "tables": {name: (table.codec.name, typed(dict(rows(table))))
                   for name, table in sorted(store.tables.items()) if len(table)},
    }


def compact(changelog: list[tuple[bytes, bytes | None]]) -> list[tuple[bytes, bytes | None]]:
    """What log compaction keeps: each key's latest record, at that record's place."""
    latest: dict[bytes, bytes | None] = {}
    for key, value in changelog:
        latest.pop(key, None)
        latest[key] = value
    return list(latest.items())


def handed_over() -> tuple[StateStore, StateStore]:
    """The state after the first part, and a copy restored from its changelog records."""
    original = StateStore()
    feed(new_engine(original), before_handover())
    restored = restore(StateStore(), snapshot_records(original))
    return original, restored


# -- round trip ----------------------------------------------------------------------------
def test_restored_store_equals_the_original_field_by_field() -> None:
    original, restored = handed_over()
    assert {("replay", "requests"), ("replay", "pods"), ("geo_divergence", "sessions"),
            ("scope_escalation", "subjects")} <= {name for name, table in original.tables.items() if len(table)}
    assert original.tokens["rt-1"].rotation is not None and original.tokens["at-3"].revoked is not None
    assert original.tokens["at-1"].failed and list(original.unseen_failing) == ["junk-1"]
    assert view(restored) == view(original)


def test_continuing_on_the_restored_store_gives_the_same_alerts() -> None:
    original, restored = handed_over()
    events = after_handover()  # one list: event ids are part of the alerts
    expected = feed(new_engine(original), events)
    got = feed(new_engine(restored), events)
    assert dumps(got) == dumps(expected)
    assert view(restored) == view(original)  # and the same state afterwards, expiry included
    missing = {
        "replay.refresh_reuse", "replay.duplicate_request", "replay.concurrent_use", "replay.binding_mismatch",
        "post_revocation_use.after_revocation", "post_revocation_use.after_disable",
        "scope_escalation.scope_not_granted", "scope_escalation.new_privileged_scope",
        "scope_escalation.grant_widening", "geo_divergence.impossible_travel",
    } - {a.rule.id for a in expected}
    assert not missing, "the scenario should exercise every kind of handed-over state"
    # Without the handed-over state none of that history is known.
    amnesiac = {a.rule.id for a in feed(new_engine(StateStore()), events)}
    assert "replay.refresh_reuse" not in amnesiac and "replay.duplicate_request" not in amnesiac


def test_incremental_checkpoints_replayed_in_order_restore_the_same_state() -> None:
    """Checkpoint after every event, as a service would; replaying all of those records
    (several versions per key, tombstones among them) gives the final state."""
    original = StateStore(track_changes=True)
    eng = new_engine(original)
    changelog = snapshot_records(original)
    original.take_dirty()
    for ev in before_handover() + after_handover():
        eng.submit(ev)
        changelog += dirty_records(original)
    eng.flush()
    changelog += dirty_records(original)
    assert any(value is None for _, value in changelog), "expiry should have written tombstones"
    compacted = compact(changelog)
    assert view(restore(StateStore(), changelog)) == view(original)
    assert view(restore(StateStore(), compacted)) == view(original)


# -- tombstones and dirty keys -----------------------------------------------------------
def test_tombstones_delete_and_absent_keys_encode_as_tombstones() -> None:
    original, restored = handed_over()
    for key in (("t", "at-1"), ("f", "fam-1"), ("s", "s-1"), ("u", "alice")):
        assert encode(original, key) is not None
        apply_record(restored, record_key(key), None)
    assert "at-1" not in restored.tokens and "fam-1" not in restored.families
    assert "s-1" not in restored.sessions and "alice" not in restored.subjects
    assert encode(original, ("t", "never-seen")) is None and encode(original, ("f", "nope")) is None


def test_expired_tokens_are_dirty_and_encode_as_tombstones() -> None:
    store = StateStore(track_changes=True)
    store.apply(event("issued", 0, token="at-1", session="s-1", expires_in=300))
    store.take_dirty()
    assert store.expire(T0.timestamp() + 300 + 3_700) == 1
    dirty = store.take_dirty()
    assert ("t", "at-1") in dirty
    assert dict(Encoder(store).records(dirty))[b"t:at-1"] is None


def test_dirty_tracking_reports_exactly_the_changed_keys() -> None:
    store = StateStore(track_changes=True)
    store.apply(event("issued", 0, token="rt-1", token_type="refresh", family="fam", session="s", scopes=("a",)))
    assert store.take_dirty() == {("t", "rt-1"), ("f", "fam"), ("s", "s"), ("u", "alice")}
    assert store.take_dirty() == set()
    store.apply(event("refreshed", 60, token="rt-2", token_type="refresh", parent="rt-1", family="fam", session="s"))
    assert store.take_dirty() == {("t", "rt-2"), ("t", "rt-1"), ("f", "fam"), ("s", "s"), ("u", "alice")}
    store.apply(event("principal_disabled", 70, token=None, subject="bob"))
    store.apply(event("revoked", 80, token=None, subject="carol", session="s-2", revoke="session", success=False))
    assert store.take_dirty() == {("u", "bob")}  # a failed revocation changes nothing


def test_without_tracking_changed_keys_are_dropped_at_expiry() -> None:
    """A batch run never takes them: they must not pile up (deleted ids would leak)."""
    store = StateStore()
    store.apply(event("issued", 0, token="at-1", session="s-1", expires_in=300))
    store.expire(T0.timestamp() + 10)
    assert not store._dirty_tokens and not any(store._dirty_scopes.values())  # noqa: SLF001 -- store internals the codec restores (typed-state rewrite, issue 15)
    with pytest.raises(RuntimeError):
        store.take_dirty()


def test_a_use_writes_the_rows_it_changed_in_each_detector_table() -> None:
    eng = new_engine(StateStore(track_changes=True))
    dirty_records(eng.state)
    feed(eng, [event("used", 0, token="at-1", session="s-1", request_id="r-1", scopes=("read",))])
    written = {key.rsplit(b"\x1f", 1)[0] if key.startswith(b"d:") else key for key, _ in dirty_records(eng.state)}
    assert written == {
        b"t:at-1", b"s:s-1", b"u:alice", b"d:replay\x1frequests",
        b"d:geo_divergence\x1fsessions", b"d:scope_escalation\x1fsubjects", b"d:scope_escalation\x1fclients",
        b"d:scope_escalation\x1fbookkeeping",
    }
    assert dirty_records(eng.state) == []


# -- encoding details ---------------------------------------------------------------------
def test_records_are_plain_json_with_readable_keys() -> None:
    original, _ = handed_over()
    records = dict(snapshot_records(original))
    assert {b"t:rt-1", b"f:fam-1", b"s:s-1", b"u:alice", b'd:geo_divergence\x1fsessions\x1f"s-1"'} <= set(records)
    assert any(key.startswith(b"d:replay\x1frequests\x1f") for key in records)
    for value in records.values():
        assert isinstance(orjson.loads(value), list)
    assert parse_key(b"t:tok:with:colons") == ("t", "tok:with:colons")


def test_unknown_codecs_and_mismatched_tables_are_refused() -> None:
    row = b"d:replay\x1frequests\x1f1"
    with pytest.raises(CodecError, match="no codec named 'os.system'"):
        apply_record(StateStore(), row, orjson.dumps([2, "os.system", ["echo"]]))
    store = StateStore()
    store.table("replay", "requests", PLAIN)  # the same table holding other values
    with pytest.raises(CodecError, match="holds 'plain' values"):
        apply_record(store, row, orjson.dumps([2, "replay.request", [1.0, "ev-1", "okta"]]))
    with pytest.raises(CodecError):  # a value its codec cannot read
        apply_record(StateStore(), row, orjson.dumps([2, "replay.request", [1.0, 2, "okta"]]))


@pytest.mark.parametrize("value", [b"not json", b"{}", b"[99]", b'[2, "replay.request"]', b"[]"])
def test_corrupt_records_raise_a_codec_error(value: bytes) -> None:
    for key in (b"t:at-1", b"f:fam", b"d:replay\x1frequests\x1f1"):
        with pytest.raises(CodecError):
            apply_record(StateStore(), key, value)
    with pytest.raises(CodecError):
        parse_key(b"x:whatever")


def _requests_store(track: bool = True) -> StateStore:
    store = StateStore(track_changes=track)
    requests = store.table("replay", "requests", SEEN_REQUEST)
    for i in range(1000):
        requests.put(stable_hash("at-1", f"r-{i}"), SeenRequest(float(i), f"ev-{i}", "okta"))
    return store


def test_a_checkpoint_writes_only_the_rows_that_changed() -> None:
    store = _requests_store()
    assert len(dirty_records(store)) == 1000
    requests = store.table("replay", "requests", SEEN_REQUEST)
    requests.put(stable_hash("at-1", "r-new"), SeenRequest(2000.0, "ev-new", "okta"))
    requests.pop(stable_hash("at-1", "r-0"))
    second = dirty_records(store)
    gone = b"d:replay\x1frequests\x1f" + orjson.dumps(stable_hash("at-1", "r-0"))
    assert len(second) == 2 and (gone, None) in second
    assert dirty_records(store) == []  # nothing changed since


def _encoded(requests: Table[int, SeenRequest]) -> list[tuple[int, Any]]:
    """The rows in order, each as the changelog writes it (a ``SeenRequest`` has no ``==``)."""
    return [(key, SEEN_REQUEST.encode(row)) for key, row in requests.items()]


def test_rows_restore_in_the_order_last_written_also_after_compaction() -> None:
    """Time windows and LRU bounds stop at the first recent row: a restored table must keep
    the order rows were last written in, whichever checkpoint wrote them."""
    store = _requests_store()
    changelog = dirty_records(store)
    requests = store.table("replay", "requests", SEEN_REQUEST)
    for i in range(0, 500):
        requests.pop(stable_hash("at-1", f"r-{i}"))
    requests.put_last(stable_hash("at-1", "r-700"), SeenRequest(5000.0, "ev-x", "okta"))  # moved last
    requests.put(7, SeenRequest(5001.0, "ev-y", "okta"))
    changelog += dirty_records(store)
    for records in (changelog, compact(changelog)):
        restored = restore(StateStore(track_changes=True), records)
        again = restored.table("replay", "requests", SEEN_REQUEST)
        assert _encoded(again) == _encoded(requests)
        # The restored store knows nothing changed yet: deleting a row writes its tombstone only.
        again.pop(7)
        assert dirty_records(restored) == [(b"d:replay\x1frequests\x1f7", None)]


def test_detector_namespaces_of_the_earlier_format_are_tombstoned_at_the_next_checkpoint() -> None:
    """Records of the earlier per-namespace format (whole ``d:<detector>``, ``[1, ...]`` rows
    and table markers) are not read: the next checkpoint deletes them, so compaction drops them."""
    legacy = [
        (b"d:replay", orjson.dumps([1, {"d": {"next_sweep": 3.0}}])),
        (b"d:replay\x1frequests", orjson.dumps([1, {"d": {}}])),
        (b"d:replay\x1frequests\x1f5", orjson.dumps([1, {"T": [1.0, "e", "s"]}])),
        (b"d:gone\x1fx\x1f1", orjson.dumps([1, 1.0])),
        (b"d:gone\x1fx\x1f1", None),  # already deleted in the topic: nothing to do
    ]
    restored = restore(StateStore(track_changes=True), legacy)
    assert all(len(table) == 0 for table in restored.tables.values())
    assert dirty_records(restored) == [(key, None) for key, _ in legacy[:3]]
    assert dirty_records(restored) == []


# -- use history ----------------------------------------------------------------------------
def test_the_unseen_failing_lru_is_restored_in_order_and_evicts_alike() -> None:
    """Checkpoints while a flood of made-up tokens runs through a small LRU: the restored
    store holds the same tokens in the same order, and the next one evicts the same token."""
    limits = StateLimits(max_unseen_failing_tokens=3)
    original = StateStore(limits, track_changes=True)
    changelog: list[tuple[bytes, bytes | None]] = []
    for i in range(6):
        original.apply(event("used", i, token=f"junk-{i}", success=False))
        changelog += dirty_records(original)
    original.apply(event("used", 6, token="junk-4", success=False))  # the most recent again
    changelog += dirty_records(original)
    restored = restore(StateStore(limits), changelog)
    assert list(restored.unseen_failing) == list(original.unseen_failing) == ["junk-3", "junk-5", "junk-4"]
    assert view(restored) == view(original)
    newest = event("used", 7, token="junk-7", success=False)
    for store in (original, restored):
        store.apply(newest)
    assert view(restored) == view(original) and "junk-3" not in restored.tokens


def test_a_token_record_of_the_one_list_layout_is_split_into_accepted_and_failed() -> None:
    store = StateStore()
    store.apply(event("issued", 0, token="at-1"))
    store.apply(event("used", 10, token="at-1"))
    store.apply(event("used", 20, token="at-1", success=False))
    record = orjson.loads(encode(store, ("t", "at-1")) or b"")
    accepted, failed = record[13], record.pop()  # the earlier layout: one list, no last field
    record[13] = sorted(accepted + failed, key=lambda obs: obs[0])
    token = restore(StateStore(), [(b"t:at-1", orjson.dumps(record))]).tokens["at-1"]
    assert [u.event_id for u in token.accepted] == [u.event_id for u in store.tokens["at-1"].accepted]
    assert [u.event_id for u in token.failed] == [u.event_id for u in store.tokens["at-1"].failed]
