"""The message-key rule: which partition an input record goes to.

A service instance keeps detection state (token lineage, refresh rotation,
recent uses and places, revocations) only for the partitions it owns, so two
events can only be compared if they land on the same partition. The key is
therefore taken from the canonical events the line maps to, not from vendor
fields, and it is the outermost lineage id the line names:

    key = subject id, else session id, else token family id, else token id,
          else event id                        (of the line's canonical events)

Lineage ids nest (a token belongs to a family, a family to a session, a
session to a subject), so keying by the outermost one keeps every inner link
on one partition: a refresh chain, the uses of its tokens, the session's
logout and the subject's disablement. It is also the one id nearly every
source names on every event. The inner ids do not: Keycloak's family is
"<session>/<client>" but its introspections and logouts name only the session;
Graph activity names the token (Entra's uniqueTokenIdentifier) and the user but
no session, while the Entra sign-in that minted the token is a session event;
gateway logs name ``sub`` and ``jti`` but rarely ``sid``; Okta revocations and
user deactivations name only the user. Keyed by family (or session) first, each
of those pairs would be split across partitions; keyed by subject they meet.
The cost is coarser keys: one subject's events are processed in order on one
partition. A user's event rate is far below a partition's capacity; a busy
service account (client credentials, a Kubernetes service account shared by
many pods) concentrates on one partition, as it would under a family rule too
(sessionless tokens have no family) except for Kubernetes, whose pod sessions
would otherwise spread.

The key is the id's UTF-8 bytes, with no prefix (an id is never hashed with
Python's ``hash()``, so keys are the same in every run and every producer, and
Kafka's murmur2 partitioner maps them the same way from any client). A line
that maps to several events (a Keycloak code exchange minting two tokens,
a CloudTrail role-chaining call that uses one key and mints another) gets one
key: the highest-ranked id any of its events names, taken from the first event
naming it. A line that is not JSON, not an object, matches no format, fails its
adapter, or is a type tokenwatch skips, is keyed ``sha256:<hex of the line>``
(the ``raw_sha256`` of the dead letter the service will write): it is still
produced, so the service dead-letters it with its topic/partition/offset and
nothing is lost.

When one token's events still arrive on different partitions (a source that
names the subject differently, e.g. Okta's user id at issuance against the
login in an access token's ``sub`` at a gateway; a gateway that logs only an
opaque token, keyed by the token's hash; a token exchange whose new token
belongs to another subject), each partition sees half the story: issue-to-use
geo and scope checks, concurrent-use and binding checks that need the issuance,
and refresh-reuse across the split are missed, silently. Revocations are not
affected: revoked / session_ended / principal_disabled events are also read by
every instance from the revocations topic, so post-revocation use is detected
wherever the use lands. Remedy: key the source by an id both sides share (the
subject as the IdP names it), e.g. by mapping the gateway's subject claim to
the IdP's user id, or produce such a source in the canonical format.

Token ids derived from a raw token (a gateway that logs the bearer string) are
keyed hashes: producers of one topic must share ``TOKENWATCH_TOKEN_HASH_KEY``
(as service instances must) for those lines to key alike.
"""

from __future__ import annotations

import functools
import hashlib
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from pipeline.ingest.config import InputConfig
from pipeline.ingest.normalize import HANDLE_FIELD, Normalizer, envelope_entries
from pipeline.ingest.trust import TrustRules
from schemas.events import CanonicalEvent, EventKind
from schemas.redaction import TokenHasher
from schemas.sources import FORMATS
from schemas.sources.common import MAX_ID

KeyBasis = Literal["subject", "session", "family", "token", "event", "content"]

#: The precedence of the rule, outermost lineage id first.
KEY_ORDER: tuple[KeyBasis, ...] = ("subject", "session", "family", "token", "event")
CONTENT_PREFIX = b"sha256:"


@dataclass(frozen=True, slots=True)
class LineKey:
    """A line's message key and what it was derived from (``content``: the line did not map)."""

    key: bytes
    basis: KeyBasis
    format: str | None = None
    reason: str | None = None
    epoch: float | None = None  # the earliest event time of the line (backfill merge order)


GLOBAL_KINDS = frozenset({EventKind.REVOKED, EventKind.SESSION_ENDED, EventKind.PRINCIPAL_DISABLED})


def is_global(event: CanonicalEvent) -> bool:
    """A revocation-like event that succeeded: it concerns every partition (every ``run``
    instance and every ``detect --workers`` worker), wherever its key routes it."""
    return event.kind in GLOBAL_KINDS and event.outcome.result != "failure"


def _ids(event: CanonicalEvent) -> dict[KeyBasis, str | None]:
    token = event.token
    return {
        "subject": event.subject.id if event.subject else None,
        "session": event.session_id,
        "family": token.family_id if token else None,
        "token": token.id if token else None,
        "event": event.event_id,
    }


def event_key(events: Sequence[CanonicalEvent]) -> tuple[bytes, KeyBasis] | None:
    """The key of a line that mapped to ``events`` (None when there are none)."""
    if not events:
        return None
    ids = [_ids(event) for event in events]
    for basis in KEY_ORDER:
        for entry in ids:
            value = entry[basis]
            if value:
                return value.encode("utf-8", "surrogatepass"), basis
    return None  # unreachable: event_id is required and non-empty


def content_key(data: bytes) -> bytes:
    """Key of a line that maps to no event: the SHA-256 of its bytes, as the dead letter records it."""
    return CONTENT_PREFIX + hashlib.sha256(data).hexdigest().encode("ascii")


def partition_key(raw: Mapping[str, Any], format_name: str = "auto", *, hash_token: TokenHasher,
                  config: InputConfig | None = None) -> bytes:
    """The message key of one parsed record of ``format_name`` ("auto": detected).

    Pure: the same record gives the same key in every run (no ``hash()``). A record
    that maps to no event is keyed by the SHA-256 of its canonical JSON (sorted keys).
    """
    return line_key(orjson.dumps(raw, option=orjson.OPT_SORT_KEYS), hash_token, format_name, config).key


SHIPPED_INPUT = InputConfig()


def line_key(line: bytes, hash_token: TokenHasher, format_name: str = "auto", config: InputConfig | None = None,
             trust: TrustRules | None = None, topic: str | None = None) -> LineKey:
    """The key of one input line (without its newline); never raises.

    The line is mapped exactly as the service will map it (the normalizer's parsing,
    its repairs of attacker-written fields, a CloudTrail file record by record): a use
    whose user agent is cut must still land on its token's partition. So the mapping takes
    the deployment's ``[input]`` (``config``; default: the shipped one: its ``max_depth``
    decides what of a deep record is kept) and keys from the events ``trust``, the
    deployment's ``[trust]`` rules, let ``topic`` carry (a refused record of an envelope
    must not take the key from the kept ones).

    Events dated past the future-skew bound are left out of the key as the service leaves
    them out (a record dated 2099 first in an envelope must not take the line to its
    subject's partition), except when every event of the line is: the service judges the
    bound when it reads the line, later than the producer sends it (lag, a replay), so such a
    line is keyed by its token (should the service refuse it, it reaches no engine and the key
    changes nothing) and keeps its place in a backfill merge (no event time)."""
    config = config or SHIPPED_INPUT
    normalizer = _normalizer(hash_token, format_name or "auto", config)
    try:
        result = normalizer.normalize(line, "key")
    except Exception as exc:  # noqa: BLE001 -- a key must always be given; the service decides
        return LineKey(content_key(line), "content", None, type(exc).__name__)
    events = result.events if trust is None else trust.split_line(result, topic)[0]
    horizon = time.time() + config.max_future_skew_s
    in_time = [event for event in events if event.epoch <= horizon]
    found = event_key(in_time or events)
    if found is None:
        if result.dead_letter is not None:
            reason = str(result.dead_letter["reason"])
        elif result.events:
            reason = "every event refused by the trust rules"
        else:
            reason = f"skipped type {result.skipped_type}" if result.skipped_type else "no events"
        return LineKey(content_key(line), "content", result.format, reason[:200])
    epoch = min(event.epoch for event in in_time) if in_time else None
    return LineKey(found[0], found[1], result.format, epoch=epoch)


# -- the key straight from a parsed record, for the formats most lines come in ---------------
#
# `detect --workers` routes lines before any worker maps them: for a gateway or canonical
# record the key is read from the record's own fields, at the cost of a JSON parse. Each
# reader answers only when the rule above is sure to give the same key (the id that would
# win is a plain string the vendor model keeps as it is: not cut, not dropped); otherwise
# it answers None and the caller maps the line (``line_key``). A line that maps to no event
# may be keyed otherwise than ``line_key`` keys it: it reaches no engine, so where it goes
# changes nothing (tests/pipeline/test_quick_keys.py checks both against each other).

QuickKey = tuple[bytes, bool]
"""A record's key, and whether it may hold a revocation-like event (``is_global``)."""

_GLOBAL_KIND_NAMES = frozenset(kind.value for kind in GLOBAL_KINDS)
MAX_EVENT_ID = 512  # CanonicalEvent.event_id's max_length


def _first_id(values: Sequence[tuple[object, int | None]]) -> bytes | None:
    """The first id of ``values`` (each with the length its model caps it at) that the rule
    would take, in rule order; None when unsure: a value the model would refuse, cut or
    drop (the repair decides the key), or no id at all."""
    for value, cap in values:
        if value is None or value == "":
            continue
        if type(value) is not str or (cap is not None and len(value) > cap):
            return None
        return value.encode("utf-8", "surrogatepass")
    return None


def _gateway_key(raw: Mapping[str, Any]) -> QuickKey | None:
    claims = raw.get("jwt")
    if type(claims) is not dict:
        return None  # no claims: the token id is the hash of the raw token
    key = _first_id(((claims.get("sub"), MAX_ID), (claims.get("sid"), MAX_ID), (claims.get("jti"), MAX_ID)))
    return None if key is None else (key, False)  # a gateway line is always a use


def _canonical_key(raw: Mapping[str, Any]) -> QuickKey | None:
    subject, token = raw.get("subject"), raw.get("token")
    if (subject is not None and type(subject) is not dict) or (token is not None and type(token) is not dict):
        return None
    subject, token = subject or {}, token or {}
    key = _first_id(((subject.get("id"), None), (raw.get("session_id"), None), (token.get("family_id"), None),
                     (token.get("id"), None), (raw.get("event_id"), MAX_EVENT_ID)))
    kind = raw.get("kind")
    return None if key is None else (key, type(kind) is str and kind in _GLOBAL_KIND_NAMES)


QUICK_KEYS: dict[str, Callable[[Mapping[str, Any]], QuickKey | None]] = {
    "gateway": _gateway_key,
    "canonical": _canonical_key,
}
"""Per format, its key read from a parsed record (the formats most traffic comes in)."""


def quick_key(raw: object, format_name: str = "auto") -> QuickKey | None:
    """The key of one parsed record by the rule, without mapping it; None when unsure."""
    if type(raw) is not dict or HANDLE_FIELD in raw or envelope_entries(raw) is not None:
        return None
    if format_name != "auto":
        reader = QUICK_KEYS.get(format_name)
        return reader(raw) if reader is not None and FORMATS[format_name].matches(raw) else None
    for name, reader in QUICK_KEYS.items():
        if FORMATS[name].matches(raw):
            return reader(raw)
    return None


@functools.lru_cache(maxsize=8)
def _normalizer(hash_token: TokenHasher, format_name: str, config: InputConfig) -> Normalizer:
    if format_name != "auto" and format_name not in FORMATS:
        raise ValueError(f"unknown format {format_name!r}")
    return Normalizer(hash_token, config.model_copy(update={"max_future_skew_s": math.inf}), forced_format=format_name)
