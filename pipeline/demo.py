"""`tokenwatch demo`: detection over the bundled sample stream, shown as a table.

The sample holds each attack next to its benign twin; the demo says which
attacks were caught and whether any benign twin raised an alert.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import orjson

from pipeline.cli import run_detect
from pipeline.config import load_settings
from pipeline.sample import scenario_of, scenarios

DEMO_CONFIG = Path(__file__).parent / "data" / "demo.toml"


def show_demo(sample: Path, output_dir: Path) -> int:
    output_dir.mkdir(parents=True, exist_ok=True)
    alerts_path = output_dir / "alerts.jsonl"
    settings = load_settings(DEMO_CONFIG)
    with open(alerts_path, "wb") as out:
        summary = run_detect(settings, str(sample), out, output_dir / "dead-letters.jsonl", "auto")
    alerts = [orjson.loads(line) for line in alerts_path.read_bytes().splitlines()]
    print(f"{'severity':<9} {'rule':<38} {'token':<30} summary")
    for alert in sorted(alerts, key=lambda a: a["@timestamp"]):
        print(f"{alert['alert']['severity']:<9} {alert['rule']['id']:<38} "
              f"{alert['token'].get('id', '-'):<30} {alert['alert']['summary']}")
    report = scenario_report(alerts)
    print()
    print(report.text)
    print(f"\n{summary.events} events, alerts in {alerts_path}", file=sys.stderr)
    return 0


class ScenarioReport:
    def __init__(self, caught: int, attacks: int, false_positives: int, text: str) -> None:
        self.caught, self.attacks, self.false_positives, self.text = caught, attacks, false_positives, text


def scenario_report(alerts: list[dict]) -> ScenarioReport:
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
