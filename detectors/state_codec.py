"""Changelog records of a ``StateStore``: one record per token, family, session,
subject and detector namespace, and back.

A partition's state is written to a compacted changelog topic at each checkpoint
and restored from it by the partition's next owner, so the codec must be exact
(continuing with a restored store gives the same alerts as continuing with the
original) and safe: records are JSON (orjson) of plain lists, never pickle — a
changelog topic must not be a code-execution path. Decoding builds only
``TokenState``, ``ScopeState``, ``Observation``, built-in containers and the
named tuples registered here (looked up by a fixed name, never imported by path).

Record keys are ``b"<prefix>:<id>"`` with prefix ``t`` token, ``f`` family,
``s`` session, ``u`` subject, ``d`` detector namespace; the value ``None`` is a
tombstone (the key is gone). Values start with a format version.

Detector namespaces are written per entry, not whole: a namespace is a dict of
tables (``{"requests": {...}, "next_sweep": 12.0}``); a table that is a dict is
written as one record per entry, ``d:<detector>\x1f<table>\x1f<json entry key>``,
plus a marker record ``d:<detector>\x1f<table>`` (so an empty table survives),
any other value as one record ``d:<detector>\x1f<table>``. A checkpoint writes
only the entries whose encoding changed since the last one it wrote (and
tombstones for entries gone), so a namespace of a million request ids costs
the changed ids, not megabytes per checkpoint. (Whole-namespace records
``d:<detector>`` of the first format are still read.)

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

import math
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from detectors.state import Observation, ScopeState, StateStore, TokenState, intern, is_unseen_failing

VERSION = 1
Record = tuple[bytes, bytes | None]

_SCOPE_TABLES = {"f": "family", "s": "session", "u": "subject"}
_OBS_SLOTS = Observation.__slots__
_OBS_SCOPES = _OBS_SLOTS.index("scopes")  # a tuple: written as a list
# Observation fields interned like ``Observation.__init__`` and the enricher share them.
_OBS_INTERNED = frozenset({
    "kind", "source", "net", "egress", "country", "city", "as_org", "binding", "service", "net_class", "agent",
    "device",
})
# Observations of an earlier layout end before these slots (appended since): read as not recorded.
_OBS_MIN_SLOTS = _OBS_SLOTS.index("service")
_NAMEDTUPLES: dict[str, type] = {}
_NAMEDTUPLE_NAMES: dict[type, str] = {}


class CodecError(ValueError):
    """A changelog record that cannot be decoded (corrupt, or from an unknown format)."""


def register_namedtuple(name: str, cls: type) -> None:
    """Allow ``cls`` (a NamedTuple kept in a detector namespace) in records, under ``name``."""
    _NAMEDTUPLES[name] = cls
    _NAMEDTUPLE_NAMES[cls] = name


def _register_detector_types() -> None:
    from detectors.concurrency import Run, Timeline
    from detectors.geo_divergence import _Point

    register_namedtuple("geo_divergence.Point", _Point)
    register_namedtuple("replay.Run", Run)
    register_namedtuple("replay.Timeline", Timeline)


_register_detector_types()


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
        self._scope_slots: dict[tuple[str, str], list[int]] | None = None

    def encode(self, key: tuple[str, str]) -> bytes | None:
        """The record value of ``key``, or None (a tombstone) when the key is gone."""
        prefix, ident = key
        store = self.store
        if prefix == "t":
            token = store.tokens.get(ident)
            return None if token is None else orjson.dumps(_token_to_list(token))
        if prefix == "d":  # only the legacy whole-namespace form reaches here
            if ident not in store.detector_state:
                return None
            return orjson.dumps([VERSION, pack(store.detector_state[ident])])
        name = _SCOPE_TABLES[prefix]
        scope = _scope_table(store, name).get(ident)
        if scope is None:
            return None
        return orjson.dumps(_scope_to_list(scope, self._slots_of(name, ident)))

    def records(self, keys: Iterable[tuple[str, str]]) -> list[Record]:
        out: list[Record] = []
        for key in sorted(keys):
            if key[0] == "d":
                out.extend(namespace_records(self.store, key[1]))
            else:
                out.append((record_key(key), self.encode(key)))
        return out

    def _slots_of(self, name: str, ident: str) -> list[int]:
        if self._scope_slots is None:
            index: dict[tuple[str, str], list[int]] = {}
            for slot, entries in self.store._scope_wheel.items():  # noqa: SLF001 -- StateStore has no public wheel yet (typed-state rewrite, issue 15)
                for entry in entries:
                    index.setdefault(entry, []).append(slot)
            self._scope_slots = index
        return sorted(self._scope_slots.get((name, ident), ()))


def encode(store: StateStore, key: tuple[str, str]) -> bytes | None:
    """One record value (None = tombstone). For many keys use ``Encoder``/``dirty_records``:
    encoding a scope here scans the store's scope wheel."""
    return Encoder(store).encode(key)


SEP = "\x1f"
_written: weakref.WeakKeyDictionary[StateStore, dict[bytes, int]] = weakref.WeakKeyDictionary()
"""Per store: namespace record key -> hash of the value last written (or restored), so a
checkpoint writes only changed entries and knows which ones to tombstone."""


def _namespace_values(name: str, namespace: dict[str, Any]) -> Iterator[tuple[bytes, bytes]]:
    for table, value in namespace.items():
        head = f"{name}{SEP}{table}"
        if type(value) is dict:
            yield record_key(("d", head)), _DICT_MARKER
            prefix = f"d:{head}{SEP}".encode("utf-8", "surrogatepass")
            for entry, item in value.items():
                yield prefix + orjson.dumps(pack(entry)), orjson.dumps([VERSION, pack(item)])
        else:
            yield record_key(("d", head)), orjson.dumps([VERSION, pack(value)])


_DICT_MARKER = orjson.dumps([VERSION, {"d": {}}])


def namespace_records(store: StateStore, name: str) -> list[Record]:
    """Changed entries of detector namespace ``name`` since the last records of it, plus
    tombstones for entries that are gone (all of them when the namespace is gone)."""
    written = _written.setdefault(store, {})
    owned = f"d:{name}{SEP}".encode("utf-8", "surrogatepass")
    before = {key for key in written if key.startswith(owned)}
    out: list[Record] = []
    namespace = store.detector_state.get(name)
    if namespace is not None:
        for key, value in _namespace_values(name, namespace):
            before.discard(key)
            digest = hash(value)
            if written.get(key) != digest:
                written[key] = digest
                out.append((key, value))
    for key in sorted(before):
        del written[key]
        out.append((key, None))
    return out


def dirty_records(store: StateStore) -> list[Record]:
    """The records of every key changed since the last checkpoint (clears the dirty set)."""
    return Encoder(store).records(store.take_dirty())


def all_keys(store: StateStore) -> Iterator[tuple[str, str]]:
    yield from (("t", key) for key in store.tokens)
    for prefix, name in _SCOPE_TABLES.items():
        yield from ((prefix, key) for key in _scope_table(store, name))
    yield from (("d", key) for key in store.detector_state)


def snapshot_records(store: StateStore) -> list[Record]:
    """Every key of the store, for a full dump (no tombstones)."""
    encoder = Encoder(store)
    out: list[Record] = []
    for key in all_keys(store):
        if key[0] == "d":
            out.extend(_namespace_values(key[1], store.detector_state[key[1]]))
        else:
            out.append((record_key(key), encoder.encode(key)))
    return out


def _obs(obs: Observation | None) -> list[Any] | None:
    if obs is None:
        return None
    values = [getattr(obs, name) for name in _OBS_SLOTS]
    values[_OBS_SCOPES] = list(obs.scopes)
    return values


def _token_to_list(t: TokenState) -> list[Any]:
    return [
        VERSION, t.type, t.family_id, t.parent_id, t.session_id, t.subject_id, t.client_id,
        t.issued_at, t.expires_at, None if t.scopes is None else sorted(t.scopes), list(t.audience),
        t.binding, _obs(t.issue), [_obs(u) for u in t.accepted], _obs(t.rotation), _obs(t.revoked),
        t.last_seen, t.wheel_slot, [_obs(u) for u in t.failed],
    ]


def _scope_to_list(s: ScopeState, slots: list[int]) -> list[Any]:
    return [
        VERSION, _obs(s.revoked), _obs(s.ended), _obs(s.disabled),
        None if s.scopes is None else sorted(s.scopes), list(s.audience), s.last_seen, s.tokens, slots,
    ]


def pack(value: Any) -> Any:
    """A detector-namespace value as plain JSON, reversibly: JSON arrays are lists, every
    JSON object is a one-key tag — {"d": {...}} dict of str keys, {"D": [[k, v], ...]}
    dict of other keys, {"T": [...]} tuple, {"F": [...]} frozenset, {"S": [...]} set,
    {"N": [name, [...]]} registered named tuple, {"O": [...]} ``Observation``, {"x": "inf"}
    non-finite float."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool:
        return value
    if kind is float:
        return value if math.isfinite(value) else {"x": repr(value)}
    if kind is list:
        return [pack(item) for item in value]
    if kind is dict:
        if all(type(k) is str for k in value):
            return {"d": {k: pack(v) for k, v in value.items()}}
        return {"D": [[pack(k), pack(v)] for k, v in value.items()]}
    if kind is tuple:
        return {"T": [pack(item) for item in value]}
    if kind is frozenset or kind is set:
        items = [pack(item) for item in value]
        if all(type(item) is str for item in items):
            items.sort()
        return {"F" if kind is frozenset else "S": items}
    if kind is Observation:
        return {"O": _obs(value)}
    name = _NAMEDTUPLE_NAMES.get(kind)
    if name is not None:
        return {"N": [name, [pack(item) for item in value]]}
    raise TypeError(f"cannot encode a {kind.__module__}.{kind.__qualname__} in a changelog record")


# -- decoding --------------------------------------------------------------------------
class Restorer:
    """Applies changelog records (in topic order) to a store, then files the restored
    keys in the expiry wheels once — so older versions of a key leave no stale filing."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._tokens: set[str] = set()
        self._scopes: dict[tuple[str, str], list[int]] = {}

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
                self._apply_namespace(raw_key, ident, value)
            else:
                name = _SCOPE_TABLES[prefix]
                table = _scope_table(store, name)
                if value is None:
                    table.pop(ident, None)
                    self._scopes.pop((name, ident), None)
                else:
                    scope, slots = _scope_from_list(_load(value))
                    table[ident] = scope
                    self._scopes[(name, ident)] = slots
        except CodecError:
            raise
        except (TypeError, ValueError, IndexError, KeyError, AttributeError) as exc:
            raise CodecError(f"bad state record {raw_key[:80]!r}: {exc}") from exc

    def _apply_namespace(self, raw_key: bytes, ident: str, value: bytes | None) -> None:
        store = self.store
        name, sep, rest = ident.partition(SEP)
        if not sep:  # first format: the whole namespace in one record
            if value is None:
                store.detector_state.pop(name, None)
                return
            namespace = unpack(_load(value)[1])
            if type(namespace) is not dict:
                raise CodecError("a detector namespace must be a dict")
            store.detector_state[name] = namespace
            return
        written = _written.setdefault(store, {})
        namespace = store.detector_state.setdefault(name, {})
        table, sep, entry = rest.partition(SEP)
        if value is None:
            written.pop(raw_key, None)
            if sep:
                tab = namespace.get(table)
                if type(tab) is dict:
                    tab.pop(_hashable(unpack(orjson.loads(entry))), None)
            else:
                namespace.pop(table, None)
            if not namespace:
                del store.detector_state[name]
            return
        written[raw_key] = hash(value)
        item = unpack(_load(value)[1])
        if sep:
            tab = namespace.setdefault(table, {})
            if type(tab) is not dict:
                raise CodecError(f"entry record for {name}/{table}, which is not a table")
            tab[_hashable(unpack(orjson.loads(entry)))] = item
        elif type(item) is dict and not item:
            namespace.setdefault(table, {})  # table marker: entries may have come first
        else:
            namespace[table] = item

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
                store._wheel[token.wheel_slot].append(ident)  # noqa: SLF001 -- StateStore has no public wheel yet (typed-state rewrite, issue 15)
        lru = store.unseen_failing
        for token in sorted(unseen, key=_last_seen):  # stable: restore order breaks ties
            lru.pop(token.token_id, None)
            lru[token.token_id] = None
        for (name, ident), slots in self._scopes.items():
            if ident in _scope_table(store, name):
                for slot in slots:
                    store._scope_wheel[slot].append((name, ident))  # noqa: SLF001 -- StateStore has no public wheel yet (typed-state rewrite, issue 15)
        self._tokens.clear()
        self._scopes.clear()


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


def _obs_from(values: Any) -> Observation | None:
    if values is None:
        return None
    if type(values) is not list or not _OBS_MIN_SLOTS <= len(values) <= len(_OBS_SLOTS):
        raise CodecError("bad observation")
    values = values + [None] * (len(_OBS_SLOTS) - len(values))
    obs = Observation.__new__(Observation)
    for name, value in zip(_OBS_SLOTS, values, strict=True):
        if name in _OBS_INTERNED and type(value) is str:
            value = intern(value)
        setattr(obs, name, value)
    obs.scopes = intern(tuple(_strs(obs.scopes))) if obs.scopes else ()
    time = _float(obs.time)
    if time is None:
        raise CodecError("observation without a time")
    obs.time = time
    return obs


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
    t.issue, t.rotation, t.revoked = _obs_from(issue), _obs_from(rotation), _obs_from(revoked)
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
    return [obs for obs in map(_obs_from, values) if obs is not None] or ()


def _scope_from_list(data: list[Any]) -> tuple[ScopeState, list[int]]:
    _, revoked, ended, disabled, scopes, audience, last_seen, tokens, slots = data
    s = ScopeState()
    s.revoked, s.ended, s.disabled = _obs_from(revoked), _obs_from(ended), _obs_from(disabled)
    s.scopes = None if scopes is None else intern(frozenset(_strs(scopes)))
    s.audience = intern(tuple(_strs(audience))) if audience else ()
    s.last_seen = _float(last_seen) or 0.0
    s.tokens = None if tokens is None else _strs(tokens)
    return s, [int(slot) for slot in slots]


def unpack(value: Any) -> Any:
    """Inverse of ``pack``."""
    kind = type(value)
    if kind is list:
        return [unpack(item) for item in value]
    if kind is not dict:
        return value
    if len(value) != 1:
        raise CodecError("an encoded object must have exactly one tag")
    ((tag, body),) = value.items()
    if tag == "d":
        return {k: unpack(v) for k, v in body.items()}
    if tag == "D":
        return {_hashable(unpack(k)): unpack(v) for k, v in body}
    if tag == "T":
        return tuple(unpack(item) for item in body)
    if tag == "F":
        return intern(frozenset(_hashable(unpack(item)) for item in body))
    if tag == "S":
        return {_hashable(unpack(item)) for item in body}
    if tag == "x":
        if body not in ("inf", "-inf", "nan"):
            raise CodecError(f"bad float {body!r}")
        return float(body)
    if tag == "O":
        return _obs_from(body)
    if tag == "N":
        name, fields = body
        cls = _NAMEDTUPLES.get(name)
        if cls is None:
            raise CodecError(f"unregistered named tuple {name!r}")
        return cls._make(unpack(item) for item in fields)  # type: ignore[attr-defined]  # registered classes are NamedTuples; typing has no base for them
    raise CodecError(f"unknown tag {tag!r}")


def _hashable(value: Any) -> Any:
    if type(value) in (list, dict, set):
        raise CodecError("a dict key or set member must be hashable")
    return value


def _last_seen(token: TokenState) -> float:
    return token.last_seen


def _scope_table(store: StateStore, name: str) -> dict[str, ScopeState]:
    return {"family": store.families, "session": store.sessions, "subject": store.subjects}[name]
