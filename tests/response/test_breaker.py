"""Breakers: one principal spends only its own budget; the global one still stops a storm."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.cli.main import main
from pipeline.response import breaker as breaker_module
from pipeline.response.breaker import FLAG, PRINCIPALS_FLAG, RULE_ID, UNKNOWN, Breaker, principal_of
from pipeline.store.sqlite import SqliteStore
from schemas.actions import RevocationTarget
from tests.response.conftest import Clock


def admit(breaker: Breaker, clock: Clock, principal: str, n: int = 1) -> list[tuple[bool, str | None]]:
    """``n`` admissions for ``principal``: (allowed, rule id of the breaker alert raised, if any)."""
    results = []
    for i in range(n):
        allowed, doc = breaker.admit(clock.now, "tokenwatch", f"al-{principal}-{i}", principal)
        results.append((allowed, doc["rule"]["id"] if doc else None))
    return results


def test_one_principals_storm_trips_only_that_principal(store: SqliteStore, clock: Clock) -> None:
    breaker = Breaker(store, limit=20, per_principal_limit=5)
    results = admit(breaker, clock, "user:mallory", 21)
    assert results == [(True, None)] * 5 + [(False, RULE_ID)] + [(False, None)] * 15
    assert admit(breaker, clock, "user:bob") == [(True, None)]  # the others' budget is untouched
    assert breaker.state() is None and list(breaker.tripped_principals()) == ["user:mallory"]
    [alert] = store.list_alerts(rule=RULE_ID)
    assert (alert["user"]["id"], alert["details"]["principal"], alert["details"]["scope"]) == (
        "mallory", "user:mallory", "principal")
    assert "tripped for user:mallory" in alert["alert"]["summary"]
    [trip] = [e for e in store.audit_trail() if e.verb == "breaker.trip"]
    assert (trip.alert_id, trip.details["principal"]) == ("al-user:mallory-5", "user:mallory")


def test_without_a_principal_budget_one_user_trips_the_breaker_for_everyone(store: SqliteStore,
                                                                           clock: Clock) -> None:
    """The finding this guards against: the global budget alone is one user's to spend."""
    breaker = Breaker(store, limit=20)
    assert admit(breaker, clock, "user:mallory", 21)[-1] == (False, RULE_ID)
    assert admit(breaker, clock, "user:bob") == [(False, None)] and breaker.state() is not None


def test_the_global_breaker_still_trips_on_many_principals_and_names_the_top_ones(
        store: SqliteStore, clock: Clock) -> None:
    breaker = Breaker(store, limit=20, per_principal_limit=5)
    for n in range(4):
        assert admit(breaker, clock, f"user:u{n}", 5) == [(True, None)] * 5
    assert admit(breaker, clock, "user:bob", 2) == [(False, RULE_ID), (False, None)]
    state = breaker.state()
    assert state is not None and state["count"] == 20
    assert state["top"] == ["user:u0 (5)", "user:u1 (5)", "user:u2 (5)"]
    [alert] = store.list_alerts(rule=RULE_ID)
    assert alert["details"]["scope"] == "global" and alert["user"] == {}
    assert "most by: user:u0 (5), user:u1 (5), user:u2 (5)" in alert["alert"]["summary"]
    assert breaker.tripped_principals() == {}


def test_a_principals_budget_slides_with_the_hour(store: SqliteStore, clock: Clock) -> None:
    breaker = Breaker(store, limit=20, per_principal_limit=5)
    assert admit(breaker, clock, "user:alice", 5) == [(True, None)] * 5
    clock.advance(3599)
    assert admit(breaker, clock, "client:ci") == [(True, None)]
    clock.advance(1)  # alice's first five are an hour old now
    assert admit(breaker, clock, "user:alice", 5) == [(True, None)] * 5
    assert store.list_alerts(rule=RULE_ID) == []


def test_a_principal_trip_survives_a_restart_until_reset_and_a_reset_starts_afresh(
        store: SqliteStore, clock: Clock) -> None:
    service = Breaker(store, limit=20, per_principal_limit=2)
    admit(service, clock, "user:mallory", 3)
    restarted = Breaker(store, limit=20, per_principal_limit=2)
    assert admit(restarted, clock, "user:mallory") == [(False, None)]
    assert admit(restarted, clock, "user:bob") == [(True, None)]
    cli = Breaker(store, limit=20)  # `tokenwatch breaker reset --principal` runs in its own process
    assert cli.reset_principals("ana", clock.now, "user:mallory", "looked at it") == ["user:mallory"]
    assert store.get_flag(PRINCIPALS_FLAG) is None
    # the service's own window was full: the reset gives mallory a fresh budget, no instant re-trip
    assert admit(service, clock, "user:mallory", 3) == [(True, None), (True, None), (False, RULE_ID)]
    [reset] = [e for e in store.audit_trail() if e.verb == "breaker.reset"]
    assert (reset.actor, reset.why, reset.result, reset.details["principal"]) == (
        "ana", "looked at it", "reset", "user:mallory")


def test_reset_by_pattern_and_of_nothing_is_audited(store: SqliteStore, clock: Clock) -> None:
    breaker = Breaker(store, limit=20, per_principal_limit=0)
    for principal in ("user:a", "user:b", "client:ci"):
        admit(breaker, clock, principal)
    assert breaker.reset_principals("ana", clock.now, "user:*") == ["user:a", "user:b"]
    assert list(breaker.tripped_principals()) == ["client:ci"]
    assert breaker.reset_principals("ana", clock.now, "user:nobody") == []
    assert breaker.reset("ana", clock.now) is False  # the global one was never tripped
    results = [(e.details["principal"], e.result) for e in store.audit_trail() if e.verb == "breaker.reset"]
    assert results == [("user:a", "reset"), ("user:b", "reset"), ("user:nobody", "was not tripped"),
                       (None, "was not tripped")]


def test_too_many_tripped_principals_trip_the_global_breaker(store: SqliteStore, clock: Clock,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(breaker_module, "MAX_TRIPPED_PRINCIPALS", 2)
    breaker = Breaker(store, limit=20, per_principal_limit=0)
    admit(breaker, clock, "user:a")
    admit(breaker, clock, "user:b")
    assert store.get_flag(FLAG) is None
    assert admit(breaker, clock, "user:c") == [(False, RULE_ID)]
    assert breaker.state() is not None and len(breaker.tripped_principals()) == 2


@pytest.mark.parametrize(("user", "client", "expected"), [
    ("alice", "portal", "user:alice"), (None, "ci-deployer", "client:ci-deployer"), (None, None, UNKNOWN),
])
def test_whose_budget_an_action_spends(user: str | None, client: str | None, expected: str) -> None:
    assert principal_of(RevocationTarget(kind="session", id="s-1", user_id=user, client_id=client)) == expected


def test_cli_lists_tripped_principals_and_resets_one(tmp_path: Path, clock: Clock,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "tokenwatch.toml"
    config.write_text(f'[store]\npath = "{tmp_path / "tw.db"}"\n', encoding="utf-8")
    store = SqliteStore(tmp_path / "tw.db", clock=clock)
    admit(Breaker(store, limit=20, per_principal_limit=0), clock, "user:mallory")
    store.close()
    assert main(["breaker", "status", "--config", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "breaker closed: automatic revocations run (except for the principals below)"
    assert out[1].startswith("user:mallory TRIPPED at ") and "--principal user:mallory" in out[1]
    argv = ["breaker", "reset", "--principal", "user:mallory", "--actor", "ana", "--config", str(config)]
    assert main(argv) == 0
    assert capsys.readouterr().out == "breaker reset by ana for user:mallory\n"
    assert main(["breaker", "status", "--config", str(config)]) == 0
    assert capsys.readouterr().out == "breaker closed: automatic revocations run\n"
