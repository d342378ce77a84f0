"""Detector state tables: keyed rows that remember which keys changed.

A detector keeps what it learns in tables it asks the ``StateStore`` for
(``store.table("replay", "requests", SEEN_REQUEST)``). A table is a dict in
arrival order — so the oldest rows come first, for time windows and LRU bounds —
plus the set of keys written, deleted or changed in place since the last
checkpoint. The changelog encodes exactly those keys, so a checkpoint costs what
changed, never what is held (issue 15: a million held request ids with a hundred
new ones used to cost two seconds of re-encoding per checkpoint).

Rows are written to the changelog with the table's :class:`ValueCodec`, which
the value's own module registers under a fixed name
(``register_codec("replay.request", ...)``): decoding a record only ever calls a
registered codec, never imports by path, so a changelog topic is not a
code-execution path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from mypy_extensions import mypyc_attr

K = TypeVar("K", str, int)
V = TypeVar("V")


@mypyc_attr(native_class=False)  # mypyc cannot build a generic dataclass as a native class
@dataclass(frozen=True, slots=True)
class ValueCodec(Generic[V]):
    """How one value type travels in changelog records: to plain JSON values and back.

    ``decode`` raises ``ValueError``/``TypeError``/``KeyError``/``IndexError`` on input
    it cannot read; the restore turns those into ``CodecError`` naming the record.

    ``order``, for a table whose rows keep their first place while changed in place (a
    window by start time): a compacted changelog holds rows in last-write order, so a
    restore stable-sorts the rows by it to give them their places back."""

    name: str
    encode: Callable[[V], Any]
    decode: Callable[[Any], V]
    order: Callable[[V], float] | None = None


_CODECS: dict[str, ValueCodec[Any]] = {}


def register_codec(
    name: str, encode: Callable[[V], Any], decode: Callable[[Any], V], order: Callable[[V], float] | None = None,
) -> ValueCodec[V]:
    """Register the codec of a value type under ``name`` (stable: it is written in records).

    Registering the same name twice with other functions is a programming error: two
    value types would read each other's records."""
    codec = ValueCodec(name, encode, decode, order)
    known = _CODECS.get(name)
    if known is not None and (known.encode, known.decode, known.order) != (encode, decode, order):
        raise ValueError(f"state codec {name!r} is already registered by another type")
    _CODECS[name] = codec
    return codec


def codec_named(name: str) -> ValueCodec[Any] | None:
    return _CODECS.get(name)


def _same(value: Any) -> Any:
    return value


PLAIN: ValueCodec[Any] = register_codec("plain", _same, _same)
"""JSON values as they are (numbers, strings, lists of them): a detector's bookkeeping."""


def _decode_seconds(value: Any) -> float:
    if type(value) not in (int, float):
        raise TypeError("a time must be a number")
    return float(value)


EPOCH_SECONDS: ValueCodec[float] = register_codec("epoch_seconds", float, _decode_seconds)
"""An event time in epoch seconds (finite: event times always are)."""


class Table(Generic[K, V]):
    """Rows of one detector table in arrival order, with the keys changed since the last
    :meth:`take_changed`.

    Writing through :meth:`put`, :meth:`put_last`, :meth:`pop` and the bounds marks the
    key; a value changed in place must be marked with :meth:`touch`. When the store does
    not track changes (a batch run) nothing is marked.

    Changed keys are kept in the order they were last marked, and the changelog writes
    them in that order: a compacted topic keeps each key's latest record in write order, so
    a restore rebuilds the rows in the order they were last written — the arrival order
    that time windows and LRU bounds stop on. (A row rewritten with :meth:`put`, which keeps
    its place here, comes back as the newest row: it is forgotten a little later, never
    earlier.)"""

    __slots__ = ("codec", "_rows", "_changed")

    def __init__(self, codec: ValueCodec[V], track_changes: bool = True) -> None:
        self.codec = codec
        self._rows: dict[K, V] = {}
        self._changed: dict[K, None] | None = {} if track_changes else None

    # -- reading -----------------------------------------------------------------------
    def get(self, key: K) -> V | None:
        return self._rows.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[K]:
        return iter(self._rows)

    def items(self) -> Iterator[tuple[K, V]]:
        return iter(self._rows.items())

    def values(self) -> Iterator[V]:
        return iter(self._rows.values())

    def oldest(self) -> K | None:
        """The key written first (or moved last longest ago), None when empty."""
        return next(iter(self._rows), None)

    # -- writing -----------------------------------------------------------------------
    def put(self, key: K, value: V) -> None:
        """Write ``key``; a key already present keeps its place in arrival order."""
        self._rows[key] = value
        self.touch(key)

    def put_last(self, key: K, value: V) -> None:
        """Write ``key`` as the newest row (update order: an LRU, or a window by last use)."""
        rows = self._rows
        rows.pop(key, None)
        rows[key] = value
        self.touch(key)

    def touch(self, key: K) -> None:
        """Mark ``key`` changed (its value was changed in place), as the latest change."""
        changed = self._changed
        if changed is not None:
            changed.pop(key, None)
            changed[key] = None

    def pop(self, key: K) -> V | None:
        value = self._rows.pop(key, None)
        if value is not None:
            self.touch(key)
        return value

    # -- bounding ----------------------------------------------------------------------
    def evict_oldest(self, keep: int) -> int:
        """Drop the oldest rows until at most ``keep`` are left; returns how many went."""
        excess = len(self._rows) - keep
        if excess <= 0:
            return 0
        rows, changed = self._rows, self._changed
        gone = []
        for key in rows:
            gone.append(key)
            if len(gone) == excess:
                break
        for key in gone:
            del rows[key]
        if changed is not None:
            changed.update(dict.fromkeys(gone))  # deletions: their order does not matter
        return excess

    def forget_before(self, horizon: float, when: Callable[[V], float]) -> int:
        """Drop the oldest rows until one is at or after ``horizon`` by ``when``.

        Arrival order follows event time closely, so this stops at the first recent row;
        a few out-of-order stragglers live a little longer, which only delays forgetting
        them. One pass over what goes (deleting while asking ``next(iter(...))`` again
        walks the freed slots each time: quadratic)."""
        rows, gone = self._rows, []
        for key, value in rows.items():
            if when(value) >= horizon:
                break
            gone.append(key)
        for key in gone:
            del rows[key]
        if gone and self._changed is not None:
            self._changed.update(dict.fromkeys(gone))  # deletions: their order does not matter
        return len(gone)

    # -- changelog ---------------------------------------------------------------------
    def take_changed(self) -> list[K]:
        """Keys written, changed or deleted since the last call, in the order they were last
        marked (a key no longer present is a deletion), and forget them."""
        changed = self._changed
        if changed is None:
            return []
        self._changed = {}
        return list(changed)

    def sort_rows(self, order: Callable[[V], float]) -> None:
        """Put the rows in ``order`` (stable): what a restore does for a codec with an order."""
        self._rows = dict(sorted(self._rows.items(), key=lambda row: order(row[1])))

    def restore(self, key: K, value: V | None) -> None:
        """Apply a changelog record: written in arrival order, never marked changed."""
        if value is None:
            self._rows.pop(key, None)
        else:
            self._rows.pop(key, None)
            self._rows[key] = value
