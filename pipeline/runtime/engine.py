"""The detection loop: dedup -> enrich -> event-time ordering -> detectors -> alerter.

Time advances per source (format and tenant, ``pipeline.runtime.event_time``): the watermark is
the earliest latest event time among the sources still delivering, minus
``allowed_lateness_s``; a source that sent nothing while the stream's clock moved
``source_idle_s`` stops holding it back. The watermark drives state expiry, alert
closing and lateness. It goes back when a source resumes behind it (a connector catching
up, the next file of a backfill): expiry then waits while that source delivers, so the
facts it brings late still find the state they concern. No watermark can wait for a
source not heard from yet (the next file of a concatenated backfill starts hours
behind), so once the stream has shown a source that far behind its clock, lineage state
and open alerts are kept that much longer (``event_time.Lateness``, at most
``late_retention_max_s``): whether a fact that late finds them then no longer depends on
how far *other* subjects' input had taken the stream, and `detect` and each `run`
partition, holding the same events for a subject, keep the same state for it.

An event that is in order for its keys (token, family, session, subject: nothing later
judged for any of them, nothing of theirs waiting) is judged at once, without waiting
for the watermark. One that arrives out of order for a key waits in the reorder buffer,
with the later events of its keys, until the watermark passes it, and they are judged in
event-time order. An event older than the watermark is judged at once and counted as
late, never dropped: detectors apply it to what is still in state (a late revocation
re-checks the uses it covers). Exact redeliveries (same ``event_id``) inside
``dedup_window_s`` are counted once.

The clock is the latest event time seen among events in range. An event more than
``max_lead_s`` ahead of it (plus the wall time since the clock last moved, so a
live stream that was quiet is not ahead) is held apart and does not move the
clock: one line dated "now" in a replay of last month cannot expire every
lineage. The clock jumps to held events only when the stream confirms the jump:
among the last ``2 * jump_confirm_events`` events, at least ``jump_confirm_events``
were held and they outnumber the others. A backfill followed by live data does
that within ``jump_confirm_events + 1`` live events; an attacker must out-write
the whole stream. Held events also enter once the clock comes within reach, when
the stream goes quiet and they outnumber the events in range since they were held
(``release_idle``), and at
the end of input (``flush``), in event-time order.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable

from detectors.base import Detector, Finding
from detectors.state import StateStore, forget_before, stable_hash
from detectors.tables import EPOCH_SECONDS, Table
from pipeline.runtime.alerting import Alerter
from pipeline.runtime.config import EngineConfig
from pipeline.runtime.event_time import KeyClocks, Lateness, SourceClocks, keys_of
from schemas.alerts import Alert
from schemas.events import CanonicalEvent

Enrich = Callable[[CanonicalEvent], CanonicalEvent]
MonotonicClock = Callable[[], float]
"""Monotonic wall seconds (``time.monotonic``; tests inject their own)."""

_Queued = tuple[float, int, CanonicalEvent, int]
"""Event time, arrival sequence, the event, and the stable hash of its id (computed once, on arrival)."""
_Waiting = tuple[float, int, CanonicalEvent, int, tuple[int, ...]]
"""A buffered event: as ``_Queued``, plus its order keys (``keys_of``)."""

ENGINE_NAMESPACE = "engine"
_MAX_TIME = "max_time"  # the row of the engine's "clock" table
"""The engine's own corner of the state (event ids already applied), changelogged with it."""


class LeadHold:
    """Events far ahead of the clock, kept out of it until the stream confirms them.

    It also keeps the verdicts of the last ``2 * jump_confirm_events`` arrivals
    (the held time, or ``None`` for an event in range): the evidence for a jump."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.heap: list[_Queued] = []
        self.keys: set[int] = set()  # dedup of events not yet in the engine's seen window
        self.contradicted = 0  # events in range that arrived while some were held
        self._recent: deque[float | None] = deque(maxlen=2 * config.jump_confirm_events)
        self._recent_held = 0

    def __len__(self) -> int:
        return len(self.heap)

    @property
    def full(self) -> bool:
        return len(self.heap) >= self.config.max_held_events

    @property
    def earliest(self) -> float:
        return self.heap[0][0] if self.heap else float("inf")

    def note(self, held_time: float | None) -> None:
        """Record one arrival: held at ``held_time``, or in range (``None``)."""
        recent = self._recent
        if len(recent) == recent.maxlen and recent[0] is not None:
            self._recent_held -= 1
        recent.append(held_time)
        if held_time is not None:
            self._recent_held += 1
        elif self.heap:
            self.contradicted += 1

    def confirmed(self) -> bool:
        """Held events are at least ``jump_confirm_events`` and the majority of recent arrivals."""
        held = self._recent_held
        return held >= self.config.jump_confirm_events and held > len(self._recent) - held

    def anchor(self) -> float:
        """Where a confirmed jump puts the clock: the lower median of the recently held times,
        so a few far outliers among them do not choose it."""
        times = sorted(t for t in self._recent if t is not None)
        return times[(len(times) - 1) // 2]

    def forget_evidence(self) -> None:
        self._recent.clear()
        self._recent_held = 0

    def add(self, item: _Queued) -> None:
        heapq.heappush(self.heap, item)
        self.keys.add(item[3])

    def pop(self) -> tuple[CanonicalEvent, int]:
        """The earliest held event and the hash of its id."""
        _, _, event, key = heapq.heappop(self.heap)
        self.keys.discard(key)
        if not self.heap:
            self.contradicted = 0
        return event, key


class Engine:
    def __init__(
        self,
        detectors: Iterable[Detector],
        state: StateStore | None = None,
        alerter: Alerter | None = None,
        config: EngineConfig | None = None,
        enrich: Enrich | None = None,
        clock: MonotonicClock | None = None,
    ) -> None:
        self.detectors = list(detectors)
        self.state = state or StateStore()
        self.alerter = alerter or Alerter()
        self.config = config or EngineConfig()
        self.enrich = enrich
        self.counters: Counter[str] = Counter()
        self._buffer: list[_Waiting] = []
        self._seq = itertools.count()
        self._max_time = float("-inf")  # the stream's clock: the latest event time in range
        self._watermark = float("-inf")
        self._sources = SourceClocks(self.config.source_idle_s)
        self._keys = KeyClocks()
        self._lateness = Lateness(self.config.late_retention_max_s)
        self._early: set[str] = set()  # external events buffered ahead of the clock
        # Event-id hashes in arrival order -> time they may be forgotten after.
        self._seen: dict[int, float] = {}
        self._applied: dict[int, float] = {}  # event id hash -> time, of events in the state
        self._next_expiry = float("-inf")
        self._clock = clock or time.monotonic
        self._moved_at = self._clock()  # wall time the clock last moved
        self._hold = LeadHold(self.config)
        self._refused: deque[CanonicalEvent] = deque(maxlen=self.config.max_held_events)

    @property
    def watermark(self) -> float:
        """The earliest latest event time of the sources still delivering, minus the allowed
        lateness. It goes back when a source resumes or a backfill starts behind it: expiry
        then waits for that source, so its late facts still find the state they concern."""
        return self._watermark

    def source_lags(self) -> dict[str, float]:
        """Seconds each source's latest event is behind the stream's clock (the lag gauge)."""
        return dict(self._sources.lags(self._max_time))

    def submit(self, event: CanonicalEvent, external: bool = False) -> list[Alert]:
        """Take one event; returns alerts whose fold window closed meanwhile.

        ``external``: an event of another stream (a revocation another partition read, fed to
        this one): no evidence about this stream's clock, so it neither moves the clock nor is
        held nor counts for a jump. One ahead of this stream's clock waits until the watermark
        reaches it, without holding back its keys' events (a revocation re-checks the uses it
        covers when it is judged)."""
        key = stable_hash(event.event_id)  # a stable 64-bit hash: small, the same on every instance
        if key in self._seen or key in self._hold.keys:
            self.counters["duplicates"] += 1
            return []
        if self.enrich is not None:
            event = self.enrich(event)
        self.counters["events"] += 1
        when = event.epoch
        if external:
            if when > self._max_time:
                self._seen[key] = when
                self._early.add(event.event_id)  # waits, but holds no key back
                heapq.heappush(self._buffer, (when, next(self._seq), event, key, keys_of(event)))
                return self._release(self._watermark)
            return self._enqueue(event, key, move_clock=False) + self._release(self._watermark)
        if when > self._max_time + self.config.max_lead_s and when > self._reach():
            return self._hold_back(event, key)
        self._hold.note(None)
        alerts = self._enqueue(event, key)
        if self._hold.earliest <= self._max_time + self.config.max_lead_s:
            alerts.extend(self._admit(counter="held_caught_up"))
        alerts.extend(self._release(self._watermark))
        return alerts

    def restored(self) -> None:
        """The state was just restored from a changelog: events it already holds are
        duplicates if they are delivered again (the replay after a crash or handover), and
        the latest of them is the stream's clock (so the first line after a restore cannot
        set it)."""
        replayable = self._replayable()
        for key, when in replayable.items():
            self._seen.setdefault(key, when)
            self._applied.setdefault(key, when)
        latest = [*replayable.values(), self.state.table(ENGINE_NAMESPACE, "clock", EPOCH_SECONDS).get(_MAX_TIME)]
        known = [when for when in latest if when is not None]
        if known:
            self._move_clock(max(known))

    def applied(self, event_id: str) -> bool:
        """Whether ``event_id``'s effect is in the state (released from the reorder buffer
        and detected), as the changelog keeps it."""
        return stable_hash(event_id) in self._applied

    def keep_for_replay(self, event_ids: Iterable[str]) -> None:
        """These applied events are at or past the offsets a checkpoint commits, so a restart
        delivers them again: keep their ids with the state (the changelog), so the replay
        after a restore drops them as duplicates. Ids of events below the committed offsets
        are never written: they are never delivered again (``PartitionState.commit_offsets``)."""
        replayable, applied = self._replayable(), self._applied
        for event_id in event_ids:
            key = stable_hash(event_id)
            when = applied.get(key)
            if when is not None:
                replayable.put(key, when)
        # And the stream's clock, so the first line after a restore cannot set it.
        clock = self.state.table(ENGINE_NAMESPACE, "clock", EPOCH_SECONDS)
        if self._max_time > (clock.get(_MAX_TIME) or float("-inf")):
            clock.put(_MAX_TIME, self._max_time)

    def _replayable(self) -> Table[int, float]:
        """Event time of each applied event a restart may deliver again, by its id's stable hash."""
        return self.state.table(ENGINE_NAMESPACE, "replayable", EPOCH_SECONDS)

    def pending_event_ids(self) -> set[str]:
        """Events in the reorder buffer or held ahead: not in the state yet (a checkpoint
        must not commit past them)."""
        return {entry[2].event_id for entry in self._buffer} | {entry[2].event_id for entry in self._hold.heap}

    def take_out_of_range(self) -> list[CanonicalEvent]:
        """Events refused because they were ahead while the hold was full (counted as
        ``out_of_range_events``): the caller dead-letters them. The newest
        ``max_held_events`` are kept until taken."""
        if not self._refused:  # asked after every event: the common answer is cheap
            return []
        refused = list(self._refused)
        self._refused.clear()
        return refused

    def release_idle(self) -> list[Alert]:
        """The stream went quiet: release every buffered event now instead of waiting for
        later event time to push the watermark past it (an idle partition would otherwise
        hold its last events, and their alerts, forever). Held events enter if they outnumber the
        events in range that arrived since the first of them (the stream's last word is theirs:
        a sparse stream that jumped), else
        only if the wall time the stream was quiet brings them within reach. The watermark
        stays where the sources put it (wall time moves no event time), so alerts stay open
        for folding and expiry waits as it would in a replay of the same stream."""
        hold = self._hold
        if hold.heap and len(hold) > hold.contradicted:
            alerts = self._admit(float("inf"), counter="held_idle")
        else:
            alerts = self._admit(counter="held_caught_up") if hold.heap else []
        if self._buffer:
            alerts.extend(self._release(self._max_time))
        return alerts

    def flush(self) -> list[Alert]:
        """End of input: held events enter in event-time order (the clock follows them, as
        nothing is left to contradict them), then everything buffered is released and every
        alert closed."""
        alerts: list[Alert] = []
        while self._hold.heap:
            event, key = self._hold.pop()
            self.counters["held_flushed"] += 1
            alerts.extend(self._enqueue(event, key))
            alerts.extend(self._release(self._watermark))
        alerts.extend(self._release(float("inf")))
        for detector in self.detectors:
            for finding in detector.finish(self.state):
                self.counters[f"findings.{finding.rule.id}"] += 1
                alerts.extend(self.alerter.add(finding, self.state))
        return alerts + self.alerter.flush()

    # -- event time -----------------------------------------------------------
    def _reach(self) -> float:
        """The latest event time in range: the clock plus the wall time since it moved (a
        live stream that was quiet has moved on) plus ``max_lead_s``; no clock yet, no limit."""
        if self._max_time == float("-inf"):
            return float("inf")
        idle = max(0.0, self._clock() - self._moved_at)
        return self._max_time + idle + self.config.max_lead_s

    def _move_clock(self, when: float) -> None:
        if when > self._max_time:
            self._max_time = when
            self._moved_at = self._clock()

    def _hold_back(self, event: CanonicalEvent, key: int) -> list[Alert]:
        """An event ahead of reach: held (it is evidence for a jump), or refused when the hold
        is full and the jump is not confirmed."""
        hold = self._hold
        hold.note(event.epoch)
        confirmed = hold.confirmed()
        if hold.full and not confirmed:
            self.counters["out_of_range_events"] += 1
            self._refused.append(event)
            return []
        hold.add((event.epoch, next(self._seq), event, key))
        self.counters["held_events"] += 1
        if not confirmed:
            return []
        self.counters["clock_jumps"] += 1
        anchor = hold.anchor()
        hold.forget_evidence()
        alerts = self._admit(anchor, counter="held_confirmed")
        alerts.extend(self._release(self._watermark))
        return alerts

    def _admit(self, floor: float = float("-inf"), counter: str = "held_caught_up") -> list[Alert]:
        """Move held events within reach of the clock (or of ``floor``) into the reorder
        buffer, earliest first; each one moves the clock, so a contiguous run follows."""
        alerts: list[Alert] = []
        hold, lead = self._hold, self.config.max_lead_s
        while hold.heap and hold.earliest <= max(floor + lead, self._reach()):
            event, key = hold.pop()
            self.counters[counter] += 1
            alerts.extend(self._release(event.epoch))  # what waits before it goes first
            alerts.extend(self._enqueue(event, key))
        return alerts

    def _enqueue(self, event: CanonicalEvent, key: int, move_clock: bool = True) -> list[Alert]:
        """An event in range: judged at once if late or in order for its keys, else into the
        reorder buffer; moves its source's clock, and the watermark with it."""
        when = event.epoch
        self._seen[key] = max(when, self._max_time)
        keys = keys_of(event)
        if when < self._watermark:
            # Another partition's revocation behind this one's time is no lateness of this stream.
            self.counters["late_events" if move_clock else "external_behind"] += 1
            alerts = self._judge(event, key, keys)
        elif self._keys.in_order(keys, when):
            alerts = self._judge(event, key, keys)
        else:
            self.counters["reordered_events"] += 1
            self._keys.wait(keys)
            heapq.heappush(self._buffer, (when, next(self._seq), event, key, keys))
            alerts = []
        if move_clock:
            self._lateness.note(self._max_time - when, self._max_time)
            self._move_clock(when)
            self._sources.note(event, self._max_time)
            self._watermark = self._sources.low(self._max_time) - self.config.allowed_lateness_s
        return alerts

    # -- detection --------------------------------------------------------------
    def _release(self, until: float) -> list[Alert]:
        """Judge buffered events up to ``until`` in event-time order; expire at the watermark."""
        alerts: list[Alert] = []
        buffer, clocks = self._buffer, self._keys
        while buffer and buffer[0][0] <= until:
            _, _, event, key, keys = heapq.heappop(buffer)
            if event.event_id not in self._early:
                clocks.done_waiting(keys)
            else:
                self._early.discard(event.event_id)
            alerts.extend(self._judge(event, key, keys))
        if until != float("inf") and self._watermark >= self._next_expiry:
            alerts.extend(self._expire(self._watermark))
        return alerts

    def _judge(self, event: CanonicalEvent, key: int, keys: tuple[int, ...]) -> list[Alert]:
        """``key``: the stable hash of the event's id, computed once on arrival and passed along."""
        self._keys.judged(keys, event.epoch)
        return self._detect(event, key)

    def _detect(self, event: CanonicalEvent, key: int) -> list[Alert]:
        findings: list[Finding] = []
        for detector in self.detectors:
            findings.extend(detector.process(event, self.state))
        self.state.apply(event)
        # Ids of events whose effect is in the state (those a restart may deliver again go to
        # the changelog: ``keep_for_replay``). Ids still in the reorder buffer are not here:
        # their replay must be processed.
        self._applied[key] = event.epoch
        alerts: list[Alert] = []
        for finding in findings:
            self.counters[f"findings.{finding.rule.id}"] += 1
            alerts.extend(self.alerter.add(finding, self.state))
        return alerts

    def _expire(self, watermark: float) -> list[Alert]:
        self._next_expiry = watermark + self.config.expire_every_s
        # Lineage state and open alerts wait as long again as a source was lately behind
        # (``Lateness``): what a source as late brings still finds them, to re-judge or fold into.
        kept = watermark - self._lateness.depth(self._max_time)
        self.counters["expired_tokens"] += self.state.expire(kept)
        alerts: list[Alert] = []
        for detector in self.detectors:
            for finding in detector.expire(watermark, self.state) or ():
                self.counters[f"findings.{finding.rule.id}"] += 1
                alerts.extend(self.alerter.add(finding, self.state))
        self._keys.forget_before(watermark)
        horizon = watermark - self.config.dedup_window_s
        forget_before(self._seen, horizon, float)
        forget_before(self._applied, horizon, float)
        self._replayable().forget_before(horizon, float)
        return alerts + self.alerter.close_ready(kept)
