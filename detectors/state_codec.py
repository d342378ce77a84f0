"""Changelog records of a ``StateStore``: one record per token, family, session,
subject and detector namespace, and back.

A partition's state is written to a compacted changelog topic at each checkpoint
and restored from it by the partition's next owner, so the codec must be exact
(continuing with a restored store gives the same alerts as continuing with the
original) and safe: records are JSON (orjson) of plain lists, never pickle — a
changelog topic must not be a code-execution path. Decoding builds only
``TokenState``, ``ScopeState``, ``Observation``, built-in containers and the
values of registered table codecs.

Record keys are ``b"<prefix>:<id>"`` with prefix ``t`` token, ``f`` family,
``s`` session, ``u`` subject, ``d`` detector table row; the value ``None`` is a
tombstone (the key is gone). Values start with a format version.

Detector tables (``detectors.tables``) are written per row, under
``d:<detector>\x1f<table>\x1f<json row key>``, as ``[2, <codec name>, <value>]``: the
value codec is looked up by the name its module registered, never imported by path.
A checkpoint writes the rows marked changed since the last one, in the order they were
last written, and tombstones for rows gone; a compacted topic keeps each row's latest
record in that order, so a restore rebuilds each table in arrival order. Records of the
earlier detector-namespace format (``[1, ...]`` under ``d:``) are not read: their keys
are tombstoned at the next checkpoint and that detector memory is learnt again.

Expiry is restored too: a token record carries its expiry-wheel bucket, a scope
record the buckets it is filed under (looked up in the store's scope wheel), so
a restored store forgets exactly when the original would have. Tokens known only
from failed uses carry no bucket (-1): they are refiled in the store's bounded
``unseen_failing`` LRU, least recently seen first. The ``metrics`` dict is not
persisted.

A token record lists its accepted and its failed uses apart (the last field);
a record of the earlier layout, one list of both, is still read and split.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from detectors.observation_codec import decode_optional, encode_optional
from detectors.state import Observation, ScopeState, StateStore, TokenState, intern, is_unseen_failing
from detectors.tables import Table, codec_named

VERSION = 1
TABLE_VERSION = 2  # detector table rows: [2, codec name, plain value]
Record = tuple[bytes, bytes | None]

_SCOPE_TABLES = {"f": "family", "s": "session", "u": "subject"}
class CodecError(ValueError):
    """A changelog record that cannot be decoded (corrupt, or from an unknown format)."""


# -- keys ------------------------------------------------------------------------------
def record_key(key: tuple[str, str]) -> bytes:
    """``("t", "at-1")`` -> ``b"t:at-1"``."""
    prefix, ident = key
    return f"{prefix}:{ident}".encode("utf-8", "surrogatepass")


def parse_key(raw: bytes) -> tuple[str, str]:
    prefix, sep, ident = raw.decode("utf-8", "surrogatepass").partition(":")
    if not sep or prefix not in ("t", "f", "s", "u", "d"):
        raise CodecError(f"not a state record key: {raw[:80]!r}")
    return prefix, ident


# -- encoding --------------------------------------------------------------------------
class Encoder:
    """Encodes records of one store at one checkpoint; builds the scope-wheel index once."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def encode(self, key: tuple[str, str]) -> bytes | None:
        """The record value of ``key``, or None (a tombstone) when the key is gone."""
        prefix, ident = key
        store = self.store
        if prefix == "t":
            token = store.tokens.get(ident)
            return None if token is None else orjson.dumps(_token_to_list(token))
        name = _SCOPE_TABLES[prefix]
        scope = _scope_table(store, name).get(ident)
        if scope is None:
            return None
        return orjson.dumps(_scope_to_list(scope, self._slots_of(name, ident)))

    def records(self, keys: Iterable[tuple[str, str]]) -> list[Record]:
        out: list[Record] = []
        out = [(record_key(key), self.encode(key)) for key in sorted(keys)]
        out.extend(table_records(self.store))
        stale = self.store.stale_records
        out.extend((key, None) for key in sorted(stale))
        stale.clear()
        return out

    def _slots_of(self, name: str, ident: str) -> list[int]:
        scope = _scope_table(self.store, name)[ident]
        return [scope.wheel_slot] if scope.wheel_slot >= 0 else []


def encode(store: StateStore, key: tuple[str, str]) -> bytes | None:
    """One record value (None = tombstone). For many keys use ``Encoder``/``dirty_records``:
    encoding a scope here scans the store's scope wheel."""
    return Encoder(store).encode(key)


SEP = "\x1f"
def _table_prefix(detector: str, name: str) -> bytes:
    return f"d:{detector}{SEP}{name}{SEP}".encode("utf-8", "surrogatepass")


def _row_value(table: Table[Any, Any], value: Any) -> bytes:
    return orjson.dumps([TABLE_VERSION, table.codec.name, table.codec.encode(value)])


def table_records(store: StateStore) -> list[Record]:
    """The rows of every detector table written, changed or deleted since the last call
    (a deleted row is a tombstone): encoding what changed, never scanning what is held."""
    out: list[Record] = []
    for (detector, name), table in sorted(store.tables.items()):
        changed = table.take_changed()
        if not changed:
            continue
        prefix = _table_prefix(detector, name)
        for key in changed:  # in the order last written: a restore rebuilds the arrival order
            value = table.get(key)
            out.append((prefix + orjson.dumps(key), None if value is None else _row_value(table, value)))
    return out


def dirty_records(store: StateStore) -> list[Record]:
    """The records of every key changed since the last checkpoint (clears the dirty set)."""
    return Encoder(store).records(store.take_dirty())


def all_keys(store: StateStore) -> Iterator[tuple[str, str]]:
    yield from (("t", key) for key in store.tokens)
    for prefix, name in _SCOPE_TABLES.items():
        yield from ((prefix, key) for key in _scope_table(store, name))


def snapshot_records(store: StateStore) -> list[Record]:
    """Every key of the store, for a full dump (no tombstones)."""
    encoder = Encoder(store)
    out: list[Record] = []
    out.extend((record_key(key), encoder.encode(key)) for key in all_keys(store))
    for (detector, name), table in sorted(store.tables.items()):
        prefix = _table_prefix(detector, name)
        out.extend((prefix + orjson.dumps(key), _row_value(table, value)) for key, value in table.items())
    return out


def _token_to_list(t: TokenState) -> list[Any]:
    return [
        VERSION, t.type, t.family_id, t.parent_id, t.session_id, t.subject_id, t.client_id,
        t.issued_at, t.expires_at, None if t.scopes is None else sorted(t.scopes), list(t.audience),
        t.binding, encode_optional(t.issue), [encode_optional(u) for u in t.accepted], encode_optional(t.rotation), encode_optional(t.revoked),
        t.last_seen, t.wheel_slot, [encode_optional(u) for u in t.failed],
    ]


def _scope_to_list(s: ScopeState, slots: list[int]) -> list[Any]:
    return [
        VERSION, encode_optional(s.revoked), encode_optional(s.ended), encode_optional(s.disabled),
        None if s.scopes is None else sorted(s.scopes), list(s.audience), s.last_seen, s.tokens, slots,
    ]


# -- decoding --------------------------------------------------------------------------
class Restorer:
    """Applies changelog records (in topic order) to a store, then files the restored
    keys in the expiry wheels once — so older versions of a key leave no stale filing."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._tokens: set[str] = set()
        self._scopes: set[tuple[str, str]] = set()
        self._sort: set[tuple[str, str]] = set()  # tables whose codec orders their rows

    def apply(self, raw_key: bytes, value: bytes | None) -> None:
        prefix, ident = parse_key(raw_key)
        store = self.store
        try:
            if prefix == "t":
                if value is None:
                    store.tokens.pop(ident, None)
                    store.unseen_failing.pop(ident, None)
                else:
                    store.tokens[ident] = _token_from_list(ident, _load(value))
                    self._tokens.add(ident)
            elif prefix == "d":
                self._apply_row(raw_key, ident, value)
            else:
                name = _SCOPE_TABLES[prefix]
                table = _scope_table(store, name)
                if value is None:
                    table.pop(ident, None)
                    self._scopes.discard((name, ident))
                else:
                    table[ident] = _scope_from_list(_load(value))
                    self._scopes.add((name, ident))
        except CodecError:
            raise
        except (TypeError, ValueError, IndexError, KeyError, AttributeError) as exc:
            raise CodecError(f"bad state record {raw_key[:80]!r}: {exc}") from exc

    def _apply_row(self, raw_key: bytes, ident: str, value: bytes | None) -> None:
        """Apply a detector table row; a record of the earlier namespace format is set
        aside to be tombstoned (``StateStore.stale_records``)."""
        store = self.store
        detector, _, rest = ident.partition(SEP)
        name, sep, entry = rest.partition(SEP)
        table = store.tables.get((detector, name)) if sep else None
        if value is None:
            store.stale_records.discard(raw_key)
            if table is not None:
                table.restore(_row_key(entry), None)
            return
        data = orjson.loads(value)
        if type(data) is not list or not data:
            raise CodecError("a table row must be a list")
        if data[0] == VERSION or not sep:  # the earlier namespace format
            store.stale_records.add(raw_key)
            return
        if data[0] != TABLE_VERSION or len(data) != 3:
            raise CodecError(f"unknown table row format {str(data)[:40]!r}")
        _, codec_name, plain = data
        codec = codec_named(codec_name) if type(codec_name) is str else None
        if codec is None:
            raise CodecError(f"state table {detector}/{name}: no codec named {str(codec_name)[:40]!r}")
        try:
            table = store.table(detector, name, codec)
        except TypeError as exc:
            raise CodecError(str(exc)) from exc
        table.restore(_row_key(entry), codec.decode(plain))
        if codec.order is not None:
            self._sort.add((detector, name))

    def finish(self) -> None:
        """File restored tokens and scopes in the expiry wheels, and failure-only tokens in
        the unseen-failing LRU (once, after all records)."""
        store = self.store
        unseen: list[TokenState] = []
        for ident in self._tokens:
            token = store.tokens.get(ident)
            if token is None:
                continue
            if is_unseen_failing(token):
                unseen.append(token)
            else:
                store.unseen_failing.pop(ident, None)
                store.file_token(token)
        lru = store.unseen_failing
        for token in sorted(unseen, key=_last_seen):  # stable: restore order breaks ties
            lru.pop(token.token_id, None)
            lru[token.token_id] = None
        for name, ident in self._scopes:
            scope = _scope_table(store, name).get(ident)
            if scope is not None:
                store.file_scope(name, ident, scope)
        for table_name in self._sort:
            table = store.tables[table_name]
            if table.codec.order is not None:
                table.sort_rows(table.codec.order)
        self._tokens.clear()
        self._scopes.clear()
        self._sort.clear()


def apply_record(store: StateStore, raw_key: bytes, value: bytes | None) -> None:
    """Apply one record and file it for expiry. To replay a topic use ``restore`` (or a
    ``Restorer``): applying two versions of one scope here leaves both filings."""
    restorer = Restorer(store)
    restorer.apply(raw_key, value)
    restorer.finish()


def restore(store: StateStore, records: Iterable[Record]) -> StateStore:
    """Apply changelog records in topic order (later versions of a key win)."""
    restorer = Restorer(store)
    for raw_key, value in records:
        restorer.apply(raw_key, value)
    restorer.finish()
    return store


def _load(value: bytes) -> list[Any]:
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise CodecError(f"not JSON: {exc}") from exc
    if type(data) is not list or not data or data[0] != VERSION:
        raise CodecError(f"unknown state record format {str(data)[:40]!r}")
    return data


def _float(value: Any) -> float | None:
    if value is None:
        return None
    if type(value) not in (int, float):
        raise CodecError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _str(value: Any) -> str | None:
    if value is not None and type(value) is not str:
        raise CodecError(f"expected a string, got {type(value).__name__}")
    return value


def _istr(value: Any) -> str | None:
    interned: str | None = intern(_str(value))  # intern() keeps the type it is given
    return interned


def _strs(values: Any) -> list[str]:
    if type(values) is not list or not all(type(v) is str for v in values):
        raise CodecError("expected a list of strings")
    return values


def _token_from_list(token_id: str, data: list[Any]) -> TokenState:
    failed: list[Any] | None = data[18] if len(data) == 19 else None  # None: the one-list layout
    (_, type_, family, parent, session, subject, client, issued_at, expires_at, scopes, audience,
     binding, issue, uses, rotation, revoked, last_seen, wheel_slot) = data[:18]
    t = TokenState(token_id)
    t.type = _istr(type_) or t.type
    t.family_id, t.parent_id, t.session_id = _istr(family), _str(parent), _istr(session)
    t.subject_id, t.client_id = _istr(subject), _istr(client)
    t.issued_at, t.expires_at = _float(issued_at), _float(expires_at)
    t.scopes = None if scopes is None else intern(frozenset(_strs(scopes)))
    t.audience = intern(tuple(_strs(audience))) if audience else ()
    t.binding = _istr(binding)
    t.issue, t.rotation, t.revoked = decode_optional(issue), decode_optional(rotation), decode_optional(revoked)
    recorded = _uses_from(uses)
    if failed is None:
        t.accepted = [obs for obs in recorded if obs.success] or ()
        t.failed = [obs for obs in recorded if not obs.success] or ()
    else:
        t.accepted, t.failed = recorded, _uses_from(failed)
    t.last_seen = _float(last_seen) or 0.0
    t.wheel_slot = int(wheel_slot)
    return t


def _uses_from(values: Any) -> list[Observation] | tuple[()]:
    """Decoded uses; an empty tuple, as in a fresh ``TokenState``, when there are none."""
    if type(values) is not list:
        raise CodecError("expected a list of uses")
    return [obs for obs in map(decode_optional, values) if obs is not None] or ()


def _scope_from_list(data: list[Any]) -> ScopeState:
    _, revoked, ended, disabled, scopes, audience, last_seen, tokens, slots = data
    s = ScopeState()
    s.revoked, s.ended, s.disabled = decode_optional(revoked), decode_optional(ended), decode_optional(disabled)
    s.scopes = None if scopes is None else intern(frozenset(_strs(scopes)))
    s.audience = intern(tuple(_strs(audience))) if audience else ()
    s.last_seen = _float(last_seen) or 0.0
    s.tokens = None if tokens is None else _strs(tokens)
    # One filing at a time; a record of an earlier version may list more: the latest counts.
    s.wheel_slot = max((int(slot) for slot in slots), default=-1)
    return s


def _row_key(entry: str) -> str | int:
    key = orjson.loads(entry)
    if type(key) not in (str, int):
        raise CodecError("a table row key must be a string or an integer")
    return key  # type: ignore[no-any-return]  # checked just above


def _last_seen(token: TokenState) -> float:
    return token.last_seen


def _scope_table(store: StateStore, name: str) -> dict[str, ScopeState]:
    return {"family": store.families, "session": store.sessions, "subject": store.subjects}[name]
