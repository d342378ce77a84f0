"""A share of a stream's users, with everything they did, for quicker replays.

Tuning replays a stream once per threshold value; on the default demo (~185k events) each
replay takes seconds. Every detector keeps its state per token, session or subject, so
replaying a deterministic share of the users — every event of theirs, and of their tokens,
families and sessions — gives each kept user the same verdicts as the whole stream would.
Attacked users are always kept, so attacks caught are unchanged; alerts on benign users
scale with the share.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from schemas.events import CanonicalEvent


def kept(user: str, share: float, seed: int = 0) -> bool:
    """Whether ``user`` is in the ``share`` of users picked by ``seed``: the same user is
    picked on every run and machine (a keyed hash, not Python's salted ``hash``)."""
    digest = hashlib.blake2b(user.encode(), digest_size=8, key=seed.to_bytes(8, "big")).digest()
    return int.from_bytes(digest, "big") < share * 2**64


def _ids(event: CanonicalEvent) -> set[str]:
    """The token, parent token, ``family:<id>`` and session an event names (as labels name them)."""
    ids = {event.session_id} if event.session_id else set()
    tok = event.token
    if tok is not None:
        ids.add(tok.id)
        if tok.family_id:
            ids.add(f"family:{tok.family_id}")
        if tok.parent_id:
            ids.add(tok.parent_id)
    return ids


def by_users(events: Sequence[CanonicalEvent], share: float, keep: Iterable[str] = (), seed: int = 0) -> list[CanonicalEvent]:
    """The events of a ``share`` (0–1] of the users, and of every user and token, session or
    ``family:<id>`` named in ``keep`` (e.g. the labelled attacks' users and keys): each kept
    user's events, every event naming a token, family or session of theirs, and every event of
    a user whose events name a kept key (a workload identity using a labelled token). In input order."""
    if not 0 < share <= 1:
        raise ValueError(f"share must be in (0, 1], not {share}")
    if share == 1:
        return list(events)
    wanted = set(keep)
    users = {e.subject.id for e in events if e.subject is not None
             and (e.subject.id in wanted or _ids(e) & wanted or kept(e.subject.id, share, seed))}
    ids = set(wanted)
    for event in events:
        if event.subject is not None and event.subject.id in users:
            ids |= _ids(event)
    return [e for e in events if (e.subject is not None and e.subject.id in users) or _ids(e) & ids]
