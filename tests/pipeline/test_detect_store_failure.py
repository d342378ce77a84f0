"""A failing alert store never costs an alert, and never an audit entry.

`detect --store` on a locked or corrupt SQLite file: a clear message, exit 1, and the alerts
file as complete as without --store. `alerts import` that stops part way (a bad line, a
store that fails) still audits what it stored. Twins: a healthy store stores everything.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from pipeline.cli.main import main
from pipeline.store import ingest
from pipeline.store.ingest import AlertFileError, import_alerts
from pipeline.store.sqlite import SqliteStore
from pipeline.synthetic.sample import render, scenarios
from tests.store.helpers import alert_doc

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    path = tmp_path / "sample.jsonl"
    path.write_bytes(render(scenarios()))
    return path


@pytest.fixture
def expected(sample: Path, tmp_path: Path) -> list[bytes]:
    """The alerts file of a run without --store: what every run must still write."""
    out = tmp_path / "plain.jsonl"
    assert main(["detect", "-i", str(sample), "-o", str(out), "--dead-letter", str(tmp_path / "dl0.jsonl")]) == 0
    lines = out.read_bytes().splitlines()
    assert len(lines) > 3
    return lines


def _detect_store(sample: Path, tmp_path: Path, db: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[int, list[bytes]]:
    monkeypatch.setenv("TOKENWATCH_STORE__PATH", str(db))
    monkeypatch.setenv("TOKENWATCH_STORE__BUSY_TIMEOUT_S", "0.2")
    out = tmp_path / "alerts.jsonl"
    code = main(["detect", "-i", str(sample), "-o", str(out), "--dead-letter", str(tmp_path / "dl.jsonl"), "--store"])
    return code, out.read_bytes().splitlines()


def _ids(lines: list[bytes]) -> set[str]:
    return {orjson.loads(line)["alert"]["id"] for line in lines}


def test_a_healthy_store_stores_every_alert(sample, expected, tmp_path, monkeypatch, capsys) -> None:
    db = tmp_path / "alerts.db"
    code, written = _detect_store(sample, tmp_path, db, monkeypatch)
    assert code == 0 and written == expected
    assert f"alerts stored in the sqlite store {db}" in capsys.readouterr().err
    store = SqliteStore(db)
    try:
        assert {a["alert"]["id"] for a in store.list_alerts(limit=1000)} == _ids(expected)
    finally:
        store.close()


def test_a_store_locked_after_the_first_alerts_fails_cleanly_and_the_file_is_complete(
    sample, expected, tmp_path, monkeypatch, capsys
) -> None:
    db = tmp_path / "alerts.db"
    SqliteStore(db).close()
    other = sqlite3.connect(db, isolation_level=None)  # another process's writer
    first_batch: list[str] = []
    real_store_alerts = ingest.store_alerts

    def store_then_lock(store, alerts):
        count = real_store_alerts(store, alerts)
        if not first_batch:
            first_batch.extend(a.alert.id for a in alerts)
            other.execute("BEGIN EXCLUSIVE")
        return count

    monkeypatch.setattr(ingest, "store_alerts", store_then_lock)
    try:
        code, written = _detect_store(sample, tmp_path, db, monkeypatch)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert code == 1 and written == expected
    err = capsys.readouterr().err
    assert (f"tokenwatch: cannot store alerts in the sqlite store {db}: OperationalError: database is locked; "
            f"stored {len(first_batch)} of {len(expected)} alerts. Every alert is in {tmp_path / 'alerts.jsonl'}: "
            "once the store is usable, load them with `tokenwatch alerts import --input FILE`") in err
    assert "Traceback" not in err
    store = SqliteStore(db)
    try:
        assert {a["alert"]["id"] for a in store.list_alerts(limit=1000)} == set(first_batch)
    finally:
        store.close()


def test_a_corrupt_store_fails_cleanly_and_the_file_is_complete(sample, expected, tmp_path, monkeypatch,
                                                                capsys) -> None:
    db = tmp_path / "alerts.db"
    db.write_bytes(b"this is not an SQLite database\n" * 200)
    code, written = _detect_store(sample, tmp_path, db, monkeypatch)
    assert code == 1 and written == expected
    err = capsys.readouterr().err
    assert (f"cannot store alerts in the sqlite store {db}: DatabaseError: file is not a database; "
            f"stored 0 of {len(expected)} alerts") in err


# -- alerts import -----------------------------------------------------------------------

def _docs(n: int) -> list[dict]:
    return [alert_doc(f"a{i:04d}", minute=i) for i in range(n)]


def _bad_line_after(docs: list[dict]):
    yield from docs
    raise AlertFileError("in.jsonl:7: not an alert document (alert.id: Field required)")


def _import_entries(store: SqliteStore) -> list:
    return [e for e in store.audit_trail() if e.verb == "alerts.import"]


def test_an_import_stopped_by_a_bad_line_stores_and_audits_the_lines_before_it() -> None:
    store = SqliteStore(":memory:")
    docs = _docs(ingest.BATCH + 6)  # one full batch, then six in the batch the bad line interrupts
    with pytest.raises(AlertFileError):
        import_alerts(store, _bad_line_after(docs), "ana", "in.jsonl", lambda: NOW)
    assert len(store.list_alerts(limit=10_000)) == len(docs)
    [entry] = _import_entries(store)
    assert (entry.actor, entry.target, entry.result) == ("ana", "in.jsonl", "partial")
    assert entry.details == {"alerts": len(docs), "new": len(docs), "already_present": 0,
                             "error": "AlertFileError: in.jsonl:7: not an alert document (alert.id: Field required)"}


class _FailsOnSecondBatch(SqliteStore):
    calls = 0

    def put_alerts(self, alerts) -> None:
        self.calls += 1
        if self.calls == 2:
            raise sqlite3.OperationalError("database is locked")
        super().put_alerts(alerts)


def test_an_import_stopped_by_the_store_audits_what_was_stored() -> None:
    store = _FailsOnSecondBatch(":memory:")
    with pytest.raises(sqlite3.OperationalError, match="database is locked"):
        import_alerts(store, iter(_docs(ingest.BATCH + 10)), "ana", "in.jsonl", lambda: NOW)
    [entry] = _import_entries(store)
    assert entry.result == "partial" and entry.details["alerts"] == ingest.BATCH
    assert len(store.list_alerts(limit=10_000)) == ingest.BATCH


def test_an_import_whose_store_cannot_even_audit_raises_the_original_error() -> None:
    class Broken(SqliteStore):
        def put_alerts(self, alerts) -> None:
            raise sqlite3.DatabaseError("database disk image is malformed")

        def audit(self, entry) -> None:
            raise sqlite3.DatabaseError("database disk image is malformed (audit)")

    with pytest.raises(sqlite3.DatabaseError, match=r"malformed$"):
        import_alerts(Broken(":memory:"), iter(_docs(3)), "ana", "in.jsonl", lambda: NOW)


def test_a_complete_import_stores_and_audits_once() -> None:
    store = SqliteStore(":memory:")
    count = import_alerts(store, iter(_docs(12)), "ana", "in.jsonl", lambda: NOW)
    assert (count.stored, count.new, count.present) == (12, 12, 0)
    [entry] = _import_entries(store)
    assert (entry.result, entry.details, entry.time) == ("stored", {"alerts": 12, "new": 12, "already_present": 0}, NOW)
    assert len(store.list_alerts(limit=100)) == 12


def test_detect_with_a_store_path_in_a_missing_directory_says_so_and_creates_nothing(
    sample: Path, expected: list[bytes], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mistyped store.path used to create its directories and an empty store."""
    missing = tmp_path / "no-such-dir"
    config = tmp_path / "tokenwatch.toml"
    config.write_text(f'[store]\npath = "{missing / "tw.db"}"\n', encoding="utf-8")
    out = tmp_path / "alerts.jsonl"
    code = main(["detect", "-i", str(sample), "-o", str(out), "--dead-letter", str(tmp_path / "dl.jsonl"),
                 "--config", str(config), "--store"])
    assert code == 1 and out.read_bytes().splitlines() == expected
    [line] = [x for x in capsys.readouterr().err.splitlines() if "store" in x]
    assert f"store.path {missing / 'tw.db'}: directory {missing} does not exist" in line
    assert not missing.exists()
