"""The detection loop: dedup -> enrich -> event-time ordering -> detectors -> alerter.

Events are held in a reorder buffer until the watermark (latest event time
seen minus ``allowed_lateness_s``) passes them, then released in event-time
order, so a revocation that arrives a little after a use it precedes is still
applied first. An event older than the watermark is processed at once and
counted as late, never dropped. Exact redeliveries (same ``event_id``) inside
``dedup_window_s`` are counted once.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Callable, Iterable

from pydantic import BaseModel, ConfigDict, Field

from detectors.base import Detector, Finding
from detectors.state import StateStore, forget_before, stable_hash
from pipeline.alerting import Alerter
from schemas.alerts import Alert
from schemas.events import CanonicalEvent

Enrich = Callable[[CanonicalEvent], CanonicalEvent]


ENGINE_NAMESPACE = "engine"
"""The engine's own corner of the state (event ids already applied), changelogged with it."""


class EngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_lateness_s: float = Field(default=5.0, ge=0, description="Out-of-order tolerance")
    dedup_window_s: float = Field(default=900.0, ge=0, description="How long event ids are remembered")
    expire_every_s: float = Field(default=60.0, gt=0, description="Event-time interval of state expiry")


class Engine:
    def __init__(
        self,
        detectors: Iterable[Detector],
        state: StateStore | None = None,
        alerter: Alerter | None = None,
        config: EngineConfig | None = None,
        enrich: Enrich | None = None,
    ) -> None:
        self.detectors = list(detectors)
        self.state = state or StateStore()
        self.alerter = alerter or Alerter()
        self.config = config or EngineConfig()
        self.enrich = enrich
        self.counters: Counter[str] = Counter()
        self._buffer: list[tuple[float, int, CanonicalEvent]] = []
        self._seq = itertools.count()
        self._max_time = float("-inf")
        self._released_until = float("-inf")
        # Event-id hashes in arrival order -> time they may be forgotten after.
        self._seen: dict[int, float] = {}
        self._next_expiry = float("-inf")

    @property
    def watermark(self) -> float:
        return self._max_time - self.config.allowed_lateness_s

    def submit(self, event: CanonicalEvent) -> list[Alert]:
        """Take one event; returns alerts whose fold window closed meanwhile."""
        if self._is_duplicate(event):
            self.counters["duplicates"] += 1
            return []
        if self.enrich is not None:
            event = self.enrich(event)
        self.counters["events"] += 1
        when = event.epoch
        if when < self._released_until:
            self.counters["late_events"] += 1
            alerts = self._detect(event)
        else:
            heapq.heappush(self._buffer, (when, next(self._seq), event))
            alerts = []
        if when > self._max_time:
            self._max_time = when
        alerts.extend(self._release(self.watermark))
        return alerts

    def restored(self) -> None:
        """The state was just restored from a changelog: events it already holds are
        duplicates if they are delivered again (the replay after a crash or handover)."""
        released = self.state.detector_state.get(ENGINE_NAMESPACE, {}).get("released", {})
        for key, when in released.items():
            self._seen.setdefault(key, when)

    def pending_event_ids(self) -> set[str]:
        """Events held in the reorder buffer: not in the state yet (a checkpoint must not
        commit past them)."""
        return {event.event_id for _, _, event in self._buffer}

    def release_idle(self) -> list[Alert]:
        """The stream went quiet: release every buffered event now instead of waiting for
        later event time to push the watermark past it (an idle partition would otherwise
        hold its last events, and their alerts, forever). Alerts stay open for folding;
        anything that arrives older than what was released counts as late."""
        if not self._buffer:
            return []
        return self._release(self._max_time)

    def flush(self) -> list[Alert]:
        """End of input: release everything buffered and close every alert."""
        alerts = self._release(float("inf"))
        for detector in self.detectors:
            for finding in detector.finish(self.state):
                self.counters[f"findings.{finding.rule.id}"] += 1
                alerts.extend(self.alerter.add(finding))
        return alerts + self.alerter.flush()

    def _release(self, until: float) -> list[Alert]:
        alerts: list[Alert] = []
        buffer = self._buffer
        while buffer and buffer[0][0] <= until:
            when, _, event = heapq.heappop(buffer)
            self._released_until = max(self._released_until, when)
            alerts.extend(self._detect(event))
        if until != float("inf") and until >= self._next_expiry:
            alerts.extend(self._expire(until))
        return alerts

    def _detect(self, event: CanonicalEvent) -> list[Alert]:
        findings: list[Finding] = []
        for detector in self.detectors:
            findings.extend(detector.process(event, self.state))
        self.state.apply(event)
        # Ids of events whose effect is in the state: kept with the state (changelog), so a
        # replay after a restore drops them as duplicates. Ids still in the reorder buffer
        # are not here: their replay must be processed.
        self.state.namespace(ENGINE_NAMESPACE).setdefault("released", {})[stable_hash(event.event_id)] = event.epoch
        alerts: list[Alert] = []
        for finding in findings:
            self.counters[f"findings.{finding.rule.id}"] += 1
            alerts.extend(self.alerter.add(finding))
        return alerts

    def _expire(self, watermark: float) -> list[Alert]:
        self._next_expiry = watermark + self.config.expire_every_s
        self.counters["expired_tokens"] += self.state.expire(watermark)
        alerts: list[Alert] = []
        for detector in self.detectors:
            for finding in detector.expire(watermark, self.state) or ():
                self.counters[f"findings.{finding.rule.id}"] += 1
                alerts.extend(self.alerter.add(finding))
        horizon = watermark - self.config.dedup_window_s
        forget_before(self._seen, horizon, float)
        released = self.state.detector_state.get(ENGINE_NAMESPACE, {}).get("released")
        if released:
            forget_before(released, horizon, float)
            self.state.namespace(ENGINE_NAMESPACE)  # changed: the checkpoint writes the tombstones
        return alerts + self.alerter.close_ready(watermark)

    def _is_duplicate(self, event: CanonicalEvent) -> bool:
        """Exact redelivery check; a stable 64-bit hash of the id keeps the window small
        and means the same on every instance."""
        key = stable_hash(event.event_id)
        if key in self._seen:
            return True
        self._seen[key] = max(event.epoch, self._max_time)
        return False
