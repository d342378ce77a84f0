"""Throughput and latency of `tokenwatch run` against real servers it starts itself.

Prints figures, asserts nothing (not part of the test suite). In one run:

1. produces ``--events`` lines of realistic traffic (``benchmarks.traffic``) to a
   3-partition topic with ``pipeline.kafka.produce`` (the documented key rule);
2. raw kafka-python consume rate of that topic (``consumer_kwargs``: the service's
   settings, CRC checks on, every record read, nothing processed);
3. ``tokenwatch run`` throughput over the same topic (the ``Service`` in-process,
   with the Elasticsearch and Kafka sinks), from the first processed record to
   (a) every record processed and (b) every offset committed by a checkpoint;
4. ``tokenwatch detect`` over the same lines in a fresh process, and the ratios run/raw and
   run/detect (issue target >= 0.8);
5. event->alert latency p50/p99 at a fixed offered load (issue target p99 < 500 ms at
   10k events/s): ``tokenwatch run`` as a subprocess, background traffic re-timed to
   the wall clock, one attack (a token used from DE then US within a second) per
   ``--attack-every`` events; latency = alert read from the alerts topic minus the
   wall time the attack's second line was handed to the producer. Run with the
   default ``allowed_lateness_s`` and with 0.2 s.

End offsets come from the producer's acknowledgements (Tansu under-reports them).
Run: ``python benchmarks/bench_service.py --events 100000``; with ``--workers N`` instead
``tokenwatch run --workers N`` against ``--workers 1``, each on a fresh topic
(``members_throughput``), ``--repeat`` times, medians.
"""

from __future__ import annotations

import argparse
import heapq
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from kafka import KafkaConsumer, KafkaProducer, TopicPartition  # noqa: E402 -- run as a script: the repository root goes on sys.path first

from benchmarks.traffic import generate  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.config import Settings  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.es.config import ElasticsearchConfig  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.ingest.config import TrustConfig  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.ingest.enrich import Enricher  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.kafka.config import KafkaConfig, KafkaTopics, consumer_kwargs, producer_kwargs  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.kafka.produce import produce  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.kafka.topics import ensure_topics  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.runtime.build import settle_heap  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.service.config import ServiceConfig  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.service.partitions import STATE_STORE  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.service.runner import Service  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.sinks.elasticsearch import ElasticsearchSink  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from pipeline.sinks.kafka import KafkaSink  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from schemas.redaction import make_token_hasher  # noqa: E402 -- run as a script: the repository root goes on sys.path first
from tests.integration.servers import tansu_broker  # noqa: E402 -- run as a script: the repository root goes on sys.path first

HASH_KEY = "benchmark-token-hash-key-0123456789abcdef"
HASHER = make_token_hasher(HASH_KEY.encode())
PARTITIONS = 3


def kafka_config(bootstrap: str, name: str) -> KafkaConfig:
    topics = KafkaTopics(input=[name], dead_letter=f"{name}.dlq", alerts=f"{name}.alerts",
                         revocations=f"{name}.revocations", changelog_prefix=f"{name}.changelog")
    return KafkaConfig(bootstrap_servers=[bootstrap], topics=topics, group_id=f"{name}-group",
                       session_timeout_ms=6000, heartbeat_interval_ms=1000)


class CountingProducer(KafkaProducer):
    """Records the acknowledged end offset of every partition (Tansu under-reports them)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ends: dict[int, int] = {}
        self._lock = threading.Lock()

    def _ack(self, metadata: Any) -> None:
        with self._lock:
            self.ends[metadata.partition] = max(self.ends.get(metadata.partition, 0), metadata.offset + 1)

    def send(self, *args: Any, **kwargs: Any) -> Any:
        future = super().send(*args, **kwargs)
        future.add_callback(self._ack)
        return future


def produce_backlog(kafka: KafkaConfig, n: int, lines: list[bytes] | None = None,
                    partitions: int = PARTITIONS) -> dict[int, int]:
    ensure_topics(kafka, partitions)
    topic = kafka.topics.input[0]
    lines = list(generate(n)) if lines is None else lines
    producer = CountingProducer(**producer_kwargs(kafka))
    started = time.perf_counter()
    summary = produce(iter(lines), topic, kafka, hash_token=HASHER, producer=producer)
    elapsed = time.perf_counter() - started
    producer.close()
    ends = dict(sorted(producer.ends.items()))
    print(f"produce: {summary.produced:,} of {len(lines):,} lines ({summary.failed} failed) in {elapsed:.2f}s "
          f"= {summary.produced / elapsed:,.0f} lines/s; per partition {ends}")
    return ends


def raw_consume(kafka: KafkaConfig, ends: dict[int, int]) -> float:
    """Records/s of a bare consumer: first record to the last produced offset."""
    cfg = kafka.model_copy(update={"group_id": f"{kafka.group_id}-raw"})
    consumer = KafkaConsumer(**consumer_kwargs(cfg))
    consumer.subscribe(kafka.topics.input)
    topic = kafka.topics.input[0]
    pos = {p: 0 for p in ends}
    count = 0
    nbytes = 0
    first = None
    subscribed = time.perf_counter()
    deadline = time.monotonic() + 300
    try:
        while any(pos[p] < ends[p] for p in ends) and time.monotonic() < deadline:
            for tp, records in consumer.poll(timeout_ms=200).items():
                if first is None and records:
                    first = time.perf_counter()
                for record in records:
                    nbytes += len(record.value)
                count += len(records)
                if records and tp.topic == topic:
                    pos[tp.partition] = records[-1].offset + 1
        end = time.perf_counter()
        elapsed = end - (first or end)
    finally:
        consumer.close()
    rate = count / elapsed if elapsed else 0.0
    print(f"raw kafka-python consume (group {cfg.group_id}, check_crcs on): {count:,} records ({nbytes / 1e6:.1f} MB) "
          f"in {elapsed:.2f}s from the first record = {rate:,.0f} records/s "
          f"({end - subscribed:.2f}s from subscribe, group join included)")
    return rate


class TimedService(Service):
    """The service, noting when the first record was processed, when every produced
    record was processed and when every offset was committed."""

    def __init__(self, *args: Any, ends: dict[int, int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ends = ends
        self.first: float | None = None
        self.processed_at: float | None = None
        self.first_cpu = self.first_thread_cpu = self.cpu = self.thread_cpu = 0.0  # CPU s, to processed_at
        self.committed_at: float | None = None
        self.done = threading.Event()
        self._positions: dict[int, int] = {}
        self._committed: dict[int, int] = {}
        commit = self.consumer.commit

        def timed_commit(offsets: Any = None) -> None:
            commit(offsets)
            for tp, meta in (offsets or {}).items():
                self._committed[tp.partition] = getattr(meta, "offset", meta)
            if self.committed_at is None and all(self._committed.get(p, 0) >= e for p, e in self.ends.items()):
                self.committed_at = time.perf_counter()
                self.done.set()

        self.consumer.commit = timed_commit

    def _process(self, tp: TopicPartition, records: list[Any]) -> None:
        ready = tp.partition in self.states and records
        if ready and self.first is None:
            self.first = time.perf_counter()
            self.first_cpu, self.first_thread_cpu = time.process_time(), time.thread_time()
        super()._process(tp, records)
        if ready:
            self._positions[tp.partition] = records[-1].offset + 1
            if self.processed_at is None and all(self._positions.get(p, 0) >= e for p, e in self.ends.items()):
                self.processed_at = time.perf_counter()
                self.cpu = time.process_time() - self.first_cpu
                self.thread_cpu = time.thread_time() - self.first_thread_cpu


def service_throughput(kafka: KafkaConfig, es_url: str, ends: dict[int, int]) -> tuple[float, float]:
    # The issuance lines are canonical events: trusted here as in the latency runs, so `run`
    # judges every line `detect` judges (untrusted, they were dead-lettered unjudged).
    settings = Settings(kafka=kafka, service=ServiceConfig(metrics_port=0),
                        trust=TrustConfig(trusted_topics=tuple(kafka.topics.input)),
                        elasticsearch=ElasticsearchConfig(hosts=[es_url], flavour="opensearch",
                                                          index_prefix=f"bench{uuid.uuid4().hex[:6]}"))
    ensure_topics(kafka, PARTITIONS, changelog_stores=(STATE_STORE,))
    enricher = Enricher(settings.enrich)
    enricher.warm()
    settle_heap()  # as `tokenwatch run` (and `detect`) do once loaded
    sinks = [ElasticsearchSink(settings.elasticsearch), KafkaSink(kafka)]
    service = TimedService(settings, settings.service, HASHER, sinks, enricher, ends=ends)
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    service.done.wait(timeout=600)
    service.stop()
    thread.join(timeout=60)
    total = sum(ends.values())
    first = service.first or 0.0
    processed = (service.processed_at or float("nan")) - first
    committed = (service.committed_at or float("nan")) - first
    print(f"tokenwatch run (in-process, ES + Kafka sinks, checkpoint every "
          f"{settings.service.checkpoint_records:,} records / {settings.service.checkpoint_interval_s}s): "
          f"{total:,} records processed in {processed:.2f}s = {total / processed:,.0f} records/s; "
          f"all offsets committed after {committed:.2f}s = {total / committed:,.0f} records/s; "
          f"alerts {service.counts.get('alerts', 0)}, dead letters {service.counts.get('dead_letters', 0)}; "
          f"CPU to the last record processed {service.cpu:.2f}s, {service.thread_cpu:.2f}s of it the loop's thread")
    return total / processed, total / committed


def detect_throughput(lines: list[bytes], workdir: Path) -> float:
    """Lines/s of `tokenwatch detect` (one worker) over the lines `run` just read, timed like
    `run`: from the first line to the last alert, start-up (loading the geo tables) excluded. In
    a fresh process: in this one, after the service, the same run measured ~20 % slower."""
    path = workdir / "detect-lines.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from benchmarks.bench_detect import bench_detect; "
            "from pipeline.config import Settings; "
            "lines = open(sys.argv[2], 'rb').read().splitlines(); print(json.dumps(bench_detect(lines, Settings())))")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT), str(path)], check=True, capture_output=True, cwd=ROOT,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout
    seconds, alerts, spent = orjson.loads(out.splitlines()[-1])
    print(f"tokenwatch detect (a fresh process, same lines, one worker): {len(lines):,} lines in {seconds:.2f}s = "
          f"{len(lines) / seconds:,.0f} lines/s; alerts {alerts}; {spent}")
    return len(lines) / seconds


# -- latency ----------------------------------------------------------------------

def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def retime(line: bytes, now: datetime) -> bytes:
    """Move a traffic line to wall-clock time (event time = now)."""
    doc = orjson.loads(line)
    if "timestamp" in doc:  # gateway
        doc["timestamp"] = _iso(now)
        doc["jwt"]["iat"] = int(now.timestamp()) - 60
        doc["jwt"]["exp"] = int(now.timestamp()) + 240
    else:
        token = doc["token"]
        ttl = (datetime.fromisoformat(token["expires_at"]) - datetime.fromisoformat(token["issued_at"]))
        doc["time"] = token["issued_at"] = _iso(now)
        token["expires_at"] = _iso(now + ttl)
    return orjson.dumps(doc)


def attack_use(i: int, now: datetime, ip: str) -> bytes:
    return orjson.dumps({
        "timestamp": _iso(now), "request_id": f"atk-{i}-{ip}", "client_ip": ip, "method": "GET",
        "path": "/orders/1", "status": 200, "user_agent": "Mozilla/5.0", "required_scope": "orders:read",
        "jwt": {"jti": f"atk-{i}", "sub": f"atk-user-{i}", "client_id": "portal", "scope": "openid orders:read",
                "iss": "https://sso.example.org/realms/main", "aud": "api",
                "iat": int(now.timestamp()) - 60, "exp": int(now.timestamp()) + 240},
    })


def paced(rate: float, seconds: float, attack_every: int, sent_at: dict[str, float]) -> Iterator[bytes]:
    """Background traffic plus attacks at ``rate`` lines/s for ``seconds``."""
    background = generate(int(rate * seconds) + 10_000, seed=11)
    started = time.perf_counter()
    n = 0
    attack = 0
    while True:
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return
        due = int(rate * elapsed) + 1
        if n >= due:
            time.sleep(0.0005)
            continue
        while n < due:
            now = datetime.now(timezone.utc)
            if n % attack_every == attack_every - 1:
                attack += 1
                yield attack_use(attack, now, "79.200.1.10")  # Deutsche Telekom, DE
                yield attack_use(attack, datetime.now(timezone.utc), "73.1.2.3")  # Comcast, US
                sent_at[f"atk-{attack}"] = time.perf_counter()  # the triggering line is handed over now
                n += 2
            else:
                yield retime(next(background), now)
                n += 1


# Delivery delays of the cross-source run: a gateway's log within a second, the IdP's (Keycloak,
# Kubernetes) in five (issue 18's realistic delays).
GATEWAY_DELAY_S = 1.0
IDP_DELAY_S = 5.0


def attack_issue(i: int, at: datetime, ip: str) -> bytes:
    """The IdP's issuance of attack token ``i`` (canonical line, its own source), from ``ip``."""
    return orjson.dumps({
        "canonical_version": 1, "event_id": f"atk-issue-{i}", "kind": "issued", "time": _iso(at), "source": "idp",
        "token": {"id": f"atk-{i}", "type": "access", "issued_at": _iso(at),
                  "expires_at": _iso(at + timedelta(seconds=300))},
        "subject": {"id": f"atk-user-{i}", "kind": "user"}, "client_id": "portal",
        "scopes": ["openid", "orders:read"], "network": {"ip": ip, "user_agent": "Mozilla/5.0"},
    })


def cross_paced(rate: float, seconds: float, attack_every: int, sent_at: dict[str, float],
                used_at: dict[str, float]) -> Iterator[bytes]:
    """Like ``paced``, with each source delivered after its delay (IdP lines 5 s, gateway lines
    1 s after their event time) and a cross-source attack per ``attack_every`` lines: a token
    issued in DE and used 0.5 s later from the US (issue_use_divergence), which can only alert
    once the IdP's line arrives. ``sent_at``: when that line is handed to the producer;
    ``used_at``: the wall time of the use (event time)."""
    background = generate(int(rate * seconds) + 10_000, seed=11)
    waiting: list[tuple[float, int, bytes, str | None]] = []  # (deliver at, seq, line, attack whose last line)
    started = time.perf_counter()
    n = attack = 0
    while True:
        clock = time.perf_counter()
        while waiting and waiting[0][0] <= clock:
            _, _, line, last_of = heapq.heappop(waiting)
            yield line
            if last_of is not None:
                sent_at[last_of] = time.perf_counter()
        elapsed = clock - started
        if elapsed >= seconds and not waiting:
            return
        if elapsed >= seconds or n >= int(rate * elapsed) + 1:
            time.sleep(0.0005)
            continue
        now = datetime.now(timezone.utc)
        if n % attack_every == attack_every - 1:
            attack += 1
            use = now + timedelta(seconds=0.5)
            used_at[f"atk-{attack}"] = clock + 0.5
            heapq.heappush(waiting, (clock + 0.5 + GATEWAY_DELAY_S, n, attack_use(attack, use, "73.1.2.3"), None))
            heapq.heappush(waiting, (clock + IDP_DELAY_S, n + 1, attack_issue(attack, now, "79.200.1.10"),
                                     f"atk-{attack}"))
            n += 2
        else:
            line = retime(next(background), now)
            delay = GATEWAY_DELAY_S if line.startswith(b'{"timestamp"') else IDP_DELAY_S
            heapq.heappush(waiting, (clock + delay, n, line, None))
            n += 1


def write_toml(path: Path, kafka: KafkaConfig, es_url: str, prefix: str) -> None:
    t = kafka.topics
    path.write_text(f"""
[kafka]
bootstrap_servers = ["{kafka.bootstrap_servers[0]}"]
group_id = "{kafka.group_id}"
session_timeout_ms = 6000
heartbeat_interval_ms = 1000

[kafka.topics]
input = ["{t.input[0]}"]
dead_letter = "{t.dead_letter}"
alerts = "{t.alerts}"
revocations = "{t.revocations}"
changelog_prefix = "{t.changelog_prefix}"

# The traffic's issuance lines are canonical events: accepted only from a trusted topic
# (without this they were dead-lettered and only the gateway's lines were judged).
[trust]
trusted_topics = ["{t.input[0]}"]

[elasticsearch]
hosts = ["{es_url}"]
flavour = "opensearch"
index_prefix = "{prefix}"
""")


class AlertReader(threading.Thread):
    """Reads the alerts topic; notes the wall time each attack's first alert arrived."""

    def __init__(self, kafka: KafkaConfig) -> None:
        super().__init__(daemon=True)
        self.kafka = kafka
        self.first_seen: dict[str, float] = {}
        self.event_lag: dict[str, float] = {}
        self.rules: Counter[str] = Counter()
        self.stop = threading.Event()

    def run(self) -> None:
        # A reader that asks often (kafka-python holds a fetch up to 500 ms by default, and Tansu
        # answers a waiting fetch only then): what is measured is the service, not the reader.
        consumer = KafkaConsumer(**consumer_kwargs(self.kafka, group=False), fetch_max_wait_ms=20)
        topic = self.kafka.topics.alerts
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        try:
            while not self.stop.is_set():
                for records in consumer.poll(timeout_ms=50).values():
                    now = time.perf_counter()
                    wall = datetime.now(timezone.utc)
                    for record in records:
                        alert = orjson.loads(record.value)
                        token = alert.get("token", {}).get("id") or ""
                        self.rules[alert["rule"]["id"]] += 1
                        if token.startswith("atk-") and token not in self.first_seen:
                            self.first_seen[token] = now
                            stamp = datetime.fromisoformat(alert["@timestamp"].replace("Z", "+00:00"))
                            self.event_lag[token] = (wall - stamp).total_seconds()
        finally:
            consumer.close()


def _wait_log(path: Path, needle: bytes, count: int, proc: subprocess.Popen[bytes], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if path.read_bytes().count(needle) >= count:
            return True
        time.sleep(0.1)
    return False


def committed_after(kafka: KafkaConfig, ends: dict[int, int], timeout: float) -> float:
    """perf_counter time at which the group's committed offsets reached ``ends`` (nan: never)."""
    reader = KafkaConsumer(**consumer_kwargs(kafka))  # never subscribes: reads the group's commits only
    topic = kafka.topics.input[0]
    deadline = time.monotonic() + timeout
    committed: dict[int, int | None] = {}
    try:
        while time.monotonic() < deadline:
            committed = {p: reader.committed(TopicPartition(topic, p)) for p in ends}
            if all((committed[p] or 0) >= e for p, e in ends.items()):
                return time.perf_counter()
            time.sleep(0.1)
    finally:
        reader.close()
    print(f"  not drained after {timeout:.0f}s: committed {committed}, produced {dict(sorted(ends.items()))}")
    return float("nan")


def commit_progress(kafka: KafkaConfig, ends: dict[int, int], proc: subprocess.Popen[bytes],
                    timeout: float) -> list[tuple[float, int]]:
    """(perf_counter time, records committed by the group) every 0.1 s until every produced
    record is committed (or ``timeout``, or the service exits)."""
    reader = KafkaConsumer(**consumer_kwargs(kafka))  # never subscribes: reads the group's commits only
    topic = kafka.topics.input[0]
    total = sum(ends.values())
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = sum(min(reader.committed(TopicPartition(topic, p)) or 0, e) for p, e in ends.items())
            samples.append((time.perf_counter(), done))
            if done >= total:
                break
            time.sleep(0.1)
    finally:
        reader.close()
    return samples


def members_throughput(bootstrap: str, es_url: str, lines: list[bytes], workers: int, workdir: Path,
                       partitions: int = PARTITIONS) -> float:
    """Records/s of ``tokenwatch run --workers N`` (a subprocess) over a fresh topic (a topic with a
    changelog would restore state and make every record a duplicate): records committed from the
    group's first commit to its last, so start-up and group joins are left out (reported apart).
    Checkpoints every second (instead of 5) so a commit follows the records closely."""
    name = f"wrk-{uuid.uuid4().hex[:8]}"
    kafka = kafka_config(bootstrap, name)
    ends = produce_backlog(kafka, len(lines), lines, partitions)
    config = workdir / f"{name}.toml"
    log = workdir / f"{name}.log"
    write_toml(config, kafka, es_url, f"bench{uuid.uuid4().hex[:6]}")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENWATCH_TOKEN_HASH_KEY": HASH_KEY,
           "TOKENWATCH_SERVICE__METRICS_PORT": "0", "TOKENWATCH_SERVICE__CHECKPOINT_INTERVAL_S": "1"}
    launched = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli.main", "run", "--config", str(config),
                                 "--workers", str(workers)], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        samples = commit_progress(kafka, ends, proc, 600)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    total = sum(ends.values())
    started = [(t, n) for t, n in samples if n > 0]
    if not samples or samples[-1][1] < total or len(started) < 2:
        print(f"run --workers {workers}: not drained ({samples[-1][1] if samples else 0:,} of {total:,} committed, "
              f"exit {proc.returncode}):\n{log.read_text()[-2000:]}")
        return float("nan")
    (t0, n0), (t1, n1) = started[0], samples[-1]
    rate = (n1 - n0) / (t1 - t0)
    print(f"run --workers {workers}: {total:,} records; {n1 - n0:,} committed in {t1 - t0:.2f}s after the first "
          f"commit = {rate:,.0f} records/s; all committed {t1 - launched:.2f}s after launch (start-up and group "
          f"joins included) = {total / (t1 - launched):,.0f} records/s")
    return rate


def compare_workers(bootstrap: str, es_url: str, events: int, workers: int, repeat: int, workdir: Path,
                    partitions: int = PARTITIONS) -> None:
    """``run --workers N`` against ``--workers 1``, interleaved, each on a fresh topic of ``partitions``
    (the range assignment gives 2 members of 3 partitions 2 and 1: at most 1.5x); medians."""
    lines = list(generate(events))
    rates: dict[int, list[float]] = {1: [], workers: []}
    for _ in range(repeat):
        for n in (1, workers):
            rates[n].append(members_throughput(bootstrap, es_url, lines, n, workdir, partitions))
    one, many = statistics.median(rates[1]), statistics.median(rates[workers])
    print(f"{partitions} partitions, median of {repeat}: --workers 1 {one:,.0f} records/s, --workers {workers} {many:,.0f} records/s "
          f"= {many / one:.2f}x")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def latency(bootstrap: str, es_url: str, rate: float, seconds: float, attack_every: int,
            lateness: float | None, workdir: Path, cross: bool = False) -> None:
    """Event->alert latency of `tokenwatch run` (a subprocess): a single-source attack, or with
    ``cross`` a cross-source one under realistic per-source delivery delays (``cross_paced``)."""
    name = f"lat-{uuid.uuid4().hex[:8]}"
    kafka = kafka_config(bootstrap, name)
    ensure_topics(kafka, PARTITIONS, changelog_stores=(STATE_STORE,))
    config = workdir / f"{name}.toml"
    log = workdir / f"{name}.log"
    write_toml(config, kafka, es_url, f"bench{uuid.uuid4().hex[:6]}")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TOKENWATCH_TOKEN_HASH_KEY": HASH_KEY,
           "TOKENWATCH_SERVICE__METRICS_PORT": "0"}
    if lateness is not None:
        env["TOKENWATCH_ENGINE__ALLOWED_LATENESS_S"] = str(lateness)
    label = f"allowed_lateness_s={lateness if lateness is not None else '5.0 (default)'}"
    if cross:
        label += f", cross-source (IdP delivered {IDP_DELAY_S:.0f} s late, gateway {GATEWAY_DELAY_S:.0f} s)"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli.main", "run", "--config", str(config)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    reader = AlertReader(kafka)
    reader.start()
    try:
        if not _wait_log(log, b'"partition restored"', PARTITIONS, proc, 60):
            print(f"latency [{label}]: the service did not start:\n{log.read_text()[-2000:]}")
            return
        time.sleep(0.5)
        sent_at: dict[str, float] = {}
        used_at: dict[str, float] = {}
        producer = CountingProducer(**producer_kwargs(kafka))
        started = time.perf_counter()
        lines = (cross_paced(rate, seconds, attack_every, sent_at, used_at) if cross
                 else paced(rate, seconds, attack_every, sent_at))
        summary = produce(lines, name, kafka, hash_token=HASHER, producer=producer)
        last_line = time.perf_counter()
        offered = summary.produced / (last_line - started)
        producer.close()
        drained = committed_after(kafka, producer.ends, 30) - last_line
        deadline = time.monotonic() + (lateness if lateness is not None else 5.0) + 20
        while time.monotonic() < deadline and len(reader.first_seen) < len(sent_at):
            time.sleep(0.1)
    finally:
        reader.stop.set()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        reader.join(timeout=5)
    lat = [reader.first_seen[t] - sent_at[t] for t in sent_at if t in reader.first_seen]
    lag = [reader.event_lag[t] for t in sent_at if t in reader.event_lag]
    since_use = [reader.first_seen[t] - used_at[t] for t in used_at if t in reader.first_seen]
    print(f"latency [{label}]: offered {offered:,.0f} lines/s for {seconds:.0f}s ({summary.produced:,} lines, "
          f"{len(sent_at)} attacks); alerts seen for {len(lat)}/{len(sent_at)} attacks; every offset committed "
          f"{drained:.1f}s after the last line was produced")
    if lat:
        print(f"  produce->alert on topic: p50 {pct(lat, 0.5) * 1000:,.0f} ms, p99 {pct(lat, 0.99) * 1000:,.0f} ms, "
              f"max {max(lat) * 1000:,.0f} ms, mean {statistics.fmean(lat) * 1000:,.0f} ms")
        print(f"  alert @timestamp (first use) -> alert on topic: p50 {pct(lag, 0.5) * 1000:,.0f} ms, "
              f"p99 {pct(lag, 0.99) * 1000:,.0f} ms")
    if lat:
        slowest = sorted(((reader.first_seen[t] - sent_at[t], t) for t in sent_at if t in reader.first_seen),
                         reverse=True)[:5]
        print("  slowest: " + ", ".join(f"{t} {v * 1000:,.0f} ms" for v, t in slowest))
    if since_use:
        print(f"  use (event time) -> alert on topic, the IdP's delay included: p50 {pct(since_use, 0.5):.2f} s, "
              f"p99 {pct(since_use, 0.99):.2f} s")
    print(f"  alerts by rule: {dict(reader.rules)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="lines of the throughput backlog")
    parser.add_argument("--rate", type=float, default=10_000, help="offered load of the latency runs (lines/s)")
    parser.add_argument("--seconds", type=float, default=10, help="duration of each latency run")
    parser.add_argument("--load-fraction", type=float, default=0.5,
                        help="when the service cannot take --rate: offer this fraction of its measured throughput")
    parser.add_argument("--attack-every", type=int, default=1000, help="one attack per this many lines")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="instead: `run --workers N` against `--workers 1` (subprocesses), each on a fresh topic")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, with --workers (median)")
    parser.add_argument("--partitions", type=int, default=PARTITIONS, help="input partitions, with --workers")
    parser.add_argument("--no-latency", action="store_true", help="throughput only: skip the latency runs")
    parser.add_argument("--rounds", type=int, default=1,
                        help="throughput rounds (each on a fresh topic, run then detect): the median of their "
                             "run/detect ratios, steadier on a shared machine than one pair")
    args = parser.parse_args()
    from osmem_server import OsmemServer

    with tansu_broker() as bootstrap, OsmemServer.start() as osmem, tempfile.TemporaryDirectory() as tmp:
        print(f"servers: Tansu {bootstrap}, osmem {osmem.url}; {os.cpu_count()} CPUs")
        if args.workers:
            compare_workers(bootstrap, osmem.url, args.events, args.workers, args.repeat, Path(tmp), args.partitions)
            return
        lines = list(generate(args.events))
        ratios: list[tuple[float, float]] = []
        for round_number in range(1, args.rounds + 1):
            if args.rounds > 1:
                print(f"-- round {round_number} of {args.rounds} (a fresh topic)")
            kafka = kafka_config(bootstrap, f"thr-{uuid.uuid4().hex[:8]}")
            ends = produce_backlog(kafka, args.events, lines)
            raw = raw_consume(kafka, ends)
            processed, committed = service_throughput(kafka, osmem.url, ends)
            detected = detect_throughput(lines, Path(tmp))
            print(f"ratio run/raw: {processed / raw:.2f} (records processed), {committed / raw:.2f} (offsets committed)")
            print(f"ratio run/detect (target >= 0.8): {processed / detected:.2f} (records processed), "
                  f"{committed / detected:.2f} (offsets committed)")
            ratios.append((processed / detected, committed / detected))
        if args.rounds > 1:
            print(f"run/detect over {args.rounds} rounds, median of the rounds' ratios (each run beside its own "
                  f"detect): {statistics.median(r[0] for r in ratios):.2f} records processed "
                  f"({min(r[0] for r in ratios):.2f}-{max(r[0] for r in ratios):.2f}), "
                  f"{statistics.median(r[1] for r in ratios):.2f} offsets committed "
                  f"({min(r[1] for r in ratios):.2f}-{max(r[1] for r in ratios):.2f})")
        if args.no_latency:
            return
        rate = args.rate
        if processed < rate * 1.1:
            rate = round(processed * args.load_fraction, -2)
            print(f"note: the service sustains ~{processed:,.0f} records/s here, below {args.rate:,.0f}/s + 10% "
                  f"headroom: latency measured at {rate:,.0f} lines/s")
        for lateness in (None, 0.2):
            latency(bootstrap, osmem.url, rate, args.seconds, args.attack_every, lateness, Path(tmp))


if __name__ == "__main__":
    main()
