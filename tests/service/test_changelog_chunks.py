"""The state changelog as batches (pipeline/service/changelog.py): a checkpoint writes a few
compressed chunks, a base now and then retires what came before, and a restore from the
(compacted) topic gives back exactly the store that wrote it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from detectors.state import StateStore
from detectors.state_codec import CodecError, record_key, snapshot_records
from pipeline.service import changelog
from pipeline.service.changelog import ChangelogLog, ChangelogReader, decode_chunk
from tests.detectors.test_state_codec import after_handover, before_handover, compact, new_engine, view

Changelog = list[tuple[bytes, bytes | None]]
EVENTS = before_handover() + after_handover()
INPUT = ("events", 0)


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
        assert restored_log.next_seq == log.next_seq - 1 + changelog.SEQ_GAP and restored_log.base_seq == log.base_seq


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


def _history(store: StateStore, log: ChangelogLog, every: int = 3) -> list[tuple[Changelog, dict[str, Any], int]]:
    """Each checkpoint of the codec test's scenario (every ``every`` events, each committed before
    the next): its records, the store right after it, and its input offset (events judged)."""
    history = []
    eng = new_engine(store)
    for n, event in enumerate(EVENTS, start=1):
        eng.submit(event)
        if n % every == 0:
            records = log.checkpoint_records(store, {INPUT: n})
            if records:
                history.append((records, copy.deepcopy(view(store)), n))  # (rows as plain values: a copy of the moment)
                log.committed()
    return history


def _restore(records: Changelog) -> tuple[StateStore, ChangelogLog, dict[tuple[str, int], int]]:
    """A restore of ``records``: the store, the log the next checkpoint writes with, the offsets."""
    store = StateStore(track_changes=True)
    reader = ChangelogReader(store)
    for key, value in records:
        reader.apply(key, value)
    log = reader.finish()
    return store, log, reader.offsets


def _chunks(records: Changelog) -> list[changelog.Chunk]:
    return [decode_chunk(key, value) for key, value in records if value is not None and key.startswith(b"c:")]


def _sent(history: list[tuple[Changelog, dict[str, Any], int]]) -> Changelog:
    return [record for records, _, _ in history for record in records]


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoints of several parts, and no base but the first."""
    monkeypatch.setattr(changelog, "CHUNK_BYTES", 300)
    monkeypatch.setattr(changelog, "MIN_BASE_BYTES", 1 << 40)


def _multi_part_delta(history: list[tuple[Changelog, dict[str, Any], int]]) -> int:
    """The index of the last checkpoint that is a delta of several parts (and has a successor)."""
    found = [n for n, (records, _, _) in enumerate(history[:-1])
             if n > 0 and len(_chunks(records)) > 1 and not _chunks(records)[0].base]
    assert found, "the scenario should write a delta of several parts"
    return found[-1]


def test_each_checkpoint_records_its_offsets_and_the_restore_hands_out_the_last(small_chunks: None) -> None:
    store, log = StateStore(track_changes=True), ChangelogLog()
    history = _history(store, log)
    assert all(chunk.offsets == {INPUT: n} for records, _, n in history for chunk in _chunks(records))
    restored, restored_log, offsets = _restore(_sent(history))
    assert view(restored) == view(store) and offsets == {INPUT: history[-1][2]}
    assert restored_log.last_seq == log.last_seq == log.next_seq - 1


def test_a_delta_cut_short_by_a_crash_is_skipped_with_its_offsets(small_chunks: None) -> None:
    """Some parts of checkpoint N acknowledged, then kill -9: N committed nothing, so the restore
    stands at N-1, with N-1's offsets (applying N's parts mixed N-1 and N: events judged again
    against state that already held part of them)."""
    history = _history(StateStore(track_changes=True), ChangelogLog())
    n = _multi_part_delta(history)
    cut = _sent(history[:n]) + history[n][0][:1]
    restored, restored_log, offsets = _restore(cut)
    assert view(restored) == history[n - 1][1] and offsets == {INPUT: history[n - 1][2]}
    assert restored_log.next_seq == _chunks(history[n][0])[0].seq + changelog.SEQ_GAP  # past the parts left
    assert restored_log.last_seq == _chunks(history[n - 1][0])[0].seq


def test_the_next_owner_after_a_cut_short_delta_continues_the_lineage(small_chunks: None) -> None:
    """The owner that restored without checkpoint N replays from N-1's offsets and writes N+1 on
    top of N-1: a restore applies it though N's parts are still in the topic before it."""
    history = _history(StateStore(track_changes=True), ChangelogLog())
    n = _multi_part_delta(history)
    cut = _sent(history[:n]) + history[n][0][:1]
    store, log, offsets = _restore(cut)
    eng = new_engine(store)
    for event in EVENTS[offsets[INPUT]:]:
        eng.submit(event)
    eng.flush()
    records = log.checkpoint_records(store, {INPUT: len(EVENTS)})
    assert records and not _chunks(records)[0].base
    restored, _, restored_offsets = _restore(cut + records)
    assert view(restored) == view(store) and restored_offsets == {INPUT: len(EVENTS)}
    assert view(restored) != history[n - 1][1]


def test_a_checkpoint_that_landed_before_its_cut_short_predecessor_is_skipped(small_chunks: None) -> None:
    """The same writer's N+1 complete while N is cut short (records of a failed flush carried into
    the next checkpoint, or a producer retry reordering them): N+1 holds only the changes since
    N, so without N it is skipped too, and the restore stands at N-1."""
    history = _history(StateStore(track_changes=True), ChangelogLog())
    n = _multi_part_delta(history)
    reordered = _sent(history[:n]) + history[n + 1][0] + history[n][0][:1]
    restored, _, offsets = _restore(reordered)
    assert view(restored) == history[n - 1][1] and offsets == {INPUT: history[n - 1][2]}


def test_a_base_cut_short_by_a_crash_is_skipped_and_the_previous_base_stays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(changelog, "MIN_BASE_BYTES", 4_000)
    monkeypatch.setattr(changelog, "CHUNK_BYTES", 2_000)  # bases of several parts
    history = _history(StateStore(track_changes=True), ChangelogLog())
    bases = [n for n, (records, _, _) in enumerate(history) if n > 0 and _chunks(records)[0].base]
    multi = [n for n in bases if len(_chunks(history[n][0])) > 1]
    assert multi, "the scenario should write a base of several parts"
    n = multi[-1]
    base = _chunks(history[n][0])[0].seq
    # The tombstones the base's checkpoint begins with, and all its parts but the last.
    cut = _sent(history[:n]) + history[n][0][:-1]
    restored, restored_log, offsets = _restore(cut)
    # Its parts are current values, yet applied they made a state of neither N-1 nor N, and its
    # offsets would skip the events of the parts that never arrived.
    assert view(restored) == history[n - 1][1] and offsets == {INPUT: history[n - 1][2]}
    assert restored_log.base_seq is not None and restored_log.base_seq < base
    assert restored_log.next_seq == base + changelog.SEQ_GAP


def test_chunks_of_the_format_before_offsets_restore_without_them() -> None:
    """``TWC1`` chunks (no lineage, no offsets): restored as before, no offsets (the rewind then
    uses the group's commit); the next checkpoint, in the new format, continues from them."""
    store, log = StateStore(track_changes=True), ChangelogLog()
    eng = new_engine(store)
    old: Changelog = []
    for n, event in enumerate(before_handover(), start=1):
        eng.submit(event)
        if n % 3 == 0:
            for key, value in log.checkpoint_records(store):
                # What the earlier format wrote: the same header without the lineage (no offsets: 10 bytes).
                old.append((key, None if value is None else b"TWC1" + value[4:13] + value[23:]))
            log.committed()
            at_checkpoint = copy.deepcopy(view(store))
    assert {value[:4] for _, value in old if value} == {b"TWC1"}
    restored, restored_log, offsets = _restore(old)
    assert view(restored) == at_checkpoint and offsets == {}
    for event in after_handover():
        eng.submit(event)
    new = restored_log.checkpoint_records(store, {INPUT: 99})
    upgraded, _, offsets = _restore(old + new)
    assert view(upgraded) == view(store) and offsets == {INPUT: 99}


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


History = list[tuple[Changelog, dict[str, Any], int]]


def _handover(every: int = 8, late_base: bool = False) -> tuple[Changelog, Changelog, History]:
    """Two writers of one partition. A checkpoints every 3 events up to event 9, each committed;
    it judges events 9..14 and begins checkpoint K, whose records land late (a revoke whose send
    timed out, kept queued by the producer; or slices an evicted member had sent). The next
    owner (another member, or A itself given the partition back) restores without K, resumes
    where the restore says and checkpoints every ``every`` events, each committed (``late_base``:
    K is a base). Returns the topic before K, K's records, and the owner's checkpoints as
    ``_history`` gives them."""
    store, log = StateStore(track_changes=True), ChangelogLog()
    topic: Changelog = []
    eng = new_engine(store)
    for n, event in enumerate(EVENTS[:9], start=1):
        eng.submit(event)
        if n % 3 == 0:
            topic += log.checkpoint_records(store, {INPUT: n})
            log.committed()
    for event in EVENTS[9:14]:
        eng.submit(event)
    if late_base:
        log.bytes_since_base = max(log.base_bytes, changelog.MIN_BASE_BYTES)  # the changes outweigh the base
    late = log.checkpoint_records(store, {INPUT: 14})
    owner, owner_log, offsets = _restore(topic)
    resume = max(offsets[INPUT], 9)  # the group's commit: 9
    eng = new_engine(owner)
    sets: History = []
    for n, event in enumerate(EVENTS[resume:], start=resume + 1):
        eng.submit(event)
        if n % every == 0 or n == len(EVENTS):
            records = owner_log.checkpoint_records(owner, {INPUT: n})
            owner_log.committed()
            if records:
                sets.append((records, copy.deepcopy(view(owner)), n))
    return topic, late, sets


def _flat(sets: list[Changelog]) -> Changelog:
    return [record for records in sets for record in records]


def _keys(records: Changelog) -> set[bytes]:
    """The chunk keys written (not the tombstones)."""
    return {key for key, value in records if value is not None}


# When K lands: the owner's checkpoint cadence, how many of its sets land before K, whether
# only K's first three parts land (an evicted member's slices), and whether K is a base.
LANDINGS: dict[str, tuple[int, int, bool, bool]] = {
    # The same member given the partition back: its producer sends the queued K before its new sets.
    "between the restore and the first set": (4, 0, False, False),
    "after the owner's first set": (8, 1, False, False),  # a set committed past K's offsets
    "after the owner's sets": (8, 3, False, False),
    "three parts after the first set": (8, 1, True, False),
    "a base, after the owner's first set": (8, 1, False, True),  # the newest base, off the lineage
}


@pytest.mark.parametrize("landing", LANDINGS)
@pytest.mark.parametrize("chunk_bytes", [300, changelog.CHUNK_BYTES], ids=["parts-differ", "one-part-each"])
def test_a_late_checkpoint_of_the_previous_owner_leaves_the_owners_state_and_offsets(
    monkeypatch: pytest.MonkeyPatch, chunk_bytes: int, landing: str,
) -> None:
    """K's records land after the next owner restored without them. The owner's seqs start well
    past K, so no key is shared (a shared K mixed the two writers' parts, or one replaced the
    other: K counted as cut short and every later set of the owner as built on it, or the owner's
    set was A's, while the owner committed past it — the restore stood at A's state and resumed
    at the owner's commit, the events in between in neither); and the owner's lineage is the
    newest, so the late K is not applied. Checked after every set that lands: a restore then
    gives the owner's state at its newest set, and that set's offsets (its commit)."""
    monkeypatch.setattr(changelog, "CHUNK_BYTES", chunk_bytes)
    monkeypatch.setattr(changelog, "MIN_BASE_BYTES", 1 << 40)
    every, before_late, cut_short, late_base = LANDINGS[landing]
    topic, late, sets = _handover(every, late_base)
    assert len(sets) >= 3 and _chunks(late)[0].base == late_base
    assert not any(chunk.base for records, _, _ in sets for chunk in _chunks(records))
    if chunk_bytes == 300:
        assert len(_chunks(late)) > 3 and len(_chunks(late)) != len(_chunks(sets[0][0]))
    else:
        assert len(_chunks(late)) == len(_chunks(sets[0][0])) == 1
    assert not _keys(late) & _keys(_flat([records for records, _, _ in sets]))
    landed, newest = list(topic), -1
    for group in [*range(before_late), None, *range(before_late, len(sets))]:
        if group is None:
            landed += late[:3] if cut_short else late
        else:
            landed += sets[group][0]
            newest = group
        if newest >= 0:
            restored, _, offsets = _restore(landed)
            assert view(restored) == sets[newest][1], (group, newest)
            assert offsets == {INPUT: sets[newest][2]}, (group, newest)


def test_a_late_set_lands_as_a_side_branch_applied_only_before_the_owners_first_set(small_chunks: None) -> None:
    """Until the owner's first set lands, K is the newest complete set: it is applied, and rightly
    (its alerts were flushed before its chunks went out; the state and offsets are A's at 14)."""
    topic, late, sets = _handover()
    restored, log, offsets = _restore(topic + late)
    assert offsets == {INPUT: 14} and log.last_seq == _chunks(late)[0].seq
    restored, _, offsets = _restore(topic + late + sets[0][0])
    assert view(restored) == sets[0][1] and offsets == {INPUT: sets[0][2]}


def test_a_late_set_is_tombstoned_once_a_restore_saw_it_and_a_base_past_it_is_acknowledged(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The owner never saw K (it landed after its restore), so its own bases do not retire it;
    the next restore sees it, and its first checkpoint, the restored base being acknowledged,
    tombstones K with every other key below that base: only the owner's lineage stays."""
    monkeypatch.setattr(changelog, "CHUNK_BYTES", 300)
    monkeypatch.setattr(changelog, "MIN_BASE_BYTES", 4_000)  # the owner writes a base past K
    topic, late, sets = _handover(every=4)
    owner_records = _flat([records for records, _, _ in sets])
    assert not {key for key, value in owner_records if value is None} & _keys(late)
    landed = topic + late + owner_records
    store, log, _ = _restore(landed)
    assert log.base_seq is not None and log.base_seq > _chunks(late)[0].seq
    retired = log.checkpoint_records(store, {INPUT: len(EVENTS)})
    tombstoned = {key for key, value in retired if value is None}
    assert _keys(late) <= tombstoned
    kept = compact(landed + retired)
    assert {chunk.seq for chunk in _chunks(kept)} == set(range(log.base_seq, _chunks(sets[-1][0])[0].seq + 1))
    restored, _, offsets = _restore(kept)
    assert view(restored) == sets[-1][1] and offsets == {INPUT: sets[-1][2]}


def test_the_restore_falls_back_to_the_next_newest_set_whose_lineage_is_whole(small_chunks: None) -> None:
    """The newest complete set builds on one whose parts are not all there: the restore takes
    the next newest complete set whose links reach a base, and its offsets."""
    history = _history(StateStore(track_changes=True), ChangelogLog())
    n = _multi_part_delta(history)
    chains = _sent(history[:n]) + history[n][0][1:] + history[n + 1][0]
    restored, log, offsets = _restore(chains)
    assert view(restored) == history[n - 1][1] and offsets == {INPUT: history[n - 1][2]}
    assert log.last_seq == _chunks(history[n - 1][0])[0].seq


@pytest.mark.parametrize("value", [
    b"", b"TWC1", b"XXXX\x00\x00\x00\x00\x00\x00\x00\x00\x01zz",
    b"TWC1\x00\x00\x00\x00\x00\x00\x00\x00\x01zz",  # one part of one: complete, its body unreadable
    b"TWC2\x00\x00\x00\x00\x00\x00\x00\x00\x01\xff\xff",  # the lineage cut off
    b"TWC2\x00\x00\x00\x00\x00\x00\x00\x00\x01" + b"\xff" * 8 + b"\x00\x01\x00\x09",  # an offset entry cut off
    b"TWC2\x01\x00\x00\x00\x00\x00\x00\x00\x01" + b"\xff" * 8 + b"\x00\x00zz",  # a whole base, body unreadable
])
def test_a_corrupt_chunk_is_a_codec_error(value: bytes) -> None:
    reader = ChangelogReader(StateStore())
    with pytest.raises(CodecError):
        reader.apply(b"c:0000000000000000:0000", value)
        reader.finish()
