"""Poison lines: `tokenwatch detect` keeps reading past them, with bounded memory.

A line nested 1,000 deep, one of 200 MB, and CloudTrail log files too large or with
one bad, future or odd record between good ones: each costs at most itself (a dead
letter with its reason, size and hash), never the run, the rest of the input or the
good records beside it. RSS is measured per child process (``os.wait4``).
"""

from __future__ import annotations

import copy
import json
import random
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.synthetic.sample import render, scenarios
from tests.detect_helpers import detect_lines

ROOT = Path(__file__).resolve().parents[2]
FORMATS = ROOT / "tests" / "data" / "formats"
SAMPLE = render([s for s in scenarios() if s.is_attack]).splitlines()
# tokenwatch detect on the bundled sample peaks at ~280 MB (the geo tables); what any input
# may add on top of that is bounded by max_line_bytes and one record, not by the input.
RSS_BOUND_MB = 420


def _detect(tmp_path: Path, source: Path) -> tuple[int, list[dict], list[dict], str, float]:
    """Run the real command in a child process: exit code, alerts, dead letters, stderr, peak RSS in MB."""
    out, dead, peak = tmp_path / "alerts.jsonl", tmp_path / "dead.jsonl", tmp_path / "peak_kb"
    with open(tmp_path / "stderr", "wb") as err:
        proc = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, str(peak), sys.executable, "-m", "pipeline.cli.main", "detect",
             "--input", str(source), "--output", str(out), "--dead-letter", str(dead)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, check=False,
        )
    alerts = [orjson.loads(x) for x in out.read_bytes().splitlines()] if out.exists() else []
    letters = [orjson.loads(x) for x in dead.read_bytes().splitlines()] if dead.exists() else []
    return proc.returncode, alerts, letters, (tmp_path / "stderr").read_text(), int(peak.read_text()) / 1024


# The command's peak RSS, measured by a small launcher: a child forked straight from pytest
# starts with pytest's memory counted in its peak (Linux keeps the high-water mark across
# fork and exec), so once the test process grew past the bound every run "used" it.
_LAUNCHER = """
import os, subprocess, sys
proc = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(proc.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _hits(alerts: list[dict]) -> list[tuple[str, str]]:
    return sorted((a["rule"]["id"], a["token"].get("id")) for a in alerts)


def test_detect_reads_past_a_1000_deep_line_and_a_200_mb_line_with_bounded_memory(tmp_path: Path) -> None:
    plain = tmp_path / "plain.jsonl"
    plain.write_bytes(b"\n".join(SAMPLE) + b"\n")
    code, alerts, letters, _, _ = _detect(tmp_path, plain)
    assert code == 0 and letters == [] and alerts
    poisoned = tmp_path / "poisoned.jsonl"
    half = len(SAMPLE) // 2
    with open(poisoned, "wb") as handle:
        handle.write(b"\n".join(SAMPLE[:half]) + b"\n")
        handle.write(b'{"a":' * 1000 + b"1" + b"}" * 1000 + b"\n")  # within orjson's depth limit
        handle.write(b"[" * 5000 + b"]" * 5000 + b"\n")  # beyond it: cut in the text, then parsed
        handle.write(b'{"user_agent": "')
        chunk = b"A" * (1 << 20)
        for _ in range(200):
            handle.write(chunk)
        handle.write(b'"}\n')
        handle.write(b"\n".join(SAMPLE[half:]) + b"\n")
    code, tricked, letters, stderr, rss_mb = _detect(tmp_path, poisoned)
    assert code == 0, stderr
    assert _hits(tricked) == _hits(alerts)
    reasons = [letter["reason"] for letter in letters]
    assert len(letters) == 3, reasons
    assert reasons[0] == "unknown format: no adapter matches keys [a]"
    assert reasons[1] == "not a JSON object but list"
    assert reasons[2] == f"line of {200 * (1 << 20) + 18} bytes exceeds max_line_bytes"
    assert letters[2]["raw_bytes"] == 200 * (1 << 20) + 18 and len(letters[2]["raw_sha256"]) == 64
    assert rss_mb < RSS_BOUND_MB, rss_mb


# -- CloudTrail log files ---------------------------------------------------------------------
def _ct_records() -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for line in (FORMATS / "cloudtrail.jsonl").read_bytes().splitlines():
        raw = orjson.loads(line)
        records.extend(raw["Records"] if "Records" in raw else [raw])
    return records


def _log_file(count: int, spoil: dict[int, Any] | None = None) -> dict[str, Any]:
    base = _ct_records()
    start = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)
    records = []
    for index in range(count):
        record = dict(base[index % len(base)], eventID=f"ev-{index}")
        record["eventTime"] = (start + timedelta(seconds=index)).isoformat().replace("+00:00", "Z")
        records.append(record)
    for index, value in (spoil or {}).items():
        records[index] = value(records[index]) if callable(value) else value
    return {"Records": records}


SPOILERS: dict[int, Any] = {
    3: lambda r: {**r, "eventTime": "2999-01-01T00:00:00Z"},  # dated in the future
    5: lambda r: {**r, "eventTime": "garbage"},  # unusable identity: that record is refused
    7: "not an object",
    9: lambda r: {**r, "userAgent": "\ud800 thief " + "U" * 5000},  # lone surrogate and over-long
}


def test_a_log_file_loses_only_its_bad_records_in_memory_and_streamed(tmp_path: Path) -> None:
    clean = detect_lines([orjson.dumps(_log_file(40))])
    assert clean.dead_letters == [] and clean.summary.events > 0
    bad = _log_file(40, SPOILERS)
    body = json.dumps(bad).encode()  # the standard library writes the lone surrogate as an escape
    in_memory = detect_lines([body])
    assert in_memory.summary.events == clean.summary.events - 3  # 3, 5 and 7 cost themselves; 9 is kept
    [letter] = in_memory.dead_letters
    assert [entry["index"] for entry in letter["records"]] == [3, 5, 7]
    assert letter["reason"].startswith("cloudtrail: Records[3]: event time 2999-01-01T00:00:00+00:00 is in the future")
    assert "(3 of 40 records invalid: 3, 5, 7)" in letter["reason"]
    streamed = detect_lines([body], {"input": {"max_line_bytes": 4096}})
    assert streamed.summary.events == in_memory.summary.events
    assert streamed.hits == in_memory.hits
    [letter] = streamed.dead_letters
    assert [entry["index"] for entry in letter["records"]] == [3, 5, 7]
    assert letter["raw_bytes"] == len(body)


def test_a_streamed_log_file_cut_short_keeps_the_records_before_the_cut() -> None:
    body = orjson.dumps(_log_file(30))
    found = detect_lines([body[: len(body) * 2 // 3]], {"input": {"max_line_bytes": 4096}})
    assert 10 < found.summary.events < 30
    [letter] = found.dead_letters
    assert "log file unreadable after" in letter["reason"]


def test_a_large_log_file_is_read_record_by_record(tmp_path: Path) -> None:
    path = tmp_path / "trail.json"
    path.write_bytes(orjson.dumps(_log_file(20_000)) + b"\n")
    assert path.stat().st_size > 15 * (1 << 20)
    code, _, letters, stderr, rss_mb = _detect(tmp_path, path)
    assert code == 0 and letters == [], stderr
    assert "per format: cloudtrail=" in stderr
    assert rss_mb < RSS_BOUND_MB, rss_mb


# -- hypothesis: mutated and cut real lines between real attacks -------------------------------
REAL_LINES = [line for path in sorted(FORMATS.glob("*.jsonl")) for line in path.read_bytes().splitlines() if line]


HOSTILE_VALUES: list[Any] = [
    None, True, -1, 0, 2**70, 1e308, "", "A" * 5000, "\x1b[2J", "\u202e", "eyJhbGciOiJub25lIn0.e30.",
    [], {}, [[[[["deep"]]]]], {"$ne": None}, "2999-01-01T00:00:00Z", "1970-01-01T00:00:00Z", "not-an-ip",
]
SPLICES = [b"\xff", b"\x00", b'"', b"{", b"]", b"\\ud800", b"NaN", b"\n", b",", b"\\"]


def _mutate(line: bytes, rnd: Any) -> bytes:
    """One cheap mutation of a real line, chosen by hypothesis's random: a cut, a spliced
    byte sequence, or a value (anywhere in the record) replaced by a hostile one."""
    choice = rnd.random()
    if choice < 0.2:
        return line[: rnd.randrange(len(line))]
    if choice < 0.45:
        at = rnd.randrange(len(line))
        return line[:at] + rnd.choice(SPLICES) + line[at + rnd.choice((0, 1)):]
    raw = orjson.loads(line)
    for _ in range(rnd.randint(1, 3)):
        node = raw
        while isinstance(node, (dict, list)) and node and rnd.random() < 0.7:
            key = rnd.choice(list(node)) if isinstance(node, dict) else rnd.randrange(len(node))
            if not isinstance(node[key], (dict, list)) or rnd.random() < 0.3:
                node[key] = copy.deepcopy(rnd.choice(HOSTILE_VALUES))  # never one object twice
                break
            node = node[key]
    return json.dumps(raw).encode()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_mutations_of_real_lines_never_stop_the_run_nor_hide_the_attacks(seed: int) -> None:
    """100 runs x 100 mutations = 10,000 hostile lines of every format, interleaved with the
    sample's attacks: the run reads every line and the attacks' alerts all still come. Each
    run's mutations come from a seed hypothesis draws (and shrinks on a failure)."""
    rnd = random.Random(seed)
    noise = [_mutate(rnd.choice(REAL_LINES), rnd) for _ in range(100)]
    lines: list[bytes] = []
    for index, line in enumerate(SAMPLE):
        lines.append(line)
        lines.extend(noise[index * 2: index * 2 + 2])
    lines.extend(noise[len(SAMPLE) * 2:])
    found = detect_lines(lines)
    assert found.summary.lines == len(lines)
    assert set(SAMPLE_HITS) <= set(found.hits)


SAMPLE_HITS = detect_lines(list(SAMPLE)).hits


@pytest.mark.parametrize("value", [b"NaN", b"-Infinity", b"1e400", b"1" + b"0" * 400, b'"\xff\xfe thief"'])
def test_one_odd_value_in_a_streamed_log_file_costs_nothing(value: bytes) -> None:
    """ijson stops at the first fault; the repairing reader feeds it what parse_line repairs,
    so an odd value in record 5 does not take records 5 to 39 with it."""
    body = orjson.dumps(_log_file(40))
    marker = b'"eventID":"ev-5"'
    spoiled = body.replace(marker, marker + b',"bytes":' + value, 1)
    plain = detect_lines([body], {"input": {"max_line_bytes": 4096}})
    found = detect_lines([spoiled], {"input": {"max_line_bytes": 4096}})
    assert found.dead_letters == [] and found.summary.events == plain.summary.events
    assert found.hits == plain.hits
    assert sum(found.summary.repairs.values()) == 1
