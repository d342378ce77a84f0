"""The state changelog as a log of batches: each checkpoint writes the records that changed
(``detectors.state_codec``) packed and compressed into a few chunk records, and now and then
a base — every live record — after which the older chunks are deleted.

Why batches: one Kafka record per changed key cost ~2 changelog records per input record
(every new request id, token, session; and a tombstone for each when it expires), and the
producer's per-record cost was most of the service's CPU (issue 17). A chunk holds up to
``CHUNK_BYTES`` of records, so a checkpoint costs a handful of records whatever it changed.

Keys and values::

    c:<seq, 16 hex>:<part, 4 hex>   a chunk of checkpoint ``seq`` (per partition, increasing)
    value: b"TWC2" | base flag (1 byte) | part | parts (u32 each)
           | prev (i64, -1: none) | entries (u16) | entry* | zlib(frames)
    entry: topic length (u16) | input partition (u32) | next offset (i64) | topic
    frame: key length (u32) | key | value length (u32, 0xFFFFFFFF = tombstone) | value

``prev`` is the checkpoint the writer's state was built on (the last one it wrote, or the last
one its restore applied); the entries are the input offsets the checkpoint commits, one per
input topic-partition of this changelog partition (changelog partition ``p`` holds the state
of partition ``p`` of every input topic), in every part. Chunks of the earlier ``TWC1`` format
have neither and are still read.

Crash safety (the argument):

* The restored state is one *lineage*: the newest complete base (all its parts present), then
  each complete chunk set after it, in sequence order, whose ``prev`` is the set applied last.
  A set cut short by a crash (some parts acknowledged, then a kill) is skipped, base or delta:
  its checkpoint committed nothing (offsets wait for every record's ack), so the state of the
  set before it, with that set's offsets, is the consistent one. Sets after it are *not* all
  skipped. The same writer sends no later checkpoint in the ordinary course: one begins only
  once the one before is acknowledged and committed (``Service.checkpoint`` settles it first),
  and a send error ends the process or, in a revoke, drops the partition. Two cases remain.
  (1) A writer that restored without the cut-short set builds on the set before it (its
  ``prev`` says so; its seq is past every seq in the topic): applied — skipping it would lose
  state whose offsets are committed. (2) The same writer had two checkpoints in flight: the
  records of a checkpoint whose flush failed are carried into the next (sent first,
  ``ChangelogSend.carry``; but a failed send does not stop the later ones, and with
  ``kafka.acks`` other than ``all`` the producer is not idempotent, so a retry may reorder):
  the later set builds on the cut-short one and is skipped, its ``prev`` not being applied.
  So the applied sets never have a hole, whatever order the sends landed in. (Not covered: a
  zombie writer, evicted but still sending; Kafka fences producers only in transactions.)
* The restored offsets are those of the last set applied. A checkpoint's chunks are
  acknowledged before its offsets are committed (``ChangelogSend``), so a kill in between
  leaves chunks ahead of the group's commit: the state holds every event below the chunk's
  offsets, their alerts were flushed before the changelog went out (``checkpoint.complete``),
  and the ids of the events below them were not written ahead (``PartitionState.commit_offsets``).
  The restore therefore resumes each input partition at the larger of the recorded and the
  committed offset (``PartitionState.resume_position``): the committed one is larger when later
  checkpoints changed no state (they wrote no chunk), or the set is of the ``TWC1`` format.
* Older chunks are deleted (tombstoned) only at the checkpoint *after* the one that wrote the
  base, i.e. once the base is acknowledged: until then a restore still finds the old base.
  A skipped set stays until such a base retires it; the next seq a restore hands out is past
  it, so no key of a later checkpoint can mix with its parts.
* Records of the per-key format that came before (``t:``, ``f:``, ``s:``, ``u:``, ``d:``)
  are applied in topic order as before; once a base is acknowledged they are tombstoned,
  and a restore that finds a complete base starts from an empty store, so a stale per-key
  record can never outlive the base that replaced it.

A base is written when the chunks since the last one hold as many bytes as that base did
(at least ``MIN_BASE_BYTES``): rewriting the state is then paid by the changes it replaces,
so the checkpoint cost stays proportional to what changed, and a restore reads at most
about twice the live state.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from detectors.state import StateStore
from detectors.state_codec import CodecError, Record, Restorer, dirty_records, snapshot_records

MAGIC = b"TWC2"
MAGIC_V1 = b"TWC1"  # no lineage, no offsets: read, never written
CHUNK_BYTES = 512 * 1024  # uncompressed; well under Kafka's default 1 MiB record limit
MIN_BASE_BYTES = 1 << 20
_HEADER = struct.Struct(">4sBII")
_LINEAGE = struct.Struct(">qH")
_ENTRY = struct.Struct(">HIq")
_LENGTH = struct.Struct(">I")
_TOMBSTONE = 0xFFFFFFFF

InputOffsets = Mapping[tuple[str, int], int]
"""Next offset to consume per input (topic, partition): what a checkpoint commits."""


def chunk_key(seq: int, part: int) -> bytes:
    return f"c:{seq:016x}:{part:04x}".encode()


def parse_chunk_key(key: bytes) -> tuple[int, int]:
    try:
        _, seq, part = key.decode().split(":")
        return int(seq, 16), int(part, 16)
    except (UnicodeDecodeError, ValueError) as exc:
        raise CodecError(f"not a changelog chunk key: {key[:40]!r}") from exc


def _frames(records: Iterable[Record]) -> Iterator[bytes]:
    """Framed records, in chunks of at most ``CHUNK_BYTES`` (one record may exceed it alone)."""
    out: list[bytes] = []
    size = 0
    for key, value in records:
        frame = _LENGTH.pack(len(key)) + key + (
            _LENGTH.pack(_TOMBSTONE) if value is None else _LENGTH.pack(len(value)) + value
        )
        if out and size + len(frame) > CHUNK_BYTES:
            yield b"".join(out)
            out, size = [], 0
        out.append(frame)
        size += len(frame)
    if out:
        yield b"".join(out)


def encode_chunks(seq: int, records: list[Record], base: bool, prev: int | None = None,
                  offsets: InputOffsets | None = None) -> list[Record]:
    """The chunk records of one checkpoint's ``records``; ``prev``: the checkpoint they build on,
    ``offsets``: the input offsets the checkpoint commits (in every part)."""
    bodies = list(_frames(records))
    entries = sorted((offsets or {}).items())
    lineage = _LINEAGE.pack(-1 if prev is None else prev, len(entries)) + b"".join(
        _ENTRY.pack(len(name := topic.encode()), partition, offset) + name
        for (topic, partition), offset in entries
    )
    return [
        (chunk_key(seq, part), _HEADER.pack(MAGIC, int(base), part, len(bodies)) + lineage + zlib.compress(body, 1))
        for part, body in enumerate(bodies)
    ]


@dataclass(frozen=True)
class Chunk:
    seq: int
    part: int
    parts: int
    base: bool
    body: bytes  # compressed frames
    # The checkpoint this one builds on (-1: none) and the input offsets it commits; None for a
    # chunk of the ``TWC1`` format, which recorded neither.
    prev: int | None = None
    offsets: dict[tuple[str, int], int] | None = None

    def frames(self) -> bytes:
        """The chunk's framed records, uncompressed."""
        try:
            return zlib.decompress(self.body)
        except zlib.error as exc:
            raise CodecError(f"changelog chunk {self.seq}/{self.part} unreadable: {exc}") from exc

    def records(self, data: bytes | None = None) -> Iterator[Record]:
        """The records of the chunk (of ``data``, its frames when already uncompressed)."""
        if data is None:
            data = self.frames()
        at, end = 0, len(data)
        while at < end:
            (key_len,) = _LENGTH.unpack_from(data, at)
            key = data[at + 4: at + 4 + key_len]
            at += 4 + key_len
            (value_len,) = _LENGTH.unpack_from(data, at)
            at += 4
            if value_len == _TOMBSTONE:
                yield key, None
            else:
                yield key, data[at: at + value_len]
                at += value_len
            if at > end:
                raise CodecError(f"changelog chunk {self.seq}/{self.part} truncated")


def decode_chunk(key: bytes, value: bytes) -> Chunk:
    seq, part = parse_chunk_key(key)
    if len(value) < _HEADER.size:
        raise CodecError(f"changelog chunk {key[:40]!r} too short")
    magic, base, head_part, parts = _HEADER.unpack_from(value)
    if magic not in (MAGIC, MAGIC_V1) or head_part != part or not part < parts:
        raise CodecError(f"not a changelog chunk: {key[:40]!r}")
    if magic == MAGIC_V1:
        return Chunk(seq, part, parts, bool(base), value[_HEADER.size:])
    try:
        prev, count = _LINEAGE.unpack_from(value, _HEADER.size)
        at = _HEADER.size + _LINEAGE.size
        offsets: dict[tuple[str, int], int] = {}
        for _ in range(count):
            name_len, partition, offset = _ENTRY.unpack_from(value, at)
            at += _ENTRY.size
            offsets[value[at: at + name_len].decode(), partition] = offset
            at += name_len
    except (struct.error, UnicodeDecodeError) as exc:
        raise CodecError(f"changelog chunk {key[:40]!r} has a broken header") from exc
    if at > len(value):
        raise CodecError(f"changelog chunk {key[:40]!r} has a broken header")
    return Chunk(seq, part, parts, bool(base), value[at:], prev, offsets)


@dataclass
class ChangelogLog:
    """What one partition's changelog holds, to write the next checkpoint as chunks."""

    next_seq: int = 0
    live: set[bytes] = field(default_factory=set)  # chunk keys in the topic
    legacy: set[bytes] = field(default_factory=set)  # per-key records of the earlier format
    base_seq: int | None = None  # the newest base written or restored
    base_acknowledged: bool = False  # its checkpoint committed: older chunks may go
    base_bytes: int = 0
    bytes_since_base: int = 0
    last_seq: int | None = None  # the checkpoint the store stands at (written, or restored): the next builds on it

    def checkpoint_records(self, store: StateStore, offsets: InputOffsets | None = None) -> list[Record]:
        """The records of this checkpoint: tombstones for chunks a durable base replaced,
        then this checkpoint's chunks (a base when the changes since the last one outweigh
        it), carrying ``offsets``, the input offsets it commits. Empty when nothing changed."""
        out = self._retire()
        changed = dirty_records(store)
        if not changed and not (self.legacy and self.base_seq is None):
            return out  # (a changelog of per-key records gets its base at once, to retire them)
        size = sum(len(key) + len(value or b"") for key, value in changed)
        if self.base_seq is None or self.bytes_since_base + size >= max(self.base_bytes, MIN_BASE_BYTES):
            records, base = snapshot_records(store), True
            self.base_seq, self.base_acknowledged = self.next_seq, False
            self.base_bytes = sum(len(key) + len(value or b"") for key, value in records)
            self.bytes_since_base = 0
        else:
            records, base = changed, False
            self.bytes_since_base += size
        chunks = encode_chunks(self.next_seq, records, base, self.last_seq, offsets)
        self.last_seq = self.next_seq
        self.next_seq += 1
        self.live.update(key for key, _ in chunks)
        return out + chunks

    def committed(self) -> None:
        """The checkpoint's records are acknowledged and its offsets committed."""
        if self.base_seq is not None:
            self.base_acknowledged = True

    def _retire(self) -> list[Record]:
        if self.base_seq is None or not self.base_acknowledged:
            return []
        old = sorted(key for key in self.live if parse_chunk_key(key)[0] < self.base_seq)
        self.live.difference_update(old)
        legacy, self.legacy = sorted(self.legacy), set()
        return [(key, None) for key in (*legacy, *old)]


class ChangelogReader:
    """Restores a store from its changelog partition, records in topic order: per-key records
    of the earlier format applied as they come, chunks gathered and applied at ``finish`` from
    the newest complete base on, along its lineage (module docstring)."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self.restorer = Restorer(store)
        self.chunks: dict[bytes, Chunk] = {}
        self.legacy: set[bytes] = set()
        # After ``finish``: the input offsets of the last checkpoint applied (empty: not known).
        self.offsets: dict[tuple[str, int], int] = {}

    def apply(self, key: bytes, value: bytes | None) -> None:
        if key.startswith(b"c:"):
            if value is None:
                self.chunks.pop(key, None)
            else:
                self.chunks[key] = decode_chunk(key, value)
            return
        if value is None:
            self.legacy.discard(key)
        else:
            self.legacy.add(key)
        self.restorer.apply(key, value)

    def finish(self) -> ChangelogLog:
        by_seq: dict[int, list[Chunk]] = {}
        for chunk in self.chunks.values():
            by_seq.setdefault(chunk.seq, []).append(chunk)
        complete = {seq: sorted(parts, key=lambda c: c.part) for seq, parts in by_seq.items() if _complete(parts)}
        base = max((seq for seq, parts in complete.items() if parts[0].base), default=None)
        if base is not None:
            self.store.clear()  # the base holds every live record: nothing older may survive it
            self.restorer = Restorer(self.store)
        base_bytes = since_base = 0
        last: int | None = None
        for seq in sorted(complete):
            parts = complete[seq]
            if base is not None and seq < base:
                continue
            if seq != base and parts[0].prev is not None and parts[0].prev != last:
                continue  # built on a checkpoint not applied (cut short, or itself skipped)
            last = seq
            for chunk in parts:
                data = chunk.frames()  # once: applied, and counted for the next base's timing
                if seq == base:
                    base_bytes += len(data)
                else:
                    since_base += len(data)
                for key, value in chunk.records(data):
                    self.restorer.apply(key, value)
        self.restorer.finish()
        self.offsets = dict(complete[last][0].offsets or {}) if last is not None else {}
        log = ChangelogLog(next_seq=max(by_seq, default=-1) + 1, live=set(self.chunks), legacy=set(self.legacy),
                           base_seq=base, base_acknowledged=base is not None, last_seq=last)
        if base is not None:
            log.base_bytes, log.bytes_since_base = base_bytes, since_base
        return log


def _complete(parts: list[Chunk]) -> bool:
    """Every part of one checkpoint's chunks is present (keys are unique per part, and each
    part is below the count its header names)."""
    head = parts[0]
    return len(parts) == head.parts and all(c.parts == head.parts and c.base == head.base for c in parts)
