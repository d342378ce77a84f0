"""Load JSON lines into a Kafka topic with the documented message keys.

Every non-blank line is produced as it was read (the service normalizes it,
so the bytes, not a re-encoding, are what dead letters and evidence point at).
Lines that map to no event are produced too, keyed by their content hash, so
the service dead-letters them with their offsets: ``produce`` never filters.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from pipeline import exit_codes
from pipeline.ingest.config import InputConfig
from pipeline.ingest.reading import LongLine, read_lines
from pipeline.ingest.trust import TrustRules
from pipeline.kafka.config import KafkaConfig, KafkaTopics, producer_kwargs
from pipeline.kafka.merge import KeyedLine, input_files, keyed_lines, merge_by_time
from pipeline.terminal import printable
from schemas.redaction import TokenHasher


@dataclass
class ProduceSummary:
    """What one ``produce`` run did: ``produced`` counts broker-acknowledged records,
    ``failed`` every non-blank line that was not acknowledged (rejected, timed out)."""

    topic: str
    lines: int = 0
    blank_lines: int = 0
    sent: int = 0
    produced: int = 0
    unmapped: int = 0
    failed: int = 0
    keyed_by: Counter[str] = field(default_factory=Counter)
    formats: Counter[str] = field(default_factory=Counter)
    unmapped_reasons: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    def render(self) -> str:
        keyed = ", ".join(f"{basis} {n}" for basis, n in sorted(self.keyed_by.items()))
        formats = ", ".join(f"{name} {n}" for name, n in sorted(self.formats.items()))
        lines = [
            f"tokenwatch produce: {self.produced} of {self.lines} lines produced to {self.topic}"
            f" ({self.blank_lines} blank lines skipped)",
            f"  keyed by: {keyed or 'nothing'}",
            f"  formats: {formats or 'none'}",
        ]
        if self.unmapped:
            top = ", ".join(f"{printable(reason)} ({n})" for reason, n in self.unmapped_reasons.most_common(3))
            lines.append(f"  {self.unmapped} lines map to no event (keyed by content hash; the service dead-letters them): {top}")
        if self.failed:
            lines.append(f"  {self.failed} lines FAILED to produce: {printable('; '.join(self.errors[:3]))}")
        return "\n".join(lines)


class _Acks:
    """Counts acknowledgements and failures reported from the producer's I/O thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ok = 0
        self.failed = 0
        self.errors: list[str] = []

    def success(self, _metadata: Any) -> None:
        with self.lock:
            self.ok += 1

    def settle(self, sent: int, deadline_s: float) -> None:
        """Wait (briefly) until every sent record's callback ran: flush returns when the
        batches are done, and record callbacks run in the I/O thread right around that."""
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            with self.lock:
                if self.ok + self.failed >= sent:
                    return
            time.sleep(0.005)

    def failure(self, origin: str, exc: BaseException) -> None:
        with self.lock:
            self.failed += 1
            if len(self.errors) < 10:
                self.errors.append(f"{origin}: {type(exc).__name__}: {exc}"[:300])


def produce(
    lines: Iterable[bytes | LongLine],
    topic: str,
    config: KafkaConfig,
    *,
    hash_token: TokenHasher,
    format_name: str = "auto",
    origin: str = "input",
    producer: KafkaProducer | None = None,
    flush_timeout_s: float = 60.0,
    input_config: InputConfig | None = None,
    trust: TrustRules | None = None,
) -> ProduceSummary:
    """Send every non-blank line of ``lines`` to ``topic`` keyed by ``line_key`` (with
    ``input_config`` and ``trust``, the service's ``[input]`` and ``[trust]``); flush; count.

    ``producer`` lets a caller reuse one (it is flushed, not closed); otherwise
    one is built from ``config`` and closed at the end.
    """
    return produce_keyed(
        keyed_lines(lines, origin, hash_token, format_name, input_config, trust, topic), topic, config,
        origin=origin, producer=producer, flush_timeout_s=flush_timeout_s,
    )


def produce_keyed(
    items: Iterable[KeyedLine],
    topic: str,
    config: KafkaConfig,
    *,
    origin: str = "input",
    producer: KafkaProducer | None = None,
    flush_timeout_s: float = 60.0,
) -> ProduceSummary:
    """``produce`` for lines already keyed (``merge.keyed_lines``), e.g. several files
    merged by event time (``merge.merge_by_time``)."""
    summary = ProduceSummary(topic=topic)
    acks = _Acks()
    own = producer is None
    rejected = 0
    client = producer if producer is not None else KafkaProducer(**producer_kwargs(config))
    try:
        for item in items:
            summary.lines += 1
            line, keyed, where = item.line, item.key, item.origin
            if isinstance(line, LongLine):  # never held whole: a broker would refuse it anyway
                line.finish()
                acks.failure(where, ValueError(f"line of {line.size} bytes exceeds max_line_bytes"))
                rejected += 1
                continue
            if keyed is None:
                summary.blank_lines += 1
                continue
            summary.keyed_by[keyed.basis] += 1
            summary.formats[keyed.format or "unknown"] += 1
            if keyed.basis == "content":
                summary.unmapped += 1
                summary.unmapped_reasons[_reason_label(keyed.reason)] += 1
            try:
                future = client.send(topic, key=keyed.key, value=line)
            except KafkaError as exc:  # too large for max_request_size, or buffer exhausted
                acks.failure(where, exc)
                rejected += 1
                continue
            summary.sent += 1
            future.add_callback(acks.success)
            future.add_errback(lambda exc, where=where: acks.failure(where, exc))
        try:
            client.flush(timeout=flush_timeout_s)
        except KafkaError as exc:  # timed out: the unacknowledged rest is counted as failed below
            acks.failure(origin, exc)
            rejected += 1
        acks.settle(summary.sent + rejected, deadline_s=5.0)
    finally:
        if own:
            client.close(timeout=flush_timeout_s)
    with acks.lock:  # a non-blank line not acknowledged by the broker failed, whatever the cause
        summary.produced, summary.errors = acks.ok, list(acks.errors)
    summary.failed = summary.lines - summary.blank_lines - summary.produced
    return summary


def _reason_label(reason: str | None) -> str:
    """Group reasons for the summary without echoing line content."""
    if not reason:
        return "unknown"
    return reason.split(":", 1)[0][:60]


def run_produce(
    input_names: str | list[str],
    topic: str,
    config_path: Path | None = None,
    bootstrap: str | None = None,
    format_name: str = "auto",
    create_partitions: int | None = None,
) -> int:
    """``tokenwatch produce``: exit 0 when every line was acknowledged, 1 when some
    failed, 2 for a configuration or input error, 3 when the topic does not exist and
    ``--create-topics`` was not given, 4 when no broker answers (``exit_codes``).

    Several files (or a directory) are merged by event time (``merge``): the way to
    load a history exported per source."""
    from pipeline.config import ConfigError, load_settings
    from pipeline.kafka.topics import ensure_topics, existing_topics
    from pipeline.secrets import token_hash_key
    from schemas.redaction import make_token_hasher

    names = [input_names] if isinstance(input_names, str) else list(input_names)
    try:
        settings = load_settings(config_path)
        config, max_line_bytes = settings.kafka, settings.input.max_line_bytes
        if bootstrap:
            config = KafkaConfig.model_validate(config.model_dump() | {"bootstrap_servers": bootstrap})
    except (ConfigError, ValueError, OSError) as exc:
        print(printable(f"tokenwatch: configuration error: {exc}"), file=sys.stderr)
        return exit_codes.CONFIG
    try:
        files = [] if names == ["-"] else input_files(names)
    except (OSError, ValueError) as exc:
        print(printable(f"tokenwatch produce: --input {exc}"), file=sys.stderr)
        return exit_codes.CONFIG
    if "-" in names and len(names) > 1:
        print("tokenwatch produce: --input - (stdin) cannot be combined with files", file=sys.stderr)
        return exit_codes.CONFIG
    hasher = make_token_hasher(token_hash_key())
    trust = TrustRules(settings.trust)  # lines are keyed by the events the service keeps
    try:
        if create_partitions:
            topics = {"input": [topic], **config.topics.model_dump(exclude={"input"})}
            for status in ensure_topics(config.model_copy(update={"topics": KafkaTopics(**topics)}), create_partitions).values():
                state = "created" if status.created else "exists"
                print(f"  topic {status.name}: {state}, {status.partitions} partitions", file=sys.stderr)
        elif topic not in existing_topics(config):
            print(printable(
                f"tokenwatch produce: topic {topic!r} does not exist on {','.join(config.bootstrap_servers)}; "
                "create it (--create-topics PARTITIONS) or check --topic"), file=sys.stderr)
            return exit_codes.NOT_FOUND
        if not files:
            lines = read_lines(sys.stdin.buffer, max_line_bytes)
            summary = produce(lines, topic, config, hash_token=hasher, format_name=format_name, origin="stdin",
                              input_config=settings.input, trust=trust)
        else:
            with ExitStack() as stack:
                streams = [
                    keyed_lines(read_lines(stack.enter_context(open(path, "rb", buffering=1 << 20)), max_line_bytes),
                                str(path), hasher, format_name, settings.input, trust, topic)
                    for path in files
                ]
                merged = streams[0] if len(streams) == 1 else merge_by_time(streams)
                summary = produce_keyed(merged, topic, config, origin=str(files[0]))
            if len(files) > 1:
                print(f"  merged {len(files)} files by event time", file=sys.stderr)
    except KafkaError as exc:  # NoBrokersAvailable and friends: could not run
        print(printable(f"tokenwatch: cannot reach Kafka at {','.join(config.bootstrap_servers)} "
                        f"(kafka.bootstrap_servers / --bootstrap): {type(exc).__name__}"), file=sys.stderr)
        return exit_codes.KAFKA_UNREACHABLE
    print(summary.render(), file=sys.stderr)
    return exit_codes.FAILED if summary.failed else exit_codes.OK
