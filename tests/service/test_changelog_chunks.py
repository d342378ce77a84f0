"""The state changelog as batches (pipeline/service/changelog.py): a checkpoint writes a few
compressed chunks, a base now and then retires what came before, and a restore from the
(compacted) topic gives back exactly the store that wrote it."""

from __future__ import annotations

import pytest

from detectors.state import StateStore
from detectors.state_codec import CodecError, record_key, snapshot_records
from pipeline.service import changelog
from pipeline.service.changelog import ChangelogLog, ChangelogReader, decode_chunk
from tests.detectors.test_state_codec import after_handover, before_handover, compact, new_engine, view

Changelog = list[tuple[bytes, bytes | None]]


def _run_with_checkpoints(store: StateStore, log: ChangelogLog, every: int = 3) -> Changelog:
    """Feed the codec test's scenario, checkpointing every ``every`` events as the service does
    (each checkpoint committed before the next)."""
    written: Changelog = []
    eng = new_engine(store)
    for n, event in enumerate(before_handover() + after_handover(), start=1):
        eng.submit(event)
        if n % every == 0:
            written += log.checkpoint_records(store)
            log.committed()
    eng.flush()
    written += log.checkpoint_records(store)
    log.committed()
    return written


def _restored(records: Changelog) -> tuple[StateStore, ChangelogLog]:
    store = StateStore(track_changes=True)
    reader = ChangelogReader(store)
    for key, value in records:
        reader.apply(key, value)
    return store, reader.finish()


def test_chunks_restore_the_store_field_by_field_also_after_compaction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(changelog, "MIN_BASE_BYTES", 4_000)  # a base now and then in a short scenario
    store, log = StateStore(track_changes=True), ChangelogLog()
    written = _run_with_checkpoints(store, log)
    assert all(key.startswith(b"c:") for key, _ in written)
    bases = {decode_chunk(key, value).seq for key, value in written if value and decode_chunk(key, value).base}
    assert len(bases) >= 2, "the scenario should write more than one base"
    assert any(value is None for _, value in written), "a durable base retires the chunks before it"
    for records in (written, compact(written)):
        restored, restored_log = _restored(records)
        assert view(restored) == view(store)
        assert restored_log.next_seq == log.next_seq and restored_log.base_seq == log.base_seq


def test_a_checkpoint_is_a_few_records_whatever_it_changed() -> None:
    store, log = StateStore(track_changes=True), ChangelogLog()
    eng = new_engine(store)
    for event in before_handover():
        eng.submit(event)
    eng.flush()
    changed = len(snapshot_records(store))
    records = log.checkpoint_records(store)
    assert changed > 30 and len(records) == 1  # one chunk holds them all
    assert log.checkpoint_records(store) == []  # nothing changed since: nothing written


def test_a_base_cut_short_by_a_crash_leaves_the_previous_base_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(changelog, "MIN_BASE_BYTES", 4_000)
    monkeypatch.setattr(changelog, "CHUNK_BYTES", 2_000)  # bases of several parts
    store, log = StateStore(track_changes=True), ChangelogLog()
    written = _run_with_checkpoints(store, log)
    last_base = log.base_seq
    assert last_base is not None
    parts = [key for key, value in written if value and decode_chunk(key, value).seq == last_base]
    assert len(parts) > 1
    crashed = written[: [key for key, _ in written].index(parts[-1])]  # the base's last part never sent
    restored, restored_log = _restored(crashed)
    assert restored_log.base_seq is not None and restored_log.base_seq < last_base
    # Its parts that did arrive are applied as a delta on top: current values, nothing lost.
    assert restored_log.next_seq == last_base + 1


def test_records_of_the_per_key_format_are_applied_then_retired_by_a_base() -> None:
    """A changelog written before chunks: its per-key records restore, a base replaces them,
    and a per-key record deleted since cannot come back from under the base."""
    store = StateStore(track_changes=True)
    eng = new_engine(store)
    for event in before_handover():
        eng.submit(event)
    eng.flush()
    legacy: Changelog = [*snapshot_records(store), (record_key(("t", "ghost")), snapshot_records(store)[0][1])]
    restored, log = _restored(legacy)
    assert "ghost" in restored.tokens and log.legacy
    base = log.checkpoint_records(restored)  # nothing durable yet: no base, so write one
    assert base and all(key.startswith(b"c:") for key, _ in base)
    log.committed()
    retired = log.checkpoint_records(restored)
    assert {key for key, value in retired if value is None} == {key for key, _ in legacy}
    # The topic after compaction: the per-key records, the base; the restore starts from the base.
    again, _ = _restored(legacy + base)
    assert "ghost" in again.tokens  # the base was written from a store that held it
    restored.tokens.pop("ghost")  # deleted since: the next base does not hold it
    rebased = ChangelogLog(legacy={record_key(("t", "ghost"))}).checkpoint_records(restored)
    final, _ = _restored(legacy + rebased)
    assert "ghost" not in final.tokens and view(final) == view(restored)


@pytest.mark.parametrize("value", [b"", b"TWC1", b"XXXX\x00\x00\x00\x00\x00\x00\x00\x01zz", b"TWC1\x00\x00\x00\x00\x00\x00\x00\x01zz"])
def test_a_corrupt_chunk_is_a_codec_error(value: bytes) -> None:
    reader = ChangelogReader(StateStore())
    with pytest.raises(CodecError):
        reader.apply(b"c:0000000000000000:0000", value)
        reader.finish()
