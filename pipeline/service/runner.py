"""The service loop: poll → normalize → per-partition engine → sinks, with checkpoints.

Delivery is at-least-once: offsets are committed only by a checkpoint (flush
sinks → changelog → commit), sinks are idempotent (alert ``_id`` = alert id,
dead letter id = ``<topic>-<partition>-<offset>``). Alerts still inside their
fold window are written as updates at every checkpoint (same id, so the final
version replaces them), so an alert is visible within one checkpoint interval
instead of one fold window. When a sink is down, consumption pauses and the
flush is retried with backoff while the consumer keeps polling (it stays in
the group); nothing is committed meanwhile. A sink that cannot even start
(templates) keeps the service out of the group, /healthz 503 with the reason.

Poison records: a record that makes any stage raise (normalize, detect, alert
emission, dead-letter encoding) is dead-lettered with its topic/partition/offset
and a reason naming the stage and exception type, and the loop goes on. A
record's offset becomes committable only once it is processed or dead-lettered,
so a failure that escapes (the broker itself failing) never commits it unseen.

Rebalances (eager, range assignor): a revoke checkpoints and commits the
partitions being given up (on a worker thread, see ``rebalance.RebalanceListener``),
then drops their state; a (re)assigned partition is restored from the changelog and
rewound to where that state stands (its committed offset, or the offsets the restored
checkpoint recorded when further) before it is resumed. A broker flapping through a rebalance
does not stop the loop: a restore that times out is retried with back-off, its partition paused
meanwhile, a checkpoint whose commit or changelog send times out is completed by the next
(``Service._checkpoint_failed``), and a commit the group refuses (evicted after the session
timeout) drops that checkpoint's commit and waits for the rebalance that follows (``Rebalance.refused``).

The service keeps the loop; its parts are objects of their own: ``rebalance.Rebalance``
(partition ownership), ``response_worker.ServiceResponse`` (the response worker),
``retraining.Retraining`` (the anomaly model's schedule), ``backlog.BacklogProgress``,
``revocations.RevocationFeed``, and a ``Fanout`` over the sinks.
"""

from __future__ import annotations

import errno
import logging
import signal
import socket
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from functools import partial
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.errors import KafkaError

from detectors.base import Detector
from pipeline import exit_codes
from pipeline.config import Settings
from pipeline.kafka.config import consumer_kwargs, producer_kwargs
from pipeline.kafka.keys import is_global
from pipeline.metrics import Health, MetricsServer, ServiceMetrics
from pipeline.runtime.build import build_reader
from pipeline.runtime.engine import Enrich
from pipeline.runtime.event_time import MAX_SOURCES
from pipeline.service.backlog import BacklogProgress, consumer_lag
from pipeline.service.checkpoint import (
    PendingCheckpoint,
    alert_digest,
    begin_checkpoint,
    complete,
    dead_letter_rejected,
    stage_alert,
)
from pipeline.service.config import ServiceConfig
from pipeline.service.dead_letters import (
    SourceRecord,
    applied,
    failure_dead_letter,
    judged_event_tracer,
    original_without_handle,
)
from pipeline.service.partitions import (
    STATE_STORE,
    ChangelogMismatch,
    PartitionState,
    changelog_origin,
    new_partition_state,
    restore_partition,
)
from pipeline.service.rebalance import RESTORE_CALL_TIMEOUT_MS, Rebalance, RebalanceListener, transient
from pipeline.service.response_worker import ServiceResponse, handle_store
from pipeline.service.retraining import Retraining
from pipeline.service.revocations import RevocationFeed
from pipeline.service.startup import StartupError, StoppedBeforeStart, lasting_refusal, refuse_early
from pipeline.sinks.base import SOURCE_FIELD, Sink, SinkUnavailable
from pipeline.sinks.fanout import Fanout
from schemas.alerts import Alert
from schemas.events import CanonicalEvent
from schemas.redaction import TokenHasher

COUNTED_ALERT_IDS = 200_000
"""Alert ids remembered so an alert staged open and later final is counted once."""
CHANGELOG_SLICE = 250
"""Changelog records a checkpoint in flight sends per loop turn (~30 ms of ``producer.send``)."""
FETCH_MAX_WAIT_MS = 50
"""How long the broker may hold a fetch that finds nothing new (kafka-python's default, 500 ms,
is added to the latency of a record that arrives meanwhile on a broker that does not answer the
waiting fetch at once, as Tansu does not); an idle consumer then asks 20 times a second."""

log = logging.getLogger("tokenwatch.service")


class Service:
    """One instance of the consumer group. ``run`` returns after ``stop`` (or a signal)."""

    def __init__(
        self,
        settings: Settings,
        config: ServiceConfig,
        hash_token: TokenHasher,
        sinks: Iterable[Sink],
        enrich: Enrich | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.config = config
        self.sinks = Fanout.of(sinks)
        self.enrich = enrich
        self.metrics = metrics or ServiceMetrics()
        self.hash_token = hash_token
        handles = handle_store(settings, hash_token) if settings.response.enabled else None
        self._repairs_seen: Counter[str] = Counter()
        # What each partition's engine had counted at the last _count_engines (engines go with their partition).
        self.reader = build_reader(settings, hash_token,
                                   accept_handle=handles.accept if handles is not None else None)
        kafka = settings.kafka
        self.changelog_topic = kafka.topics.changelog(STATE_STORE)
        self.origin = changelog_origin(kafka.topics.input)
        self.consumer = KafkaConsumer(
            **consumer_kwargs(kafka), partition_assignment_strategy=[RangePartitionAssignor],
            fetch_max_wait_ms=FETCH_MAX_WAIT_MS,
        )
        self.restorer = KafkaConsumer(**consumer_kwargs(kafka, group=False))
        self.producer = KafkaProducer(**producer_kwargs(kafka))
        self.revocations = RevocationFeed(kafka, self.producer, settings.state.revocation_retention_s)
        self.response = (ServiceResponse(settings, self.revocations.publish, handles=handles)
                         if settings.response.enabled else None)
        self.states: dict[int, PartitionState] = {}
        self.rebalance = Rebalance(
            self.consumer, self.states, checkpoint=lambda states: self.checkpoint(states, retry=False),
            restore=self._restore, on_lost=self._drop_pending, rewind_to_beginning=kafka.auto_offset_reset == "earliest",
        )
        self.paused_reason: str | None = None
        self.counts: Counter[str] = Counter()
        self._events_in: Counter[str] = Counter()  # per format, since the last _count_events
        self._stop = threading.Event()
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._pending: PendingCheckpoint | None = None  # a checkpoint whose changelog is being sent
        # Changelog records of a checkpoint whose flush or send failed: the next checkpoint sends them first.
        self._carried: deque[tuple[int, bytes, bytes | None]] = deque()
        self._checkpoint_failures = 0  # checkpoints in a row the broker failed (``_checkpoint_failed``)
        self._checkpoint_retry_at = 0.0
        self.backlog = BacklogProgress(config.progress_every_s, config.backlog_threshold)
        self.retraining = Retraining.from_settings(settings.detectors, self._detectors)
        self._counted_alerts: OrderedDict[str, None] = OrderedDict()  # alert ids already counted
        # Sinks flushed as alerts open or change, not only at checkpoints (``flush_early``: the
        # Kafka sink; Elasticsearch bulk requests wait for the checkpoint).
        self._early_sinks = self.sinks.where(flush_early=True)
        # The canonical events themselves are indexed ([elasticsearch] index_events) when a sink
        # keeps them: what the analysts' notebooks read (lineage, maps) from a running deployment.
        self._index_events = settings.elasticsearch.index_events and self.sinks.keeps("event")

    @property
    def assigned(self) -> set[TopicPartition]:
        return self.rebalance.assigned

    # -- lifecycle ------------------------------------------------------------
    def stop(self, *_: Any) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)

    def health(self) -> Health:
        stalled = self.rebalance.stalled
        detail = {"partitions": sorted(self.states), "paused": self.paused_reason, **self.counts}
        if stalled is not None:
            detail["rebalance"] = stalled
        failing = self._checkpoint_failures  # the broker failing commits or changelog sends (an outage)
        if failing:
            detail["checkpoint"] = f"{failing} failed in a row: offsets not committed, retrying"
        return Health(self.paused_reason is None and stalled is None and not failing, detail)

    def run(self) -> None:
        try:
            self._start_sinks()
        except StoppedBeforeStart:  # SIGTERM while a sink was still unavailable: nothing consumed yet
            log.info("stopped before the sinks became available")
            self.close()
            return
        except StartupError:
            self.close()
            raise
        if self.response is not None:
            self.response.start()
        self.retraining.start()
        known = self.revocations.start()
        log.info("revocations read", extra={"topic": self.revocations.topic, "retained": known})
        self.consumer.subscribe(self.settings.kafka.topics.input,
                                listener=RebalanceListener(self.rebalance, self.consumer))
        log.info("consuming", extra={"topics": ",".join(self.settings.kafka.topics.input),
                                     "group": self.settings.kafka.group_id})
        try:
            while not self._stop.is_set():
                # A checkpoint in flight sends a slice per turn: do not sleep in poll meanwhile.
                wait_ms = 0 if self._pending is not None else self.config.poll_timeout_ms
                batches = self.consumer.poll(timeout_ms=wait_ms)
                if self.rebalance.to_restore and not self._stop.is_set():
                    self.rebalance.restore_new(resume=self.paused_reason is None)
                for tp, records in batches.items():
                    self._process(tp, records)
                self._count_repairs()
                self._count_events()
                self._apply_global(self.revocations.poll())
                self._release_idle()
                self._count_engines()
                self._take_response_alerts()
                self._publish_changed()
                if self._pending is not None:
                    self._advance_checkpoint()
                elif self._checkpoint_due(idle=not batches) and not self.rebalance.rejoining:
                    self.checkpoint(wait=False)
            if self.rebalance.rejoining:  # the group would refuse it; whoever owns them next replays
                log.warning("stopping out of the group: no final checkpoint",
                            extra={"partitions": ",".join(map(str, sorted(self.states)))})
            else:
                self.checkpoint()  # graceful shutdown: the batch is done, write everything
            self.states.clear()  # checkpointed: the revoke in close() has nothing left to do
        finally:
            self.close()

    def close(self) -> None:
        self.consumer.close()  # leaves the group: the partitions move at once
        self.restorer.close()
        self.retraining.stop()
        if self.response is not None:
            self.response.stop()  # finishes queued actions; may still publish revocations
        self.revocations.close()
        self.producer.close(timeout=10)
        for sink in self.sinks:
            sink.close()

    def _detectors(self) -> list[Detector]:
        """Every owned partition's detectors (what retraining pools the baseline of)."""
        states = list(self.states.copy().values())  # the loop may reassign meanwhile
        return [detector for state in states for detector in state.engine.detectors]

    def _start_sinks(self) -> None:
        delay = self.config.backpressure_backoff_s
        for sink in self.sinks:
            while True:
                try:
                    sink.start()
                    break
                except SinkUnavailable as exc:
                    refusal = lasting_refusal(exc, self.settings.elasticsearch)
                    if refusal is not None:
                        raise StartupError(exit_codes.ELASTICSEARCH_REFUSED, refusal) from None
                    if self._stop.is_set():
                        raise StoppedBeforeStart from None
                    # Not subscribed yet: nothing is consumed, nothing committed; /healthz says why.
                    self.paused_reason = f"{exc.sink}: {exc.reason}"
                    log.warning("sink unavailable at start", extra={"sink": sink.name, "reason": exc.reason})
                    self._stop.wait(delay)
                    delay = min(delay * 2, self.config.backpressure_backoff_max_s)
        if self.paused_reason is not None:
            log.info("sinks available: starting consumption")
        self.paused_reason = None

    # -- records --------------------------------------------------------------
    def _process(self, tp: TopicPartition, records: list[Any]) -> None:
        state = self.states.get(tp.partition)
        if state is None:  # not restored yet, or revoked meanwhile: fetch these again later
            if tp in self.assigned and records:
                self.consumer.seek(tp, records[0].offset)
            return
        for record in records:
            state.records += 1
            self._since_checkpoint += 1
            self._handle(state, tp, record.offset, record.value or b"")
            state.next_offsets[tp] = record.offset + 1  # processed or dead-lettered: committable

    def _handle(self, state: PartitionState, tp: TopicPartition, offset: int, line: bytes) -> None:
        """One record, start to end; whatever it makes raise dead-letters it instead. A broker
        failure is not the record's fault: it propagates, and the offset stays uncommitted."""
        if not line.strip():
            return
        record = SourceRecord(tp, offset, line)
        stage = "normalize"
        try:
            result = self.reader.normalize(line, record.origin)
            record.format = result.format or "unknown"
            if result.dead_letter is not None:
                stage = "dead_letter"
                self._dead_letter(record, result.dead_letter)
            for label, count in result.skipped_entries.items():  # entries of a batch
                self.metrics.events_skipped.labels(label.split(":", 1)[0]).inc(count)
            if result.skipped_type is not None:
                self.metrics.events_skipped.labels(record.format).inc()
                return
            stage = "trust"
            judged = self.reader.judge(result, record.origin, tp.topic)
            if judged.refused_letter is not None:  # events the record's topic may not carry
                self.counts["trust_refused"] += len(judged.refused)
                self._dead_letter(record, judged.refused_letter, "-trust")
            events = judged.events
            if events:  # to the metric once a loop turn (_count_events): labels() per record cost ~3 %
                self._events_in[record.format] += len(events)
            for event in events:
                if self._index_events:
                    stage = "index"
                    self.sinks.add("event", event.event_id, event.model_dump(mode="json"))
                stage = "revocation"
                if is_global(event):
                    self.revocations.publish(event)
                state.submitted(event.event_id, tp, offset)
                stage = "detect"
                alerts = self._engine_call(state, partial(state.engine.submit, event), record)
                stage = "alert"
                if alerts:
                    self._emit(alerts)
        except KafkaError:
            raise
        except Exception as exc:  # noqa: BLE001 -- a poison record, whatever it broke
            error = type(exc).__name__
            self._dead_letter_failure(record, stage, f"{stage} raised {error}", error)

    def _engine_call(self, state: PartitionState, call: Callable[[], list[Alert]],
                     current: SourceRecord | None = None) -> list[Alert]:
        """Run an engine call. When a detector (or the engine) raises on an event, dead-letter
        the record that event came from: ``current``, or an earlier one whose event the call
        released from the reorder buffer (the partition's :class:`LastEvent` names it).
        Events the engine refused as out of range are dead-lettered too. Never raises for an
        event's content."""
        tracer = judged_event_tracer(state)
        tracer.reset()
        try:
            alerts = call()
        except KafkaError:
            raise
        except Exception as exc:  # noqa: BLE001 -- whichever event broke a detector
            error = type(exc).__name__
            self._dead_letter_refused(state, current)
            culprit = tracer.event_id if tracer.event_id is not None and not applied(state, tracer.event_id) else None
            where = state.inflight.pop(culprit, None) if culprit is not None else None
            if where is not None:
                record = current if current is not None and current.at(*where) else SourceRecord(*where)
                self._dead_letter_failure(record, "detect", f"detect raised {error}", error, culprit)
            elif current is not None:  # failed before detection (enrichment) or after it (expiry)
                self._dead_letter_failure(current, "detect", f"detect raised {error}", error)
            else:
                log.error("engine failed on no record of ours", extra={"partition": state.partition,
                                                                        "error": error})
            return []
        self._dead_letter_refused(state, current)
        return alerts

    def _dead_letter_refused(self, state: PartitionState, current: SourceRecord | None) -> None:
        """Events the engine refused (ahead of the stream's clock while its hold was full)."""
        for event in state.engine.take_out_of_range():
            where = state.inflight.pop(event.event_id, None)
            if where is None:  # a revocation from the feed: no input record of ours
                continue
            record = current if current is not None and current.at(*where) else SourceRecord(*where)
            self._dead_letter_failure(record, "out_of_range",
                                      "event time out of range (far ahead of the stream's clock)",
                                      None, event.event_id)

    def _dead_letter_failure(self, record: SourceRecord, stage: str, reason: str,
                             error: str | None, event_id: str | None = None) -> None:
        """Dead-letter a record ``stage`` could not handle. ``error`` is an exception type name
        only: an exception's text may quote the record."""
        self.counts[f"failed_{stage}"] += 1
        where = {"topic": record.tp.topic, "partition": record.tp.partition, "offset": record.offset}
        log.log(logging.ERROR if error else logging.WARNING, "record dead-lettered",
                extra={"stage": stage, "error": error, **where})
        doc = failure_dead_letter(record, stage, reason, error, self.hash_token,
                                  self.settings.input.dead_letter_raw_bytes)
        suffix = f"-{stage}" + (f"-{event_id}" if event_id is not None else "")
        if event_id is not None:
            doc["event_id"] = event_id
        self._dead_letter(record, doc, suffix)

    def _count_events(self) -> None:
        """Move the events read since the last call, per format, to the metric."""
        for fmt, count in self._events_in.items():
            self.metrics.events_in.labels(fmt).inc(count)
        self._events_in.clear()

    def _count_repairs(self) -> None:
        """Move what the normalizer repaired since the last call to the metric (its kinds are
        bounded: field paths of the vendor models)."""
        repairs, seen = self.reader.normalizer.repairs, self._repairs_seen
        for kind, count in repairs.items():
            if count > seen[kind]:
                self.metrics.repairs.labels(kind).inc(count - seen[kind])
                seen[kind] = count

    def _count_engines(self) -> None:
        """Move what the partitions' engines counted since the last call to the metrics (late and
        reordered events, counted by the engine exactly as ``tokenwatch detect`` counts them), and
        set each source's event-time lag."""
        metrics = self.metrics
        lags: dict[str, float] = {}
        for state in self.states.values():
            engine = state.engine
            seen = state.metered
            for name, metric in (("late_events", metrics.late_events),
                                 ("reordered_events", metrics.reordered_events)):
                now = engine.counters[name]
                if now > seen[name]:
                    metric.inc(now - seen[name])
                    seen[name] = now
            for source, lag in engine.source_lags().items():
                lags[source] = max(lag, lags.get(source, 0.0))
        for source, lag in sorted(lags.items())[:MAX_SOURCES]:  # bounded: a tenant is attacker-influenced
            metrics.source_lag.labels(source).set(lag)

    def _apply_global(self, events: Iterable[CanonicalEvent], states: list[PartitionState] | None = None) -> None:
        """Feed revocations from the revocations topic to every owned partition (the one they
        came from drops its copy as a duplicate event id)."""
        for event in events:
            self.counts["revocations_received"] += 1
            for state in self.states.values() if states is None else states:
                state.fed.add(event.event_id)
                alerts = self._engine_call(state, partial(state.engine.submit, event, external=True))
                if alerts:
                    self._emit(alerts)

    def _release_idle(self) -> None:
        """A partition quiet for the allowed lateness (wall clock) releases its buffered
        events, so the last events of a burst are judged without waiting for more."""
        quiet_for = self.settings.engine.allowed_lateness_s
        now = time.monotonic()
        for state in self.states.values():
            if state.last_event_wall and now - state.last_event_wall >= quiet_for:
                alerts = self._engine_call(state, state.engine.release_idle)
                if alerts:
                    self._emit(alerts)

    def _dead_letter(self, record: SourceRecord, doc: dict[str, Any], suffix: str = "") -> None:
        """Hand a dead letter of ``record`` to every sink, with the original bytes (minus the
        revocation handle) only when the operator asked for them; a sink that has no place
        for them (an index analysts read) ignores them."""
        tp, offset = record.tp, record.offset
        doc_id = f"{tp.topic}-{tp.partition}-{offset}{suffix}"
        document = {**doc, SOURCE_FIELD: {"topic": tp.topic, "partition": tp.partition, "offset": offset}}
        self.metrics.dead_letters.labels(record.format).inc()
        self.counts["dead_letters"] += 1
        keep = self.config.dead_letter_keep_original and record.line
        original = original_without_handle(record.line) if keep else None
        self.sinks.add("dead_letter", doc_id, document, original)

    def _emit(self, alerts: list[Alert]) -> None:
        """Alerts whose fold window closed: their final version."""
        documents = []
        for alert in alerts:
            document = stage_alert(alert, self.sinks)
            if document is None:
                continue
            self._count_alert(alert)
            documents.append(document)
        if self.response is not None:
            self.response.submit(documents)

    def _count_alert(self, alert: Alert) -> None:
        """Count an alert once, when it first reaches the sinks (open at a checkpoint, or final):
        the metric then equals the alert documents the sinks hold."""
        alert_id = alert.alert.id
        if alert_id in self._counted_alerts:
            self._counted_alerts.move_to_end(alert_id)
            return
        self._counted_alerts[alert_id] = None
        if len(self._counted_alerts) > COUNTED_ALERT_IDS:
            self._counted_alerts.popitem(last=False)
        self.metrics.alerts.labels(alert.rule.id).inc()
        self.counts["alerts"] += 1

    def _take_response_alerts(self) -> None:
        """Alerts the response raised (its breaker) go to the sinks like any other."""
        if self.response is None:
            return
        for document in self.response.take_alerts():
            self.sinks.add("alert", document["alert"]["id"], document)
            self.counts["alerts"] += 1

    def _publish_changed(self) -> None:
        """Alerts opened or updated since the last poll go out now, not at the next
        checkpoint: the alerts topic (and a responder) has a new alert within a poll;
        Elasticsearch, whose bulk requests can take most of a second, has it at the next
        checkpoint. Writing early is safe (documents are keyed by alert id; the checkpoint
        still flushes before it commits). A sink that is down keeps them buffered."""
        now = datetime.now(timezone.utc)
        staged: list[dict[str, Any]] = []
        for state in self.states.values():
            for alert, new in state.engine.alerter.take_changed():
                document = stage_alert(alert, self.sinks)
                if document is None:
                    continue
                self._count_alert(alert)
                state.staged[alert.alert.id] = alert_digest(alert)  # the checkpoint need not write it again
                if new:
                    self.metrics.alert_latency.observe(max(0.0, (now - alert.timestamp).total_seconds()))
                staged.append(document)
        if not staged:
            return
        if self.response is not None:
            self.response.submit(staged)  # revocation starts as soon as the alert opens
        for sink in self._early_sinks:
            try:
                result = sink.flush()
            except SinkUnavailable as exc:  # the checkpoint handles backpressure
                log.warning("early alert publication deferred", extra={"sink": sink.name, "reason": exc.reason})
                continue
            for rejected in result.rejected:  # dead-lettered elsewhere; the checkpoint flushes those
                log.error("document rejected by sink", extra={"sink": sink.name, "doc_id": rejected.doc_id,
                                                               "reason": rejected.reason})
                dead_letter_rejected(rejected, sink.name, self.sinks.without(sink))

    # -- checkpoints ----------------------------------------------------------
    def _checkpoint_due(self, idle: bool) -> bool:
        """Every ``checkpoint_records`` records or ``checkpoint_interval_s``; and once the input is
        caught up (``idle``: the last poll brought nothing), after ``checkpoint_idle_s``, when records
        came or held events were let in since the last: so when the traffic pauses, what was
        processed is committed (a restart replays nothing) and its alerts reach Elasticsearch,
        which is flushed only at checkpoints. A record whose event the reorder buffer still holds
        is committed by the idle checkpoint that follows its release (``_release_idle``,
        ``_released``)."""
        now = time.monotonic()
        if now < self._checkpoint_retry_at:
            return False  # the broker failed the last one: back off
        since = now - self._last_checkpoint
        if self._since_checkpoint >= self.config.checkpoint_records or since >= self.config.checkpoint_interval_s:
            return True
        # Records, events let in, or the carried records of a checkpoint that failed (after its back-off).
        if not idle or since < self.config.checkpoint_idle_s or self.paused_reason is not None:
            return False
        work = (self._since_checkpoint > 0 or bool(self._carried) or self._checkpoint_failures > 0
                or any(map(_released, self.states.values())))
        return work and self._caught_up()

    def _caught_up(self) -> bool:
        """Every owned partition is read up to its high watermark (as of the last fetch; markers
        of transactions count as read: ``read_up_to``)."""
        return consumer_lag(self.consumer, self.assigned, self.states, self.metrics) == 0

    def checkpoint(self, states: list[PartitionState] | None = None, retry: bool = True, wait: bool = True) -> bool:
        """Checkpoint ``states`` (default: all). While a sink is down: pause consumption, keep
        polling, retry with backoff (``retry=False``: one attempt, for the rebalance callback,
        where polling is not allowed). False when nothing was committed (stopping while down, or a
        commit refused: out of the group until the rebalance, ``Rebalance.refused``).

        ``wait=False`` (the periodic checkpoint): sinks are flushed and the state's changes
        encoded now, then the changelog records go out a slice per loop turn and the offsets
        are committed once they are acknowledged (``_advance_checkpoint``), so events keep being
        judged (and alerts published) meanwhile instead of waiting most of a second."""
        self._settle_checkpoint()  # one at a time, in order
        if self.rebalance.rejoining:  # its commit refused: the group would refuse this one too
            return False
        delay = self.config.backpressure_backoff_s
        while True:
            current = list(self.states.values()) if states is None else states  # a rebalance may have run
            try:
                pending = begin_checkpoint(self.producer, self.changelog_topic, current, self.sinks,
                                           origin=self.origin, on_staged=self._count_alert, wait=wait)
                break
            except SinkUnavailable as exc:
                if self.paused_reason is None:
                    log.warning("sink unavailable: pausing consumption", extra={"sink": exc.sink, "reason": exc.reason})
                    self.consumer.pause(*self.assigned)
                self.paused_reason = f"{exc.sink}: {exc.reason}"
                if not retry or self._stop.is_set():
                    log.warning("checkpoint abandoned: offsets not committed, the records will be replayed")
                    return False
                self._wait(delay)
                delay = min(delay * 2, self.config.backpressure_backoff_max_s)
        if self.paused_reason is not None:
            log.info("sinks back: resuming consumption")
            self.paused_reason = None
            if not self.rebalance.rejoining:  # else they stay paused: the group has probably moved them
                self.consumer.resume(*[tp for tp in self.consumer.paused() if tp.partition in self.states])
        self._since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        if pending is not None:
            carried, self._carried = self._carried, deque()
            pending.changelog.carry(record for record in carried if record[0] in self.states)
            self._pending = pending
            if wait:
                self._settle_checkpoint()
        return True

    def _advance_checkpoint(self) -> None:
        """The next step of the checkpoint in flight (send a slice of the changelog); once every
        record is acknowledged, commit its offsets."""
        pending = self._pending
        assert pending is not None
        if not pending.flushed:
            if not pending.flushes_over():
                return  # the changelog waits for the flush: see ``complete``
            try:
                pending.settle_sinks()
            except SinkUnavailable as exc:  # offsets stay: the synchronous checkpoint retries with backpressure
                log.warning("checkpoint flush failed: retrying", extra={"sink": exc.sink, "reason": exc.reason})
                self._pending = None
                self._carried.extend(pending.changelog.records)  # never sent: the retry sends them
                self.checkpoint()
                return
        try:
            pending.changelog.send(CHANGELOG_SLICE)
            if not pending.changelog.done():
                return
            self._pending = None
            committed = pending.commit(self.consumer, self.metrics)
        except KafkaError as exc:
            if not transient(exc):
                raise
            self._pending = None
            self._checkpoint_failed(pending, exc)
            return
        self._checkpoint_ended(committed)

    def _settle_checkpoint(self) -> None:
        """Finish the checkpoint in flight now (before another, a rebalance or the shutdown)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            committed = complete(pending, self.consumer, self.metrics)
        except SinkUnavailable as exc:  # offsets stay; the checkpoint that follows retries the flush
            log.warning("checkpoint flush failed", extra={"sink": exc.sink, "reason": exc.reason})
            self._carried.extend(pending.changelog.records)  # never sent: the next checkpoint sends them
            return
        except KafkaError as exc:
            if not transient(exc):
                raise
            self._checkpoint_failed(pending, exc)
            return
        self._checkpoint_ended(committed)

    def _checkpoint_ended(self, committed: bool) -> None:
        """The checkpoint's commit was taken (True) or refused by the group (False)."""
        self._checkpoint_failures, self._checkpoint_retry_at = 0, 0.0
        if not committed:
            self.rebalance.refused()
            return
        self._update_lag()

    def _checkpoint_failed(self, pending: PendingCheckpoint, exc: KafkaError) -> None:
        """The broker failed the checkpoint's changelog send or its commit with a retriable error (a
        timeout past ``kafka.request_timeout_ms`` / ``delivery_timeout_ms``, the coordinator moving:
        an outage). The checkpoint did not complete, and the loop goes on: its offsets stay
        uncommitted, and the next checkpoint (after a back-off, 1 s doubling like a sink's) commits
        past them only once its own changelog is acknowledged — led by this one's records when
        they were not all (``ChangelogSend.unacknowledged``), so no commit passes what the
        changelog holds and no later checkpoint builds on a set cut short."""
        resend = pending.changelog.unacknowledged()
        self._carried.extend(resend)
        self._checkpoint_failures += 1
        config = self.config
        delay = min(config.backpressure_backoff_s * 2 ** (self._checkpoint_failures - 1), config.backpressure_backoff_max_s)
        self._checkpoint_retry_at = time.monotonic() + delay
        log.warning("checkpoint failed: offsets not committed, retrying", extra={
            "step": "commit" if pending.changelog.acknowledged else "changelog", "error": type(exc).__name__,
            "failures": self._checkpoint_failures, "retry_in_s": delay, "resent_records": len(resend)})

    def _wait(self, seconds: float) -> None:
        """Keep polling (paused: no records) so the consumer stays in the group."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for tp, records in self.consumer.poll(timeout_ms=min(200, int(seconds * 1000))).items():
                self._process(tp, records)  # records fetched before the pause

    def _update_lag(self) -> None:
        lag = consumer_lag(self.consumer, self.assigned, self.states, self.metrics)
        self.backlog.update(lag, sum(state.records for state in self.states.values()))

    # -- rebalances (``Rebalance`` owns the partitions; these are its hooks) -----
    def _drop_pending(self) -> None:
        """Partitions lost: the checkpoint in flight can no longer commit its offsets (the new
        owner replays after the last commit)."""
        self._pending = None
        self._carried.clear()  # a partition's next owner restores what reached the changelog

    def _restore(self, number: int) -> PartitionState:
        """Partition ``number``'s state from the changelog, with the retained revocations."""
        state = new_partition_state(number, self.settings, self.enrich)
        # Unsent records of its earlier state here would follow the restored lineage with stale seqs.
        self._carried = deque(record for record in self._carried if record[0] != number)
        started = time.perf_counter()
        try:
            records = restore_partition(self.restorer, self.changelog_topic, state,
                                        self.config.restore_idle_polls, origin=self.origin,
                                        call_timeout_ms=RESTORE_CALL_TIMEOUT_MS)
        except ChangelogMismatch as exc:
            raise StartupError(exit_codes.CONFIG, str(exc)) from None
        self._apply_global(self.revocations.retained(), [state])
        log.info("partition restored", extra={"partition": number, "records": records,
                                              "tokens": len(state.store.tokens),
                                              "seconds": round(time.perf_counter() - started, 3)})
        return state


def _released(state: PartitionState) -> bool:
    """An event of a record the last checkpoint could not commit (``commit_offsets`` keeps
    only the held ones in flight) has left the reorder buffer since: its offset may be
    committed now, though no record came. A revocation-feed event let in is no record's."""
    if not state.inflight:
        return False
    held = state.engine.pending_event_ids()
    return any(event_id not in held for event_id in state.inflight)


def _metrics_port_error(config: ServiceConfig, exc: OSError) -> StartupError:
    return StartupError(
        exit_codes.PORT_IN_USE if exc.errno == errno.EADDRINUSE else exit_codes.CONFIG,
        f"cannot listen on {config.metrics_host}:{config.metrics_port} (service.metrics_host / "
        f"service.metrics_port): {exc.strerror or exc}; another tokenwatch run on this host? "
        "give each instance its own port (0: any free port)",
    )


def _check_metrics_port(config: ServiceConfig) -> None:
    """Fail at once, with one line, when the metrics address cannot be bound (bound the way the
    metrics server binds it, then released); port 0 is always free."""
    if config.metrics_port == 0:
        return
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:  # as http.server binds
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((config.metrics_host, config.metrics_port))
    except OSError as exc:
        raise _metrics_port_error(config, exc) from None


def run_service(settings: Settings, config: ServiceConfig) -> int:
    """``tokenwatch run``: build sinks, topics, metrics; run until SIGTERM/SIGINT."""
    from pipeline.kafka.topics import ensure_topics, existing_topics
    from pipeline.logs import configure
    from pipeline.runtime.build import build_enricher, settle_heap, token_hasher
    from pipeline.service.kafka_refusals import kafka_start_error
    from pipeline.sinks import build_sinks

    hasher = token_hasher()
    configure(hasher, config.log_level, client_level=config.client_log_level)
    _check_metrics_port(config)  # before any Kafka client: closing them at once logs their own tracebacks
    refuse_early(settings, config.sinks)  # the same reason
    try:
        kafka = settings.kafka
        present = existing_topics(kafka)
        missing = [name for name in kafka.topics.input if name not in present]
        if missing:  # never created here: a mistyped name would quietly read nothing
            raise StartupError(
                exit_codes.NOT_FOUND,
                f"input topic {', '.join(missing)} does not exist on {','.join(kafka.bootstrap_servers)} "
                "(kafka.topics.input); correct the name, or create it: tokenwatch produce --create-topics N",
            )
        # The changelog needs the input's partition count (changelog partition p = input partition p).
        inputs = ensure_topics(settings.kafka)
        partitions = inputs[settings.kafka.topics.input[0]].partitions or 3
        ensure_topics(settings.kafka, partitions, changelog_stores=(STATE_STORE,),
                      revocation_retention_s=settings.state.revocation_retention_s)
        enricher = build_enricher(settings)
        # In ``service.sinks`` order (the alerts topic first by default: an alert published early,
        # ``_publish_changed``, reaches it without waiting for an Elasticsearch bulk request).
        service = Service(settings, config, hasher, build_sinks(config.sinks, settings), enricher)
        # What startup loaded (IP data, egress lists, models) lives as long as the process: out of
        # the collector's way, so a full collection does not walk it (a pause in the alert path);
        # and young objects collected as rarely as `detect` does (the loop makes few cycles).
        settle_heap()
    except KafkaError as exc:  # an outage (4, waited out by --workers) or a refusal (2, stops at once)
        raise kafka_start_error(exc, settings.kafka) from None
    service.install_signal_handlers()
    try:
        server = MetricsServer(service.metrics, service.health, config.metrics_host, config.metrics_port).start()
    except OSError as exc:  # taken since the check above
        service.close()
        raise _metrics_port_error(config, exc) from None
    log.info("metrics listening", extra={"host": config.metrics_host, "port": server.port})
    try:
        service.run()
    finally:
        server.close()
    log.info("stopped", extra=dict(service.counts))
    return 0
