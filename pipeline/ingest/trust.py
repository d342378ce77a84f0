"""Trust boundaries on input: which source may say what.

Anyone who can write to an input topic can write any line, and a revocation-class
event (a revocation, a logout, a disabled user, the IdP's reuse verdict) arms
post-revocation detection, whose alerts revoke automatically. So events are
checked after normalization, before the engine (and the revocations topic) sees
them:

- a topic carries only the formats configured for it (``topic_formats``; a topic
  not named there: every format but ``canonical``);
- ``canonical`` lines only from ``trusted_topics`` (tokenwatch's own output, or a
  producer the operator controls), or in ``tokenwatch detect`` when
  ``detect_canonical`` is on (its input is files the operator names);
- revocation-class events only from an ``authoritative`` source: a format with
  allowlists of tenants (Keycloak realm, gateway issuer, Entra tenant id, …) and of
  the events' ``source`` field (for ``canonical`` lines, the system the producer
  names).

``check`` decides (a frozen ``Refusal`` of facts), ``describe`` words it; a refused
event is dead-lettered with the reason and counted, never silently dropped. The settings
(``TrustConfig``) are in ``pipeline.ingest.config``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, Literal

from pipeline.ingest.config import CANONICAL, TrustConfig, topic_matches
from pipeline.ingest.normalize import Normalized
from schemas.events import CanonicalEvent, EventKind
from schemas.redaction import TokenHasher, redact_text
from schemas.sources import FORMATS

DETECT_INPUT = "detect input"

REVOCATION_KINDS = frozenset(
    {EventKind.REVOKED, EventKind.SESSION_ENDED, EventKind.PRINCIPAL_DISABLED, EventKind.REUSE_REPORTED}
)
"""Events that arm post-revocation detection (and, but for a reuse verdict, are sent to every instance)."""

MAX_REFUSED_LISTED = 20
"""Refused events named in one dead letter (a refused CloudTrail log file may hold thousands)."""

_SHOWN_CHARS = 100  # tenant and source are the sender's free text: quoted, cut

RefusalCode = Literal["format_not_allowed", "canonical_untrusted", "not_authoritative"]


@dataclass(frozen=True)
class Refusal:
    """Why an event was not let in: the facts; ``describe`` words them."""

    code: RefusalCode
    format: str
    origin: str  # the topic, or DETECT_INPUT
    kind: str
    tenant: str | None
    source: str


class TrustRules:
    """``TrustConfig`` applied: the formats each input may carry, cached per topic."""

    def __init__(self, config: TrustConfig) -> None:
        self.config = config
        self._allowed: dict[str | None, frozenset[str]] = {}

    def allowed_formats(self, topic: str | None) -> frozenset[str]:
        """Formats ``topic`` may carry (None: the input of ``tokenwatch detect``)."""
        found = self._allowed.get(topic)
        if found is None:
            found = self._allowed[topic] = self._formats_of(topic)
        return found

    def trusted(self, topic: str | None) -> bool:
        """Whether ``topic`` (None: the detect input) may carry canonical lines at all."""
        return self.config.detect_canonical if topic is None else topic_matches(topic, self.config.trusted_topics)

    def _formats_of(self, topic: str | None) -> frozenset[str]:
        config = self.config
        trusted = self.trusted(topic)
        named: tuple[str, ...] | None = None
        if topic is not None:
            named = config.topic_formats.get(topic)
            if named is None:
                named = next((formats for pattern, formats in config.topic_formats.items()
                              if fnmatchcase(topic, pattern)), None)
        formats = set(FORMATS) if named is None else set(named)
        if not trusted:
            formats.discard(CANONICAL)
        elif named is None:
            formats.add(CANONICAL)
        return frozenset(formats)

    def check(self, event: CanonicalEvent, fmt: str, topic: str | None) -> Refusal | None:
        """None when ``event`` (of format ``fmt``, read from ``topic``) may go on; else why not."""
        if fmt not in self.allowed_formats(topic):
            untrusted = fmt == CANONICAL and not self.trusted(topic)
            code: RefusalCode = "canonical_untrusted" if untrusted else "format_not_allowed"
        elif event.kind in REVOCATION_KINDS and not any(s.covers(fmt, event, topic) for s in self.config.authoritative):
            code = "not_authoritative"
        else:
            return None
        return Refusal(code, fmt, DETECT_INPUT if topic is None else topic, event.kind.value, event.tenant,
                       event.source)

    def split(
        self, events: list[CanonicalEvent], fmt: str, topic: str | None, formats: tuple[str, ...] | None = None,
    ) -> tuple[list[CanonicalEvent], list[tuple[CanonicalEvent, Refusal]]]:
        """The events that may go on, and the refused ones with their refusal. ``formats`` gives
        each event's own format when one line mixed them (a transport envelope): a record is
        judged by what it is, not by what most of its envelope is."""
        allowed = self.allowed_formats(topic)
        if (fmt in allowed if formats is None else all(f in allowed for f in formats)) and _no_revocation(events):
            return events, []  # the common case: nothing to decide per event
        kept: list[CanonicalEvent] = []
        refused: list[tuple[CanonicalEvent, Refusal]] = []
        for index, event in enumerate(events):
            refusal = self.check(event, formats[index] if formats is not None else fmt, topic)
            if refusal is None:
                kept.append(event)
            else:
                refused.append((event, refusal))
        return kept, refused

    def split_line(
        self, line: Normalized, topic: str | None,
    ) -> tuple[list[CanonicalEvent], list[tuple[CanonicalEvent, Refusal]]]:
        """``split`` for what one line became: a line of no events (a skipped type) has nothing
        to judge. The service, `detect`'s workers and the message keys all judge lines so."""
        if not line.events:
            return [], []
        return self.split(line.events, line.format or "unknown", topic, line.event_formats)


def _no_revocation(events: list[CanonicalEvent]) -> bool:
    """No event of ``events`` arms post-revocation detection (a loop: a generator in ``any``
    cost ~0.5 us a line, most lines being one event)."""
    for event in events:
        if event.kind in REVOCATION_KINDS:
            return False
    return True


def describe(refusal: Refusal) -> str:
    """The dead letter's reason, naming the key that decides."""
    where = "the detect input" if refusal.origin == DETECT_INPUT else f"topic {_shown(refusal.origin)}"
    if refusal.code == "canonical_untrusted":
        key = "trust.detect_canonical" if refusal.origin == DETECT_INPUT else "trust.trusted_topics"
        return f"trust: canonical events are not accepted from {where} ({key})"
    if refusal.code == "format_not_allowed":
        return f"trust: format {refusal.format} is not allowed on {where} (trust.topic_formats)"
    return (f"trust: {refusal.kind} from {refusal.format} (tenant {_shown(refusal.tenant)}, source "
            f"{_shown(refusal.source)}) is not from an authoritative source (trust.authoritative)")


def _shown(value: str | None) -> str:
    if value is None:
        return "none"
    return repr(value[:_SHOWN_CHARS] + ("…" if len(value) > _SHOWN_CHARS else ""))


def refused_letter(refused: list[tuple[CanonicalEvent, Refusal]], fmt: str, origin: str,
                   hash_token: TokenHasher) -> dict[str, Any]:
    """The dead letter of a record's refused events: the first refusal's reason (redacted: it quotes
    the sender's tenant and source) and code, and which events (ids and kinds only)."""
    first = refused[0][1]
    return {
        "reason": redact_text(describe(first), hash_token),
        "trust": first.code,
        "format": fmt,
        "origin": origin,
        "refused_events": len(refused),
        "events": [{"event_id": redact_text(event.event_id, hash_token), "kind": event.kind.value}
                   for event, _ in refused[:MAX_REFUSED_LISTED]],
    }
