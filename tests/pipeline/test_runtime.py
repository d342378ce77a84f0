"""The one runtime (issue 15): every entry point builds the normaliser and engine the same
way and reads lines through the same loop, with one typed result per line; moving
`detect` onto it changed no alert (the demo's alert ids are pinned as the code before the
move produced them)."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
from pathlib import Path

import orjson

from detectors.anomaly import AnomalyConfig, AnomalyDetector
from pipeline.analyst import explore
from pipeline.cli.demo import demo_settings, detect
from pipeline.config import Settings
from pipeline.model.train import read_events
from pipeline.runtime.build import build_engine, build_reader, token_hasher
from pipeline.runtime.detect import DetectRun
from pipeline.runtime.files import LazyFile
from pipeline.runtime.lines import LineReader
from pipeline.synthetic.world import WorldSpec, generate
from schemas.events import EventKind
from tests.detect_helpers import NOW

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = (ROOT / "pipeline" / "data" / "sample.jsonl").read_bytes().splitlines()
CANONICAL = SAMPLE[0]  # refresh-reuse-e1: an "issued" event in tokenwatch's own canonical format
GATEWAY = next(line for line in SAMPLE if b"canonical_version" not in line)  # concurrent-use-r3
# Keycloak admin event (CREATE GROUP): no detector needs it, so it is skipped.
KEYCLOAK_ADMIN = (ROOT / "tests" / "data" / "formats" / "keycloak_admin.jsonl").read_bytes().splitlines()[5]
NO_CANONICAL = Settings(trust={"detect_canonical": False})

# `tokenwatch demo --size 40 --seed 11 --duration 8h`: the alert ids DetectRun in
# pipeline/batch.py produced before the move to pipeline/runtime (commit 6c11836).
DEMO_ALERT_IDS = [
    "tw-0497c472c9361341a07981f8", "tw-06935a88863bfde8de8ceec9", "tw-08e913effa3a4d7ef6e2e448",
    "tw-1dedf940b2ffd9c18d418de8", "tw-29c8b436f02c805682776735", "tw-29f3cb0fe2142329a2c6d8d0",
    "tw-3a35f600446a6bd5d3ae2ad8", "tw-51e77d93eb7a1893992543f8", "tw-62bd1ed1c6fbe41de52d9817",
    "tw-85b1c2b97f3c00533727d89e", "tw-8786298053bd69e144cc1899", "tw-8ba8c9c958bd049312c2ebfe",
    "tw-8d5671eb6abecc40e41c4d01", "tw-9873281e866a7ff6f6264c06", "tw-9b54d25c3a58ed323763c04f",
    "tw-e0703070eb5d150df1871bad",
]


def _reader(settings: Settings) -> LineReader:
    return build_reader(settings, token_hasher(), clock=lambda: NOW)


def test_demo_alert_ids_are_those_of_the_code_before_the_move(tmp_path: Path) -> None:
    world = generate(WorldSpec(users=40, seed=11, hours=8))
    alerts, summary = detect(demo_settings(tmp_path), tmp_path, world, False)
    assert sorted(a["alert"]["id"] for a in alerts) == DEMO_ALERT_IDS
    assert (summary.lines, summary.events, sum(summary.dead_letters.values())) == (5368, 5488, 0)
    assert not (tmp_path / "dead-letters.jsonl").exists()  # the lazy file: none without a dead letter


def test_one_typed_result_per_line() -> None:
    results = list(_reader(NO_CANONICAL).results([GATEWAY, b"\n", b"not json\r\n", KEYCLOAK_ADMIN, CANONICAL], "t"))
    assert [r.origin for r in results] == ["t:1", "t:2", "t:3", "t:4", "t:5"]
    used, blank, garbage, admin, canonical = results

    assert (used.format, used.blank, used.dead_letter, used.skipped_type, used.refused) == ("gateway", False, None, None, [])
    [event] = used.events
    assert (event.kind, event.token.id if event.token else None, event.subject.id, event.client_id,
            event.session_id, event.network.ip, event.time.isoformat()) == (
        EventKind.USED, "concurrent-use-at1", "concurrent-use-user", "portal", "concurrent-use-session",
        "79.200.1.10", "2026-11-23T03:00:10+00:00")

    assert blank.blank and blank.events == [] and blank.dead_letter is None

    assert garbage.format == "unknown" and garbage.events == [] and garbage.dead_letter is not None
    assert garbage.dead_letter["reason"].startswith("not JSON") and garbage.dead_letter["origin"] == "t:3"
    assert garbage.dead_letter["raw_bytes"] == 8  # the line without its CR LF

    assert (admin.format, admin.skipped_type, admin.events, admin.dead_letter) == (
        "keycloak", "admin CREATE GROUP", [], None)

    assert canonical.events == [] and canonical.mapped == 1
    assert [(e.event_id, refusal.code) for e, refusal in canonical.refused] == [("refresh-reuse-e1", "canonical_untrusted")]
    assert canonical.refused_letter == {
        "reason": "trust: canonical events are not accepted from the detect input (trust.detect_canonical)",
        "trust": "canonical_untrusted", "format": "canonical", "origin": "t:5", "refused_events": 1,
        "events": [{"event_id": "refresh-reuse-e1", "kind": "issued"}],
    }


def test_detect_counts_and_dead_letters_each_kind_of_line() -> None:
    alerts_out, dead_out = io.BytesIO(), io.BytesIO()
    run = DetectRun(NO_CANONICAL, token_hasher(), alerts_out, dead_out, None, None, clock=lambda: NOW)
    run.feed([GATEWAY + b"\n", b"  \r\n", b"not json\n", KEYCLOAK_ADMIN, CANONICAL], "in")
    summary = run.finish()
    assert (summary.lines, summary.blank_lines, summary.events) == (5, 1, 1)
    assert summary.per_format == {"gateway": 1}
    assert summary.skipped == {"keycloak:admin CREATE GROUP": 1}
    assert summary.dead_letters == {"unknown": 1, "canonical": 1}
    assert summary.refused == {"canonical_untrusted": 1}
    letters = [orjson.loads(line) for line in dead_out.getvalue().splitlines()]
    assert [(d["origin"], d.get("trust")) for d in letters] == [("in:3", None), ("in:5", "canonical_untrusted")]
    assert alerts_out.getvalue() == b""


def test_training_and_notebooks_read_what_detect_hands_its_engine(tmp_path: Path) -> None:
    """Same loop, same rules: a canonical line `detect` refuses is not trained on either."""
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join([CANONICAL, b"", GATEWAY, b"not json", KEYCLOAK_ADMIN]) + b"\n")
    trained = [e.event_id for e in read_events(path, NO_CANONICAL, enrich=False)]
    shown = [e.event_id for e in explore.read_events(path.read_bytes().splitlines(), NO_CANONICAL, enrich=False)]
    submitted = [e.event_id for r in _reader(NO_CANONICAL).results(path.read_bytes().splitlines(), "f") for e in r.events]
    assert trained == shown == submitted and len(submitted) == 1
    assert len([e.event_id for e in read_events(path, Settings(), enrich=False)]) == 2  # canonical accepted by default


def test_engine_built_one_way_for_every_caller() -> None:
    settings = Settings()
    default = build_engine(settings)
    assert sorted(d.name for d in default.detectors) == sorted(d.name for d in settings.build_detectors())
    alone = AnomalyDetector(AnomalyConfig(), collect=True)
    training = build_engine(settings, detectors=[alone], track_changes=True)
    assert list(training.detectors) == [alone] and training.state.track_changes


def test_lazy_file_appears_on_the_first_write_only(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    with LazyFile(path):
        pass
    assert not path.exists()
    with LazyFile(path) as dead:
        dead.write(b"a\n")
    with LazyFile(path) as dead:
        dead.write(b"b\n")
    assert path.read_bytes() == b"a\nb\n"  # appended, as `detect --dead-letter` always did


def test_demo_and_runtime_do_not_import_the_cli() -> None:
    """The demo once imported ``run_detect`` back from ``pipeline.cli.main``: an import cycle."""
    code = "import sys, pipeline.cli.demo, pipeline.runtime.detect; print('pipeline.cli.main' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    for module in sorted((ROOT / "pipeline" / "runtime").glob("*.py")):
        imported = {node.module for node in ast.walk(ast.parse(module.read_text())) if isinstance(node, ast.ImportFrom)}
        callers = {"pipeline.cli.main", "pipeline.cli.demo", "pipeline.analyst.explore", "pipeline.model.train", "pipeline.service.runner"}
        assert not imported & callers, module.name
