"""SqliteStore: the shared store contract, plus what only the embedded store promises."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from pipeline.config import Settings
from pipeline.store.base import AlertStore, StoreNotFound, open_store
from pipeline.store.ingest import store_alerts
from pipeline.store.sqlite import SqliteStore
from schemas.actions import AuditEntry
from tests.store.contract import Clock, StoreContract
from tests.store.helpers import action, alert_doc, at


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[SqliteStore]:
    path = ":memory:" if request.param == "memory" else tmp_path / "tw.db"
    s = SqliteStore(path, clock=clock)
    yield s
    s.close()


class TestSqliteContract(StoreContract):
    pass


def test_open_store_defaults_to_sqlite_at_the_configured_path(tmp_path: Path) -> None:
    settings = Settings(store={"path": tmp_path / "alerts.db"})
    store = open_store(settings)
    assert isinstance(store, SqliteStore) and isinstance(store, AlertStore)
    store.close()
    assert (tmp_path / "alerts.db").is_file()


def test_a_store_is_never_created_in_a_missing_directory_nor_by_a_reader(tmp_path: Path) -> None:
    """A mistyped store.path used to create an empty store (and its directories): the
    analyst then saw "no alerts" instead of an error."""
    with pytest.raises(StoreNotFound, match=r"store.path .*/sub/alerts.db: directory .*/sub does not exist"):
        open_store(Settings(store={"path": tmp_path / "sub" / "alerts.db"}))
    with pytest.raises(StoreNotFound, match="no alert store there; pass --config"):
        open_store(Settings(store={"path": tmp_path / "alerts.db"}), create=False)
    assert list(tmp_path.iterdir()) == []


def test_file_store_uses_wal_so_readers_see_a_writers_commits(tmp_path: Path) -> None:
    writer, reader = SqliteStore(tmp_path / "tw.db"), SqliteStore(tmp_path / "tw.db")
    with closing(sqlite3.connect(tmp_path / "tw.db")) as db:  # WAL is a property of the file
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    writer.put_alerts([alert_doc("a1")])
    assert reader.get_alert("a1") is not None
    writer.close()
    reader.close()


def test_pending_actions_survive_a_restart(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "tw.db")
    pending = [action("a1", "fam-1", next_minute=1), action("a1", "fam-2", state="failed", next_minute=2)]
    for a in pending:
        store.put_action(a)
    store.close()  # the process dies here
    reopened = SqliteStore(tmp_path / "tw.db")
    assert reopened.due_actions(at(5)) == pending
    reopened.close()


def test_threads_share_one_store(tmp_path: Path) -> None:
    """The retry job runs in its own thread: concurrent writes and reads neither fail nor get lost."""
    store = SqliteStore(tmp_path / "tw.db")
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                store.put_action(action(f"a{n}", f"fam-{i}", next_minute=i))
                store.audit(AuditEntry(time=at(i), actor=f"t{n}", verb="revoke.attempt", alert_id=f"a{n}",
                                       why="test", result="sent"))
                store.put_alerts([alert_doc(f"t{n}-{i}", i)])
                store.set_flag(f"flag-{n}", str(i))
                store.due_actions(at(i))
        except BaseException as exc:  # noqa: BLE001 -- reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.list_actions(limit=1000)) == 400
    assert len(store.audit_trail()) == 400
    assert len(store.list_alerts(limit=1000)) == 400
    assert [store.get_flag(f"flag-{n}") for n in range(8)] == ["49"] * 8
    store.close()


def test_store_alerts_accepts_models_and_documents_in_batches(tmp_path: Path) -> None:
    from schemas.alerts import Alert

    store = SqliteStore(":memory:")
    docs = [alert_doc(f"a{i}", i) for i in range(1203)]
    models = [Alert.model_validate(d) for d in docs[:3]]
    assert store_alerts(store, models) == 3
    assert store_alerts(store, iter(docs)) == 1203
    assert len(store.list_alerts(limit=5000)) == 1203
    assert store.get_alert("a0") == {**docs[0], "triage": store.get_alert("a0")["triage"]}  # type: ignore[index]  # the alert is stored: a None fails the test just the same


def test_naive_times_are_refused() -> None:
    from datetime import datetime

    store = SqliteStore(":memory:")
    with pytest.raises(ValueError, match="naive"):
        store.due_actions(datetime(2026, 11, 24))
