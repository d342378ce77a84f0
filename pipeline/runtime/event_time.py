"""Event time per source and per key: what the engine's watermark and its in-order release read.

A *source* is a format and tenant (``CanonicalEvent.source``, ``tenant``) within the stream one
engine reads: the whole input of ``tokenwatch detect``, one input partition of ``tokenwatch run``
(the service runs one engine per partition). Keying sources by the event, not by the transport,
is what lets both commands share this code: a file and a partition are just arrival orders.

A source is *idle* once the stream's clock (the latest event time of any source) has moved
``idle_s`` past the moment it was last heard from. Idleness is measured in stream time, never
wall time, so a replay of a file and the live service judge the same arrival order alike.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from schemas.events import CanonicalEvent

MAX_SOURCES = 256
"""Bound of the sources tracked: a tenant is attacker-influenced; beyond it, sources fold into
their format (then into one ``other`` source)."""
MAX_SOURCE_NAME = 128
OTHER = "other"
NEVER = float("-inf")


def source_of(event: CanonicalEvent) -> str:
    """The source an event's time belongs to: format and tenant, bounded."""
    if event.tenant:
        return f"{event.source}/{event.tenant}"[:MAX_SOURCE_NAME]
    return event.source[:MAX_SOURCE_NAME]


class SourceClocks:
    """Latest event time per source, and the stream time each was last heard from."""

    def __init__(self, idle_s: float, limit: int = MAX_SOURCES) -> None:
        self.idle_s = idle_s
        self.limit = limit
        self.latest: dict[str, float] = {}
        self._heard: dict[str, float] = {}  # stream clock when the source last delivered

    def note(self, event: CanonicalEvent, stream: float) -> None:
        """One arrival; ``stream`` is the stream's clock after it."""
        name = self._slot(event)
        when = event.epoch
        if when > self.latest.get(name, NEVER):
            self.latest[name] = when
        self._heard[name] = stream

    def low(self, stream: float) -> float:
        """The earliest latest time among sources heard within ``idle_s`` of the stream's clock
        (``stream`` itself when none is): no source still delivering is left behind. Idle
        sources are forgotten; one that resumes counts again from its next event."""
        horizon = stream - self.idle_s
        low = stream
        idle: list[str] = []
        for name, heard in self._heard.items():
            if heard < horizon:
                idle.append(name)
            elif self.latest[name] < low:
                low = self.latest[name]
        for name in idle:
            del self._heard[name], self.latest[name]
        return low

    def lags(self, stream: float) -> Iterator[tuple[str, float]]:
        """(source, seconds its latest event is behind the stream's clock), for the lag gauge."""
        for name, latest in self.latest.items():
            yield name, max(0.0, stream - latest)

    def _slot(self, event: CanonicalEvent) -> str:
        name = source_of(event)
        if name in self.latest or len(self.latest) < self.limit:
            return name
        fmt = event.source[:MAX_SOURCE_NAME]
        return fmt if fmt in self.latest or len(self.latest) < self.limit else OTHER


def keys_of(event: CanonicalEvent) -> tuple[int, ...]:
    """What an event's order is judged by: its token, token family, session and subject (a
    client is shared by everyone: order across users does not matter to any rule).

    Python's own string hash: ``KeyClocks`` lives in memory only, so a per-process hash is
    enough, and it costs a fraction of ``stable_hash``'s blake2b (3 calls per event)."""
    keys: list[int] = []
    token = event.token
    if token is not None:
        keys.append(hash("t:" + token.id))
        if token.family_id:
            keys.append(hash("f:" + token.family_id))
    if event.session_id:
        keys.append(hash("s:" + event.session_id))
    if event.subject is not None and event.subject.id:
        keys.append(hash("u:" + event.subject.id))
    return tuple(keys)


class KeyClocks:
    """Latest event time judged per key, and keys with an event waiting in the reorder buffer.

    An event not older than any of its keys' latest, with none of them waiting, is in order:
    the engine judges it at once instead of waiting for the watermark."""

    def __init__(self) -> None:
        self.latest: dict[int, float] = {}
        self.waiting: Counter[int] = Counter()

    def in_order(self, keys: tuple[int, ...], when: float) -> bool:
        latest, waiting = self.latest, self.waiting
        return all(latest.get(k, NEVER) <= when and not waiting[k] for k in keys)

    def judged(self, keys: tuple[int, ...], when: float) -> None:
        latest = self.latest
        for k in keys:
            if when > latest.get(k, NEVER):
                latest[k] = when

    def wait(self, keys: tuple[int, ...]) -> None:
        self.waiting.update(keys)

    def done_waiting(self, keys: tuple[int, ...]) -> None:
        waiting = self.waiting
        for k in keys:
            waiting[k] -= 1
            if waiting[k] <= 0:
                del waiting[k]

    def forget_before(self, watermark: float) -> None:
        """Keys last judged before the watermark: any event for them now is in order or late."""
        self.latest = {k: t for k, t in self.latest.items() if t >= watermark}


class Lateness:
    """How far behind the stream's clock a source has lately delivered, for state retention.

    Expiry follows the watermark, and the watermark cannot wait for a source it has not heard
    from yet: the next file of a concatenated backfill, or a connector's first catch-up, starts
    hours behind. Whether the state it concerns had been swept by then depended on how far
    *other* subjects' earlier input had taken the stream (a sweep runs only past the highest
    watermark), so `detect` and one `run` partition, holding the same events for a subject,
    could disagree. Once the stream has shown a source this far behind its clock, state is kept
    this much longer, so a later source as late finds it alike in both, whatever else shares the
    stream. The extension lasts until the clock has moved on by as much (a backfill followed by
    live data sheds it) and is at most ``max_s`` (its memory bound)."""

    def __init__(self, max_s: float) -> None:
        self.max_s = max_s
        self._depth = 0.0
        self._until = NEVER  # stream clock up to which the depth holds

    def note(self, behind: float, clock: float) -> None:
        """An event ``behind`` seconds behind the stream's clock ``clock`` (before it moved)."""
        if behind <= 0:
            return
        behind = min(behind, self.max_s)
        if behind >= self.depth(clock):
            self._depth, self._until = behind, clock + behind

    def depth(self, clock: float) -> float:
        """Seconds state is kept beyond its own retention at stream clock ``clock``."""
        return self._depth if clock <= self._until else 0.0
