"""`tokenwatch demo`: the whole flow on one machine, no servers.

generate a synthetic world (``pipeline.synthetic.world``) → write its vendor lines →
detect (``pipeline.runtime``: the same ``DetectRun`` as ``tokenwatch detect``) → local alert store →
responder in dry-run against a local RFC 7009 endpoint → a summary: alerts per
rule, each injected attack and the alert that caught it, false positives on
the benign population, throughput, and where everything was written.

``--sample`` runs the older bundled sample instead (each attack next to its
benign twin; ``pipeline/synthetic/sample.py``).
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import orjson

from pipeline import DATA_DIR
from pipeline.config import Settings, load_settings
from pipeline.runtime.build import build_enricher, settle_heap, token_hasher
from pipeline.runtime.detect import DetectRun, Summary, run_detect
from pipeline.runtime.files import LazyFile
from pipeline.synthetic.sample import scenario_of, scenarios
from pipeline.synthetic.world import World, WorldSpec, actor_count, generate
from pipeline.synthetic.world.benign import SERVICE_CLIENTS
from pipeline.synthetic.world.score import Score, render, score
from pipeline.terminal import printable, printable_lines

DEMO_CONFIG = DATA_DIR / "demo.toml"


@dataclass
class DemoResult:
    world: World
    output_dir: Path
    detect: Summary
    score: Score
    timings: dict[str, float] = field(default_factory=dict)
    actions: Counter[str] = field(default_factory=Counter)
    endpoint: str | None = None
    endpoint_requests: int = 0
    response_note: str = ""

    @property
    def events_per_s(self) -> float:
        return self.detect.events / self.detect.seconds if self.detect.seconds else 0.0


# -- the steps ------------------------------------------------------------------------
def run_demo(spec: WorldSpec, output_dir: Path, progress: bool | None = None) -> DemoResult:
    """Every step in this process; ``progress`` None shows bars only on a terminal."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    output_dir.mkdir(parents=True, exist_ok=True)
    settings = demo_settings(output_dir)
    with _bar(actor_count(spec), "generating world", "actors", progress) as tick:
        world = generate(spec, progress=tick)
    write_world(world, output_dir)
    timings["generate"] = time.perf_counter() - started

    step = time.perf_counter()
    alerts, summary = detect(settings, output_dir, world, progress)
    timings["detect"] = time.perf_counter() - step

    result = DemoResult(world, output_dir, summary, score(alerts, world.labels), timings)
    step = time.perf_counter()
    store_step(settings, alerts)
    timings["store"] = time.perf_counter() - step
    step = time.perf_counter()
    respond_step(settings, alerts, result)
    timings["respond"] = time.perf_counter() - step
    (output_dir / "summary.json").write_bytes(orjson.dumps(
        {**result.score.to_json(), "events": result.detect.events, "lines": result.detect.lines,
         "events_per_s": round(result.events_per_s), "timings_s": {k: round(v, 2) for k, v in timings.items()},
         "actions": dict(result.actions)}, option=orjson.OPT_INDENT_2))
    timings["total"] = time.perf_counter() - started
    return result


def demo_settings(output_dir: Path) -> Settings:
    """The demo configuration with the store in the output directory; also written there as
    ``tokenwatch.toml`` so `tokenwatch alerts list --config …` reads the same store."""
    store_path = (output_dir / "tokenwatch.db").resolve()
    config = output_dir / "tokenwatch.toml"
    config.write_text(DEMO_CONFIG.read_text(encoding="utf-8")
                      + f"\n# Written by `tokenwatch demo`: its alert store.\n[store]\npath = {_toml_str(store_path)}\n",
                      encoding="utf-8")
    return load_settings(config)


def _toml_str(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_world(world: World, output_dir: Path) -> None:
    """events/<format>.jsonl (one file per source, as each system would have logged it, in
    event-time order) and labels.json (the ground truth of the injected attacks)."""
    per_format_dir = output_dir / "events"
    if per_format_dir.exists():
        shutil.rmtree(per_format_dir)
    per_format_dir.mkdir()
    handles: dict[str, IO[bytes]] = {}
    try:
        for fmt, line in world.lines():
            out = handles.get(fmt)
            if out is None:
                out = handles[fmt] = open(per_format_dir / f"{fmt}.jsonl", "wb", buffering=1 << 20)
            out.write(line + b"\n")
    finally:
        for out in handles.values():
            out.close()
    spec = world.spec
    (output_dir / "labels.json").write_bytes(orjson.dumps({
        "seed": spec.seed, "users": spec.users, "hours": spec.hours, "start": spec.start.isoformat(),
        "attacks": [label.to_json() for label in world.labels]}, option=orjson.OPT_INDENT_2))


def detect(settings: Settings, output_dir: Path, world: World,
           progress: bool | None) -> tuple[list[dict[str, Any]], Summary]:
    """The batch detection path (``DetectRun``, as `tokenwatch detect`) over every line of
    the world, all sources interleaved in event-time order; alerts to alerts.jsonl."""
    enricher = build_enricher(settings)
    settle_heap()
    # The world may be dated after the wall clock (a long --duration): keep its lines out of
    # the "dated in the future" dead letters.
    horizon = datetime.fromtimestamp(world.spec.t_end, tz=timezone.utc) + timedelta(hours=1)

    def clock() -> datetime:
        return max(datetime.now(timezone.utc), horizon)

    alerts_path, dead_path = output_dir / "alerts.jsonl", output_dir / "dead-letters.jsonl"
    dead_path.unlink(missing_ok=True)
    with open(alerts_path, "wb") as alerts_out, LazyFile(dead_path) as dead_out:
        run = DetectRun(settings, token_hasher(), alerts_out, dead_out, None, enricher, clock)
        with _bar(len(world.records), "detecting", "lines", progress) as tick:
            run.feed(_ticking((line for _, line in world.lines()), tick), "world")
        summary = run.finish()
    alerts = [orjson.loads(line) for line in alerts_path.read_bytes().splitlines()]
    return alerts, summary


def store_step(settings: Settings, alerts: list[dict[str, Any]]) -> None:
    """Alerts into the local SQLite store (a fresh one per demo run)."""
    from pipeline.store.base import open_store
    from pipeline.store.ingest import store_alerts

    path = Path(settings.store.path)
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    store = open_store(settings)
    try:
        store_alerts(store, alerts)
    finally:
        store.close()


def respond_step(settings: Settings, alerts: list[dict[str, Any]], result: DemoResult) -> None:
    """The response policy over every alert, dry-run, with an RFC 7009 responder pointed at a
    local endpoint: actions and audit trail land in the store; nothing is sent."""
    try:
        from pipeline.response.config import ResponseConfig, Rfc7009Config
        from pipeline.response.executor import Executor
        from pipeline.response.responders import build_responders
        from pipeline.store.base import open_store
    except ImportError as exc:  # the response package is optional for the demo's figures
        result.response_note = f"response step skipped: {exc}"
        return
    secret = result.output_dir / "demo-client-secret"
    secret.write_text("demo-only-secret\n", encoding="utf-8")
    with _local_revocation_endpoint() as (url, received):
        config = ResponseConfig(
            enabled=True, dry_run=True,
            responders={"local-idp": Rfc7009Config(revocation_endpoint=url, client_id="tokenwatch",
                                                   client_secret_file=secret)},
            routes={"*:token": "local-idp", "*:family": "local-idp"},
        )
        store = open_store(settings)
        responders = build_responders(config.responders)
        try:
            actions = Executor(config, store, responders).submit(alerts)
            for action in actions:
                done = store.get_action(action.id) or action
                result.actions[f"{done.mode}:{done.state}"] += 1
        finally:
            for responder in responders.values():
                responder.close()
            store.close()
        result.endpoint, result.endpoint_requests = url, len(received)


@contextmanager
def _local_revocation_endpoint() -> Iterator[tuple[str, list[bytes]]]:
    """A minimal RFC 7009 endpoint on loopback: answers 200 to every revocation (§2.2)."""
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's naming
            received.append(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/revoke", received
    finally:
        server.shutdown()
        server.server_close()


# -- the summary -------------------------------------------------------------------------
def render_summary(r: DemoResult) -> str:
    spec, world, d, s = r.world.spec, r.world, r.detect, r.score
    fmt = ", ".join(f"{k} {v:,}" for k, v in sorted(world.per_format().items(), key=lambda kv: -kv[1]))
    victims = len(world.labels)
    out = [
        f"tokenwatch demo — seed {spec.seed}, {spec.hours:g} h of event time from {spec.start:%Y-%m-%d %H:%M}Z",
        f"  world: {len(world.users):,} employees ({spec.users:,} + {victims} attack victims), "
        f"{max(3, spec.users // 40)} client-credentials jobs ({', '.join(c for c, *_ in SERVICE_CLIENTS)}), "
        f"as many Kubernetes pods, {max(2, max(3, spec.users // 40) // 2)} EC2 instances; {victims} injected attacks",
        "  benign moves (each a classic false positive): "
        + (", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in sorted(world.behaviours.items())) or "none"),
        f"  lines: {d.lines:,} ({fmt}); canonical events: {d.events:,}; dead letters: "
        f"{sum(d.dead_letters.values())}; skipped types: {sum(d.skipped.values())}",
        f"  detection: {d.events:,} events in {d.seconds:.1f} s = {r.events_per_s:,.0f} events/s",
        "",
        f"{'rule':<40} {'alerts':>6} {'attacks':>8} {'false pos.':>10}",
    ]
    by_rule: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for rule, n in s.per_rule.items():
        by_rule[rule][0] = n
    for o in s.outcomes:
        by_rule[o.label.rule][1] += 1
    for alert in s.false_positives:
        by_rule[alert["rule"]["id"]][2] += 1
    for rule, (n, attacks, fps) in sorted(by_rule.items()):
        out.append(f"{rule:<40} {n:>6} {attacks:>8} {fps:>10}")
    out += ["", render(s), ""]
    if r.endpoint is not None:
        planned = ", ".join(f"{n} {k.replace(':', ' → ')}" for k, n in sorted(r.actions.items())) or "none"
        out.append(f"response (dry run; RFC 7009 responder → {r.endpoint}): actions {planned}; "
                   f"requests the endpoint received: {r.endpoint_requests}")
    elif r.response_note:
        out.append(r.response_note)
    t = r.timings
    out += [
        f"wall time: {t.get('total', 0):.1f} s (generate + write {t.get('generate', 0):.1f} s, detect "
        f"{t.get('detect', 0):.1f} s, store {t.get('store', 0):.1f} s, respond {t.get('respond', 0):.1f} s)",
        f"files in {r.output_dir}/:",
        "  events/<format>.jsonl                generated lines, one file per source, event-time order",
        "  labels.json                          ground truth: each injected attack, its rule and ids",
        "  alerts.jsonl                         alert documents",
        "  tokenwatch.db                        alert store (SQLite): alerts, actions, audit trail",
        f"  tokenwatch.toml                      config for it: tokenwatch alerts list --config {r.output_dir}/tokenwatch.toml",
        "  summary.json                         these figures",
    ]
    return "\n".join(out)


def show_world_demo(spec: WorldSpec, output_dir: Path, progress: bool | None = None) -> int:
    result = run_demo(spec, output_dir, progress)
    print(printable_lines(render_summary(result)))
    ok = result.score.caught == result.score.attacks and not result.score.false_positives
    return 0 if ok else 1


# -- helpers -------------------------------------------------------------------------------
@contextmanager
def _bar(total: int, what: str, unit: str, enabled: bool | None) -> Iterator[Callable[[int], object]]:
    """A tqdm bar on stderr (``enabled`` None: only on a terminal); yields its update function."""
    if enabled is False:
        yield lambda n: None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=what, unit=f" {unit}", file=sys.stderr, disable=None if enabled is None else False,
              mininterval=0.5, leave=False) as bar:
        yield bar.update


def _ticking(lines: Iterable[bytes], tick: Callable[[int], object], every: int = 4096) -> Iterator[bytes]:
    n = 0
    for line in lines:
        yield line
        n += 1
        if n == every:
            tick(n)
            n = 0
    tick(n)


# -- the bundled sample (``--sample``) ---------------------------------------------------------
def show_demo(sample: Path, output_dir: Path) -> int:
    output_dir.mkdir(parents=True, exist_ok=True)
    alerts_path = output_dir / "alerts.jsonl"
    settings = load_settings(DEMO_CONFIG)
    with open(alerts_path, "wb") as out:
        summary = run_detect(settings, str(sample), out, output_dir / "dead-letters.jsonl", "auto")
    alerts = [orjson.loads(line) for line in alerts_path.read_bytes().splitlines()]
    print(f"{'severity':<9} {'rule':<38} {'token':<30} summary")
    for alert in sorted(alerts, key=lambda a: a["@timestamp"]):
        print(printable(f"{alert['alert']['severity']:<9} {alert['rule']['id']:<38} "
                        f"{alert['token'].get('id', '-'):<30} {alert['alert']['summary']}"))
    report = scenario_report(alerts)
    print()
    print(printable_lines(report.text))
    print("\n" + printable(f"{summary.events} events, alerts in {alerts_path}"), file=sys.stderr)
    return 0


class ScenarioReport:
    def __init__(self, caught: int, attacks: int, false_positives: int, text: str) -> None:
        self.caught, self.attacks, self.false_positives, self.text = caught, attacks, false_positives, text


def scenario_report(alerts: list[dict[str, Any]]) -> ScenarioReport:
    """Compare alerts with what each sample scenario expects."""
    all_scenarios = scenarios()
    raised: dict[str, set[str]] = defaultdict(set)
    for alert in alerts:
        scenario = scenario_of(alert["token"].get("id"), all_scenarios)
        raised[scenario.name if scenario else "?"].add(alert["rule"]["id"])
    lines = [f"{'scenario':<30} {'expected':<60} result"]
    caught = attacks = false_positives = 0
    for s in all_scenarios:
        got = raised.get(s.name, set())
        if s.is_attack:
            attacks += 1
            ok = got == set(s.expected)
            caught += ok
            result = "caught" if ok else f"MISSED/DIFFERENT: {sorted(got)}"
        else:
            false_positives += bool(got)
            result = "quiet (benign)" if not got else f"FALSE POSITIVE: {sorted(got)}"
        lines.append(f"{s.name:<30} {', '.join(s.expected) or '-':<60} {result}")
    lines.append(f"\nattacks caught: {caught}/{attacks}; alerts on benign twins: {false_positives}")
    return ScenarioReport(caught, attacks, false_positives, "\n".join(lines))
