"""`tokenwatch detect --workers N`: the same alerts, dead letters and counts as one process where
the key rule keeps a principal together (the demo world, the benchmark traffic with attacks, a
log file too long to send), revocations that reach every worker, the documented consequences
where it does not, and a failing worker that stops the run instead of leaving a partial output."""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest

from benchmarks.traffic import generate as generate_traffic
from pipeline import DATA_DIR
from pipeline.cli.demo import DEMO_CONFIG
from pipeline.cli.main import main
from pipeline.config import Settings, load_settings
from pipeline.ingest.config import TrustConfig
from pipeline.ingest.reading import LongLine, read_lines
from pipeline.ingest.trust import TrustRules
from pipeline.runtime import workers
from pipeline.runtime.build import build_enricher, build_normalizer
from pipeline.runtime.detect import DetectRun, Summary
from pipeline.runtime.routing import LineRouter, Router
from pipeline.runtime.worker_judge import WorkerSpec
from pipeline.synthetic.world import WorldSpec, generate
from schemas.events import CanonicalEvent
from schemas.redaction import make_token_hasher
from tests.conftest import TEST_HASH_KEY

NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)
SAMPLES = Path(__file__).resolve().parents[1] / "data" / "formats"


def now() -> datetime:
    """The tests' clock: a top-level function, so workers can be given it."""
    return NOW


@dataclasses.dataclass
class Written:
    alerts: bytes
    dead_letters: bytes
    summary: Summary
    mapped_by_parent: int  # lines the parent mapped to key them (no quick key)


def run_lines(lines: Iterable[bytes | LongLine], count: int, settings: Settings | None = None) -> Written:
    """``lines`` through ``DetectRun`` on ``count`` workers: the alert and dead-letter files, the summary."""
    settings = settings or load_settings(DEMO_CONFIG)
    out, dead = io.BytesIO(), io.BytesIO()
    enricher = build_enricher(settings) if count == 1 else None
    run = DetectRun(settings, make_token_hasher(TEST_HASH_KEY), out, dead, None, enricher,
                    clock=now, workers=count, hash_key=TEST_HASH_KEY)
    try:
        run.feed(lines, "test")
        summary = run.finish()
    finally:
        run.close()
    return Written(out.getvalue(), dead.getvalue(), summary, run.pool.router.mapped_lines if run.pool else 0)


def detect(lines: list[bytes], count: int, settings: Settings | None = None) -> list[dict[str, Any]]:
    """Alert documents of ``lines`` through ``DetectRun`` on ``count`` workers, as written."""
    return [orjson.loads(line) for line in run_lines(lines, count, settings).alerts.splitlines()]


def by_id(alerts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    ids = [alert["alert"]["id"] for alert in alerts]
    assert len(ids) == len(set(ids))
    return dict(zip(ids, alerts, strict=True))


@cache
def world_lines() -> list[bytes]:
    return [line for _, line in generate(WorldSpec(users=40, seed=11, hours=8)).lines()]


def test_the_demo_world_raises_the_same_alert_documents_on_one_two_and_three_workers() -> None:
    one = detect(world_lines(), 1)
    assert len(one) == 16
    for count in (2, 3):
        assert by_id(detect(world_lines(), count)) == by_id(one)


# -- the benchmark traffic (benchmarks/traffic.py) with attacks and rejects spliced in at their time

FAR = "126.10.7.7"  # a Japanese residential prefix of the traffic; its users live in Europe and the US
REJECTS = [
    b"not json", b"[1, 2]", b'{"neither": "a known format"}', b"   ",
    b'{"timestamp": "2026-11-24T08:00:00Z", "client_ip": "79.200.1.1", "status": "abc", "jwt": {"jti": "x"}}',
    b'{"timestamp": "2031-01-01T00:00:00Z", "client_ip": "79.200.1.1", "status": 200, "jwt": {"jti": "f", "sub": "u"}}',
]


def revocation(kind: str, time: str, token: str | None = None, subject: str | None = None,
               session: str | None = None) -> bytes:
    record: dict[str, Any] = {"canonical_version": 1, "event_id": f"{kind}-{token or session}", "kind": kind,
                              "time": time, "source": "idp", "network": {"ip": "10.0.0.1"}}
    if token is not None:
        record |= {"token": {"id": token, "type": "access"}, "revocation": {"target": "token", "actor": "admin"}}
    if subject is not None:
        record |= {"subject": {"id": subject, "kind": "user"}, "session_id": session}
    return orjson.dumps(record)


@cache
def attacked_traffic() -> list[bytes]:
    """Benign traffic where some access tokens are revoked by token id alone (keyed apart from
    their users' uses), some sessions end, some uses repeat from another continent or verbatim,
    and rejected lines come now and then."""
    lines: list[bytes] = []
    for n, line in enumerate(generate_traffic(9000, users=400)):
        lines.append(line)
        record = orjson.loads(line)
        if "jwt" in record and n % 97 == 0:
            lines.append(orjson.dumps(record | {"request_id": f"{record['request_id']}-far", "client_ip": FAR}))
        elif record.get("kind") == "issued" and record["token"]["type"] == "access" and n % 3 == 0:
            lines.append(revocation("revoked", record["time"], token=record["token"]["id"]))
        elif record.get("kind") == "refreshed" and n % 7 == 0:
            lines.append(revocation("session_ended", record["time"], subject=record["subject"]["id"],
                                    session=record["session_id"]))
        if n % 501 == 0:
            lines.append(line)
        if n % 499 == 0:
            lines.extend(REJECTS)
    return lines


def counts(summary: Summary) -> dict[str, Any]:
    """What the summary says of the lines, their dead letters and alerts (the engine's event-time
    counters are each worker's own: README "Detect")."""
    return {name: getattr(summary, name) for name in (
        "lines", "blank_lines", "events", "per_format", "skipped", "dead_letters", "refused", "repairs", "alerts")}


def test_benchmark_traffic_with_attacks_gives_one_process_output_on_two_and_three_workers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lines = attacked_traffic()
    one = run_lines(lines, 1)
    rules = one.summary.alerts
    assert rules["post_revocation_use.after_revocation"] >= 50 and rules["geo_divergence.impossible_travel"] >= 20
    blank = 1  # of the rejects
    assert sum(one.summary.dead_letters.values()) == (len(REJECTS) - blank) * lines.count(REJECTS[0]) > 0
    assert one.summary.engine["duplicates"] >= 10
    alerts = by_id([orjson.loads(line) for line in one.alerts.splitlines()])
    monkeypatch.setattr(workers, "BATCH_LINES", 37)  # many batches, their answers interleaved
    for count in (2, 3):
        many = run_lines(lines, count)
        assert by_id([orjson.loads(line) for line in many.alerts.splitlines()]) == alerts
        assert many.dead_letters == one.dead_letters
        assert counts(many.summary) == counts(one.summary)
        assert many.mapped_by_parent == 3 * lines.count(REJECTS[0])  # only the rejects that are no gateway line
        assert many.alerts == one.alerts  # in the same order, too, on this dense stream


def test_a_log_file_longer_than_the_line_cap_is_mapped_by_the_parent_and_judged_alike() -> None:
    """A CloudTrail log file over ``input.max_line_bytes`` is read record by record, never held
    whole, so the parent maps it and sends its events; its bad entries are dead-lettered in place."""
    records = [orjson.loads(line) for line in (SAMPLES / "cloudtrail.jsonl").read_bytes().splitlines() if line]
    log_file = orjson.dumps({"Records": [*records, {"eventVersion": "1.08"}, *records]})
    settings = load_settings(DEMO_CONFIG)
    settings = settings.model_copy(update={"input": settings.input.model_copy(update={"max_line_bytes": 300})})
    stream = b"\n".join([b"not json", log_file, b"{}", log_file]) + b"\n"
    one = run_lines(read_lines(io.BytesIO(stream), 300), 1, settings)
    assert one.summary.per_format["cloudtrail"] >= 4 * len(records) - 4 and len(one.dead_letters.splitlines()) == 4
    two = run_lines(read_lines(io.BytesIO(stream), 300), 2, settings)
    assert (two.alerts, two.dead_letters, counts(two.summary)) == (one.alerts, one.dead_letters, counts(one.summary))


# -- hand-made streams: canonical IdP records and gateway access-log lines (README "Input formats")

def idp(event_id: str, kind: str, minute: int, subject: str | None, token: str, **extra: Any) -> bytes:
    record: dict[str, Any] = {
        "canonical_version": 1, "event_id": event_id, "kind": kind, "time": f"2026-11-23T10:{minute:02d}:00Z",
        "source": "idp", "tenant": "t", "client_id": "portal",
        "network": {"ip": "79.200.1.10", "user_agent": "Mozilla/5.0"},
        "token": {"id": token, "type": "access", "issued_at": "2026-11-23T10:00:00Z",
                  "expires_at": "2026-11-23T11:00:00Z"},
        **extra,
    }
    if subject is not None:
        record["subject"] = {"id": subject, "name": subject, "kind": "user"}
    if kind == "revoked":
        record["revocation"] = {"target": "token", "actor": "t"}
        del record["token"]["issued_at"], record["token"]["expires_at"]
    return orjson.dumps(record)


def gateway(request_id: str, minute: int, sub: str, jti: str, ip: str = "79.200.1.10") -> bytes:
    return orjson.dumps({
        "timestamp": f"2026-11-23T10:{minute:02d}:00Z", "request_id": request_id, "client_ip": ip,
        "method": "GET", "path": "/orders/42", "status": 200, "user_agent": "Mozilla/5.0",
        "required_scope": "orders:read",
        "jwt": {"jti": jti, "sub": sub, "client_id": "portal", "scope": "openid orders:read",
                "iss": "https://sso.example.org/realms/t", "aud": "orders-api"},
    })


def owner(key: str, count: int = 2) -> int:
    event = CanonicalEvent.model_validate_json(idp("x", "issued", 0, key, "x"))
    return Router(count).owner([event])


def test_a_revocation_naming_only_the_token_reaches_the_worker_holding_its_uses() -> None:
    # The revocation is keyed by its token, the issuance and the use by their subject: two workers.
    assert owner("u-rev") != Router(2).owner([CanonicalEvent.model_validate_json(
        idp("r", "revoked", 5, None, "tok-rev"))])
    issued = idp("rev-e1", "issued", 0, "u-rev", "tok-rev", scopes=["openid", "orders:read"])
    revoked = idp("rev-e2", "revoked", 5, None, "tok-rev")
    used = gateway("rev-r3", 10, "u-rev", "tok-rev")
    attack = [issued, revoked, used]
    one = detect(attack, 1)
    assert [(a["rule"]["id"], a["token"]["id"]) for a in one] == [("post_revocation_use.after_revocation", "tok-rev")]
    assert detect(attack, 2) == one
    assert detect([issued, used], 2) == []  # the benign twin: never revoked


def test_a_principal_the_key_rule_splits_loses_issue_to_use_checks_across_workers() -> None:
    """keys.py: an IdP naming the user by id and a gateway naming the login key differently.
    One process links the use to its issuance; two workers, like two `run` partitions, do not."""
    assert owner("00u3split") != owner("alice@example.org")
    issued = idp("split-e1", "issued", 0, "00u3split", "tok-split", scopes=["openid", "orders:read"])
    far_use = gateway("split-r2", 5, "alice@example.org", "tok-split", ip="73.1.2.3")
    one = detect([issued, far_use], 1)
    assert sorted(a["rule"]["id"] for a in one) == [
        "geo_divergence.impossible_travel", "geo_divergence.issue_use_divergence"]
    assert detect([issued, far_use], 2) == []
    # keyed alike (the gateway's sub is the IdP's id), the same alert again
    joined = gateway("split-r2", 5, "00u3split", "tok-split", ip="73.1.2.3")
    assert by_id(detect([issued, joined], 2)) == by_id(detect([issued, joined], 1))


def test_a_record_the_run_refuses_does_not_route_the_line_it_came_in() -> None:
    """With canonical lines refused (`trust.detect_canonical = false`), an envelope whose first
    record is a canonical event naming a decoy goes to the worker of the gateway use the worker
    keeps, not to the decoy's, where that use would be judged apart from its token's others."""
    use = orjson.loads((Path(__file__).resolve().parents[1] / "data" / "formats" / "gateway.jsonl")
                       .read_bytes().splitlines()[0])
    router = Router(2)
    victim = router.owner_of(use["jwt"]["sub"].encode())
    decoy = next(name for name in (f"decoy-{n}" for n in range(50)) if router.owner_of(name.encode()) != victim)
    line = orjson.dumps({"records": [orjson.loads(idp("d1", "used", 0, decoy, "t-decoy")), use]})
    settings = Settings().model_copy(update={"trust": TrustConfig(detect_canonical=False)})
    normalizer = build_normalizer(settings, make_token_hasher(TEST_HASH_KEY))

    assert LineRouter(2, normalizer, trust=TrustRules(settings.trust)).route(line) == (victim, False)
    assert LineRouter(2, normalizer).route(line)[0] != victim  # every record counted: the decoy's worker
    pool = workers.WorkerPool(WorkerSpec(settings, TEST_HASH_KEY), 2)  # the router `detect --workers` uses
    try:
        assert pool.router.route(line) == (victim, False)
    finally:
        pool.close()


def test_the_bundled_sample_differs_only_where_state_spans_subjects_or_a_worker_sees_less_time() -> None:
    """Two documented differences on the sample (README, Performance): a client's privileged-scope
    baseline is per worker, and a late revocation is judged against a worker's own watermark."""
    lines = (DATA_DIR / "sample.jsonl").read_bytes().splitlines()
    one, two = by_id(detect(lines, 1)), by_id(detect(lines, 2))
    changed = {i for i in one.keys() & two.keys() if one[i] != two[i]}
    rules = sorted(a["rule"]["id"] for i, a in two.items() if i not in one)
    assert rules == ["scope_escalation.new_privileged_scope"]  # the client held it via another worker's subject
    assert one.keys() <= two.keys()
    assert sorted(one[i]["rule"]["id"] for i in changed) == [
        "post_revocation_use.after_revocation", "scope_escalation.new_privileged_scope"]


# -- failures ---------------------------------------------------------------------------


def _raise_in_worker(index: int, spec: WorkerSpec, inbox: Any, outbox: Any) -> None:
    broken = spec.settings.model_copy(update={"detectors": {"no_such_detector": {}}})
    workers.serve(index, dataclasses.replace(spec, settings=broken), inbox, outbox)


def _die_in_worker(index: int, spec: WorkerSpec, inbox: Any, outbox: Any) -> None:
    if index == 1:
        inbox.get()
        os._exit(3)
    workers.serve(index, spec, inbox, outbox)


def _cli(tmp_path: Path, *extra: str) -> Iterator[int]:
    yield main(["detect", "-i", str(DATA_DIR / "sample.jsonl"), "-o", str(tmp_path / "alerts.jsonl"),
                "--dead-letter", str(tmp_path / "dead.jsonl"), *extra])


@pytest.mark.parametrize(("target", "says"), [(_raise_in_worker, "failed: "), (_die_in_worker, "died (exit code 3)")])
def test_a_failing_worker_stops_detect_with_exit_1_and_says_the_output_is_incomplete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], target: Any, says: str,
) -> None:
    monkeypatch.setattr(workers, "BATCH_LINES", 4)
    monkeypatch.setattr(workers, "serve", target)
    assert next(_cli(tmp_path, "--workers", "2")) == 1
    err = capsys.readouterr().err
    assert "tokenwatch: detect stopped: detect worker " in err and says in err
    assert "tokenwatch detect:" not in err  # no summary of a run that did not finish
    written = len((tmp_path / "alerts.jsonl").read_bytes().splitlines())
    assert err.rstrip().endswith(f"; the alerts in {tmp_path / 'alerts.jsonl'} ({written} written) are incomplete")
    assert not (tmp_path / "dead.jsonl").exists()  # so it is not named


class _DiesLater:
    """An inbox whose worker exits (code 3) when asked for its 26th batch."""

    def __init__(self, inbox: Any) -> None:
        self.inbox, self.taken = inbox, 0

    def get(self) -> Any:
        if self.taken == 25:
            os._exit(3)
        self.taken += 1
        return self.inbox.get()


def _die_later_in_worker(index: int, spec: WorkerSpec, inbox: Any, outbox: Any) -> None:
    workers.serve(index, spec, _DiesLater(inbox) if index == 1 else inbox, outbox)


def test_a_worker_failing_midway_names_every_output_it_left_incomplete_with_what_each_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """The alerts file, the dead-letter file and the store each hold part of the run's output."""
    from pipeline.store.sqlite import SqliteStore

    source, out, dead, db = (tmp_path / name for name in ("world.jsonl", "alerts.jsonl", "dead.jsonl", "alerts.db"))
    lines: list[bytes] = []
    for n, line in enumerate(world_lines()):  # 8 hours of event time: alerts close as it goes
        lines.extend([line, *REJECTS] if n % 50 == 0 else [line])
    source.write_bytes(b"\n".join(lines) + b"\n")
    monkeypatch.setenv("TOKENWATCH_STORE__PATH", str(db))
    monkeypatch.setattr(workers, "BATCH_LINES", 80)  # about 38 batches a worker: it dies two thirds in
    monkeypatch.setattr(workers, "serve", _die_later_in_worker)
    assert main(["detect", "-i", str(source), "-o", str(out), "--dead-letter", str(dead), "--workers", "2",
                 "--store"]) == 1
    err = capsys.readouterr().err
    alerts, letters = len(out.read_bytes().splitlines()), len(dead.read_bytes().splitlines())
    store = SqliteStore(db)
    try:
        stored = len(store.list_alerts(limit=10_000))
    finally:
        store.close()
    assert 0 < letters < sum(1 for line in lines if line in REJECTS and line.strip())
    assert 0 < stored == alerts
    assert err.rstrip().endswith(
        f" before it answered all its lines; the alerts in {out} ({alerts} written), the dead letters in {dead} "
        f"({letters} written) and the alerts in the sqlite store {db} ({stored} stored) are incomplete")


def test_detect_workers_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert next(_cli(tmp_path, "--workers", "2")) == 0
    two = (tmp_path / "alerts.jsonl").read_bytes()
    assert next(_cli(tmp_path, "--workers", "1")) == 0
    one = (tmp_path / "alerts.jsonl").read_bytes()
    assert len(one.splitlines()) == 15
    assert by_id([orjson.loads(x) for x in two.splitlines()]).keys() == by_id([orjson.loads(x) for x in one.splitlines()]).keys()
    with pytest.raises(SystemExit) as refused:
        next(_cli(tmp_path, "--workers", "0"))
    assert refused.value.code == 2
    assert "must be at least 1" in capsys.readouterr().err
