"""Lineage state: what it records, and that it forgets, so memory stays bounded."""

from __future__ import annotations

import hashlib

from detectors.state import Observation, StateLimits, StateStore, network_facts, stable_hash
from schemas.events import Network
from tests.factories import BERLIN_HOME, BERLIN_MOBILE, T0, Place, event


def test_issue_use_and_rotation_are_recorded() -> None:
    store = StateStore()
    store.apply(event("issued", 0, token="rt-1", token_type="refresh", family="fam", session="s", scopes=("a",)))
    store.apply(event("refreshed", 60, token="rt-2", token_type="refresh", parent="rt-1", family="fam", session="s"))
    store.apply(event("used", 70, token="at-1", family="fam", session="s", scopes=("a",)))
    assert store.tokens["rt-1"].rotation is not None and store.tokens["rt-1"].rotation.time == T0.timestamp() + 60
    assert store.tokens["rt-1"].scopes == frozenset({"a"}) and store.tokens["rt-1"].issue is not None
    assert store.families["fam"].scopes == frozenset({"a"})
    assert set(store.sessions["s"].tokens or ()) == {"rt-1", "rt-2", "at-1"}
    assert [u.event_id for u in store.tokens["at-1"].accepted] != []


def test_failed_redemption_does_not_count_as_rotation() -> None:
    store = StateStore()
    store.apply(event("refreshed", 60, token="rt-2", token_type="refresh", parent="rt-1", success=False))
    assert store.tokens["rt-1"].rotation is None


def test_same_context_uses_keep_first_and_latest_only() -> None:
    store = StateStore(StateLimits(recent_uses=4))
    for t in range(10):
        store.apply(event("used", t, token="at-1", place=BERLIN_HOME))
    store.apply(event("used", 20, token="at-1", place=BERLIN_MOBILE))
    times = [u.time - T0.timestamp() for u in store.tokens["at-1"].accepted]
    assert times == [0, 9, 20]


def test_revocations_keep_the_earliest_time() -> None:
    store = StateStore()
    store.apply(event("revoked", 50, token="at-1", revoke="token"))
    store.apply(event("revoked", 40, token="at-1", revoke="token"))
    store.apply(event("revoked", 30, token=None, session="s-1", revoke="session"))
    assert store.tokens["at-1"].revoked.time == T0.timestamp() + 40
    assert store.sessions["s-1"].revoked.time == T0.timestamp() + 30


def test_expired_tokens_are_forgotten_after_retention() -> None:
    limits = StateLimits(expired_retention_s=600, idle_ttl_s=86_400)
    store = StateStore(limits)
    store.apply(event("issued", 0, token="at-1", expires_in=300))
    assert store.expire(T0.timestamp() + 300 + 590) == 0
    assert store.expire(T0.timestamp() + 300 + 700) == 1
    assert "at-1" not in store.tokens


def test_idle_tokens_without_expiry_are_forgotten_and_activity_extends_them() -> None:
    store = StateStore(StateLimits(idle_ttl_s=3600))
    store.apply(event("used", 0, token="opaque", expires_in=None))
    store.apply(event("used", 3000, token="opaque", expires_in=None))
    assert store.expire(T0.timestamp() + 3700) == 0  # last seen at 3000
    assert store.expire(T0.timestamp() + 6700) == 1


def test_revocation_record_outlives_its_last_token_by_the_retention() -> None:
    store = StateStore(StateLimits(expired_retention_s=60, revocation_retention_s=3600))
    store.apply(event("issued", 0, token="at-1", family="fam", expires_in=300))
    store.apply(event("revoked", 10, token="at-1", family="fam", revoke="family"))
    store.expire(T0.timestamp() + 1000)
    assert "at-1" not in store.tokens and "fam" in store.families
    store.expire(T0.timestamp() + 3600 + 1100)
    assert "fam" not in store.families


def test_memory_stays_bounded_on_an_endless_stream() -> None:
    """Two days of a new token every 10 s: tracked tokens plateau at ~ retention / 10 s."""
    store = StateStore(StateLimits(expired_retention_s=600))
    sizes = []
    for i in range(2 * 86_400 // 10):
        t = i * 10
        store.apply(event("issued", t, token=f"at-{i}", family=f"f-{i}", session=f"s-{i}", expires_in=300))
        store.apply(event("used", t + 5, token=f"at-{i}", session=f"s-{i}"))
        if i % 60 == 0:
            store.expire(T0.timestamp() + t)
            sizes.append((len(store.tokens), len(store.families), len(store.sessions)))
    assert max(max(s) for s in sizes[-100:]) <= 200  # (300 s life + 600 s retention + wheel) / 10 s, x2
    assert max(sizes[-100:]) == max(sizes[100:200])  # a plateau, not growth


def test_failed_revocation_logout_and_disable_change_nothing() -> None:
    store = StateStore()
    store.apply(event("revoked", 10, token="at-1", revoke="token", success=False))
    store.apply(event("session_ended", 10, session="s-1", success=False))
    store.apply(event("principal_disabled", 10, success=False))
    assert "at-1" not in store.tokens and store.sessions == {} and store.subjects == {}


def test_stable_hash_is_the_same_in_another_process() -> None:
    import subprocess
    import sys

    from detectors.state import stable_hash

    code = "from detectors.state import stable_hash; print(stable_hash('at-1', 'req-9'))"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "PYTHONPATH": "."})
    assert int(other.stdout) == stable_hash("at-1", "req-9")


def test_stable_hash_is_blake2b_of_the_parts_joined() -> None:
    """Changelog keys and the engine's dedup window are made of it: one id or several, the
    value never changes between versions."""
    def blake(text: str) -> int:
        return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")

    assert stable_hash("ev-1") == blake("ev-1")
    assert stable_hash("at-1", "req-9") == blake("at-1\x1freq-9")
    assert stable_hash() == blake("")


def test_observations_read_each_network_object_once_and_never_another() -> None:
    """Observations take what they record of a network from ``network_facts``, read once per
    ``Network`` object: the same network object, an equal copy or another network each give
    what that network says, also once the cache was cleared for being full."""
    ev = event("used", 0, token="at-1", user_agent="Mozilla/5.0 (Windows NT 10.0) Firefox/120.0")
    ev = ev.model_copy(update={"network": ev.network.model_copy(update={"device_id": "d-1"})})
    first = Observation(ev)
    assert (first.ip, first.net, first.agent, first.device, first.country, first.lat) == (
        "79.200.1.10", "deutsche telekom ag", "Firefox on Windows", "d-1", "DE", 52.52)
    assert Observation(ev) == first == Observation(ev.model_copy(update={"network": ev.network.model_copy()}))
    moved = ev.model_copy(update={"network": ev.network.model_copy(
        update={"asn": 6805, "as_org": "Telefonica Germany", "egress": "corp", "geo": None, "device_id": None})})
    other = Observation(moved)
    assert (other.asn, other.net, other.egress, other.country, other.lat, other.device) == (
        6805, "telefonica germany", "corp", None, None, None)
    for i in range(20_000):  # more networks than are kept: the cache is cleared on the way
        network_facts(Network(ip=f"10.{i // 250}.{i % 250}.1", asn=i + 1))
    assert Observation(ev) == first and Observation(moved) == other


def test_a_network_with_an_attackers_long_user_agent_is_read_but_never_kept() -> None:
    """Facts of a network are kept per object, but not of one whose user agent or device id
    an attacker made long: 16,384 of them would pin ~10 KB each."""
    short = Network(ip="10.0.0.1", user_agent="Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0")
    assert network_facts(short) is network_facts(short)
    for long in (Network(ip="10.0.0.2", user_agent="Mozilla/5.0 " + "A" * 2000),
                 Network(ip="10.0.0.3", user_agent="curl/8.0", device_id="d" * 300)):
        facts = network_facts(long)
        assert facts is not network_facts(long) and facts.network is long and facts.ip == long.ip
    assert network_facts(Network(ip="10.0.0.2", user_agent="Mozilla/5.0 " + "A" * 2000)).agent == network_facts(
        Network(ip="10.0.0.4", user_agent="Mozilla/5.0 " + "A" * 2000)).agent


# -- use history under flooding --------------------------------------------------------------
def _thief_address(i: int) -> Place:
    return Place(f"84.150.2.{i % 250 + 1}", "DE", "Munich", 48.14, 11.58, 6805, "Telefonica Germany")


def test_failures_cannot_push_accepted_uses_out_of_the_history() -> None:
    store = StateStore(StateLimits(recent_uses=4, recent_failures=2))
    store.apply(event("issued", 0, token="at-1"))
    store.apply(event("used", 10, token="at-1"))
    for i in range(50):
        store.apply(event("used", 11 + i * 0.1, token="at-1", place=_thief_address(i), success=False, status=404))
    token = store.tokens["at-1"]
    assert [u.time - T0.timestamp() for u in token.accepted] == [10]
    assert [round(u.time - T0.timestamp(), 1) for u in token.failed] == [15.8, 15.9]  # the two latest


def test_a_token_that_never_fails_holds_no_failure_list() -> None:
    store = StateStore()
    store.apply(event("issued", 0, token="at-1"))
    store.apply(event("used", 10, token="at-1"))
    assert store.tokens["at-1"].failed == () and store.tokens["at-1"].issue is not None


def test_failing_unseen_tokens_are_kept_in_a_bounded_lru_without_their_claims() -> None:
    store = StateStore(StateLimits(max_unseen_failing_tokens=3))
    for i in range(5):
        store.apply(event("used", i, token=f"junk-{i}", session=f"s-{i}", success=False))
    store.apply(event("used", 5, token="junk-2", success=False))  # touched again: now the most recent
    assert list(store.unseen_failing) == ["junk-3", "junk-4", "junk-2"]
    assert set(store.tokens) == {"junk-2", "junk-3", "junk-4"}
    # What a failing presenter claims (subject, session) is not kept, nor linked.
    assert store.sessions == {} and store.subjects == {}
    assert store.tokens["junk-2"].subject_id is None and len(store.tokens["junk-2"].failed) == 2


def test_a_failing_unseen_token_is_promoted_by_any_other_event_and_keeps_its_failure() -> None:
    store = StateStore(StateLimits(max_unseen_failing_tokens=1))
    store.apply(event("used", 0, token="at-1", success=False))
    store.apply(event("used", 30, token="at-1", session="s-1"))
    assert store.unseen_failing == {} and store.sessions["s-1"].tokens == ["at-1"]
    token = store.tokens["at-1"]
    assert [u.time - T0.timestamp() for u in token.failed] == [0]
    assert [u.time - T0.timestamp() for u in token.accepted] == [30]
    store.apply(event("used", 40, token="junk", success=False))  # the LRU's one place: at-1 is out of it
    assert set(store.tokens) == {"at-1", "junk"}
    assert store.expire(T0.timestamp() + 30 + 86_400 + 120) == 2  # promoted: expires like any token


def test_a_failed_use_of_a_known_token_stays_with_it() -> None:
    store = StateStore(StateLimits(max_unseen_failing_tokens=0))
    store.apply(event("revoked", 0, token="at-1", revoke="token"))
    store.apply(event("used", 10, token="at-1", success=False))
    assert [u.time - T0.timestamp() for u in store.tokens["at-1"].failed] == [10]
    store.apply(event("used", 10, token="junk", success=False))
    assert "junk" not in store.tokens  # a zero-size LRU keeps nothing of unseen tokens


def test_failing_unseen_tokens_are_forgotten_when_idle() -> None:
    store = StateStore(StateLimits(idle_ttl_s=3600))
    store.apply(event("used", 0, token="junk-1", success=False))
    store.apply(event("used", 3000, token="junk-2", success=False))
    assert store.expire(T0.timestamp() + 3700) == 1
    assert list(store.unseen_failing) == ["junk-2"] and set(store.tokens) == {"junk-2"}


def test_clear_forgets_everything_held_and_keeps_the_limits_and_change_tracking() -> None:
    limits = StateLimits(recent_uses=2)
    store = StateStore(limits, track_changes=True)
    store.apply(event("issued", 0, token="rt-1", token_type="refresh", family="fam", session="s", subject="u"))
    store.apply(event("revoked", 10, token=None, session="s", revoke="session"))
    assert store.tokens and store.families and store.sessions
    store.clear()
    assert (store.tokens, store.families, store.sessions, store.subjects, store.tables) == ({}, {}, {}, {}, {})
    assert store.take_dirty() == set()  # what the restored base holds is not a change
    assert store.limits is limits and store.track_changes
    store.apply(event("used", 20, token="at-1"))
    assert set(store.tokens) == {"at-1"} and store.expire(T0.timestamp() + 10 * 86_400) == 1
