"""The state changelog as a log of batches: each checkpoint writes the records that changed
(``detectors.state_codec``) packed and compressed into a few chunk records, and now and then
a base — every live record — after which the older chunks are deleted.

Why batches: one Kafka record per changed key cost ~2 changelog records per input record
(every new request id, token, session; and a tombstone for each when it expires), and the
producer's per-record cost was most of the service's CPU (issue 17). A chunk holds up to
``CHUNK_BYTES`` of records, so a checkpoint costs a handful of records whatever it changed.

Keys and values::

    c:<seq, 16 hex>:<part, 4 hex>   a chunk of checkpoint ``seq`` (per partition, increasing;
                                    a restore continues ``SEQ_GAP`` past the newest it saw)
    value: b"TWC2" | base flag (1 byte) | part | parts (u32 each)
           | prev (i64, -1: none) | entries (u16) | entry* | zlib(frames)
    entry: topic length (u16) | input partition (u32) | next offset (i64) | topic
    frame: key length (u32) | key | value length (u32, 0xFFFFFFFF = tombstone) | value

``prev`` is the checkpoint the writer's state was built on (the last one it wrote, or the last
one its restore applied); the entries are the input offsets the checkpoint commits, one per
input topic-partition of this changelog partition (changelog partition ``p`` holds the state
of partition ``p`` of every input topic), in every part. Chunks of the earlier ``TWC1`` format
have neither and are still read: such a set builds on the complete set before it in seq order.

Crash safety (the argument):

* The restored state is one *lineage*: the newest complete chunk set (all its parts present)
  whose ``prev`` links, through complete sets only, reach a complete base (or a first set that
  builds on nothing: on the per-key records, if any); that base and the sets on the way are
  applied, oldest first, and nothing else (``lineage``). When a link is missing the
  restore falls back to the next newest complete set. A set cut short by a crash (some parts
  acknowledged, then a kill) is never applied, base or delta: its checkpoint committed nothing
  (offsets wait for every record's ack), so the set before it, with its offsets, is the
  consistent state. Nor is a set that builds on a cut-short one (it holds only the changes
  since): the same writer's later set when two of its checkpoints were in flight — the records
  of a checkpoint whose flush failed are carried into the next (sent first,
  ``ChangelogSend.carry``), and so are all of a checkpoint whose send failed or timed out, sent
  or not (``ChangelogSend.unacknowledged``: its set is complete before a later one commits),
  but a failed send does not stop the later ones, and with ``kafka.acks`` other than ``all`` a
  retry may reorder. So the applied sets never have a hole,
  whatever order the sends landed in. A writer that restored without the cut-short set builds
  on the set before it (its ``prev`` says so): its sets are the newest, so they are applied.
* Two writers. A partition has one owner at a time, but the last records of the one before
  can land after the next owner restored: a revoke checkpoint whose send timed out
  (``ChangelogSend.wait``; kafka-python keeps the batch queued up to ``delivery_timeout_ms``),
  or the slices an evicted member had already sent. The next owner may be that same member.
  (a) A restore hands out seqs from ``SEQ_GAP`` past the newest seq it saw, so the new owner
  never writes the key of a set still in flight. With a shared seq the two writers' parts
  mixed under the same keys (or, of one part each, the late one replaced the owner's): the set
  counted as cut short, every later set of the owner as built on it, while the owner went on
  committing — a restore stood at the old state and resumed at the new offsets, and the events
  between were in neither. (b) The late set is then a side branch: its seq is below every set
  of the new owner, whose lineage does not pass through it. It is applied only while the new
  owner has no complete set yet, and then rightly: its alerts were flushed before its chunks
  were sent, and its offsets are its own.
* Not covered: a true zombie, a member that keeps checkpointing long after losing the
  partition (stalled past the session timeout, it does not poll, so it does not learn of its
  eviction). Kafka fences producers only in transactions, so its sets land; its commits are
  refused (its generation is stale), so it retires nothing and the group's offsets never follow
  it, and its sets stay side branches below the owner's seqs — until it has written
  ``SEQ_GAP`` of them (at a checkpoint every 5 s, two months): then its keys meet the owner's
  and (a) returns, and its newest sets may be the ones a restore takes. A restore that runs before the new owner's first complete set
  takes the zombie's newest set, consistent with the zombie's own offsets.
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
  Every chunk key with a seq below the base goes, off the lineage or on it: cut-short sets,
  side branches. A side branch that landed after the owner's restore is unknown to it and
  stays until a later restore has seen it and a base past it is acknowledged; until then it is
  a few records the restore reads and does not apply.
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
SEQ_GAP = 1 << 20
"""How far past the newest seq it saw a restore's first checkpoint goes: the previous owner's
sets still in flight are at most a few seqs past it (module docstring, two writers)."""
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
    of the earlier format applied as they come, chunks gathered and applied at ``finish``: the
    lineage of the newest complete set that reaches a base (``lineage``, module docstring)."""

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
        chain = lineage(complete)
        base = chain[0] if chain and complete[chain[0]][0].base else None
        if base is not None:
            self.store.clear()  # the base holds every live record: nothing older may survive it
            self.restorer = Restorer(self.store)
        base_bytes = since_base = 0
        for seq in chain:
            for chunk in complete[seq]:
                data = chunk.frames()  # once: applied, and counted for the next base's timing
                if seq == base:
                    base_bytes += len(data)
                else:
                    since_base += len(data)
                for key, value in chunk.records(data):
                    self.restorer.apply(key, value)
        self.restorer.finish()
        last = chain[-1] if chain else None
        self.offsets = dict(complete[last][0].offsets or {}) if last is not None else {}
        # Past every seq seen by SEQ_GAP: a set of the previous owner still in flight never shares a key with ours.
        log = ChangelogLog(next_seq=max(by_seq, default=0) + SEQ_GAP, live=set(self.chunks),
                           legacy=set(self.legacy), base_seq=base, base_acknowledged=base is not None, last_seq=last)
        if base is not None:
            log.base_bytes, log.bytes_since_base = base_bytes, since_base
        return log


_ROOT = -1  # a link to nothing: the set is a base, or the first set (on the per-key records, if any)


def lineage(complete: Mapping[int, list[Chunk]]) -> list[int]:
    """The seqs a restore applies, oldest first: the chain of the newest complete set whose links
    reach a root (module docstring); empty when none does. Each seq is walked once."""
    order = sorted(complete)
    before = dict(zip(order[1:], order[:-1], strict=True))  # for TWC1 sets: the complete set before each

    def link(seq: int) -> int | None:
        """The set ``seq`` builds on, ``_ROOT``, or None: one not complete in the topic."""
        head = complete[seq][0]
        if head.base:
            return _ROOT
        if head.prev is None:
            return before.get(seq, _ROOT)
        if head.prev == _ROOT or (head.prev in complete and head.prev < seq):
            return head.prev
        return None

    reaches: dict[int, bool] = {}
    for newest in reversed(order):
        path: list[int] = []
        seq: int | None = newest
        while seq is not None and seq != _ROOT and seq not in reaches:
            path.append(seq)
            seq = link(seq)
        found = seq == _ROOT or (seq is not None and reaches[seq])
        reaches.update(dict.fromkeys(path, found))
        if found:
            chain = [newest]
            while (prev := link(chain[-1])) != _ROOT:
                assert prev is not None  # every set on a chain that reaches a root links on
                chain.append(prev)
            return chain[::-1]
    return []


def _complete(parts: list[Chunk]) -> bool:
    """Every part of one checkpoint's chunks is present (keys are unique per part, and each
    part is below the count its header names)."""
    head = parts[0]
    return len(parts) == head.parts and all(c.parts == head.parts and c.base == head.base for c in parts)
