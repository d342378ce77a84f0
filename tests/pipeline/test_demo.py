"""The bundled sample stream: every attack caught, every benign twin quiet."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from pipeline.cli import SAMPLE_STREAM, main
from pipeline.demo import scenario_report
from pipeline.sample import render, scenarios


def test_committed_sample_matches_its_generator() -> None:
    assert SAMPLE_STREAM.read_bytes() == render(scenarios()), "run: python -m pipeline.sample"


def test_sample_has_an_attack_for_every_rule_and_benign_twins() -> None:
    from detectors import DETECTORS

    # The anomaly rule needs a trained model, which the sample does not ship: it has its own
    # labeled evaluation stream (tokenwatch model generate / tests/anomaly).
    rules = {rule.id for cls in DETECTORS.values() for rule in cls.rules if rule.category != "anomaly"}
    covered = {rule for s in scenarios() for rule in s.expected}
    assert covered == rules
    assert sum(not s.is_attack for s in scenarios()) >= 10


def test_demo_catches_every_attack_with_no_false_positive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--output-dir", str(tmp_path)]) == 0
    alerts = [orjson.loads(x) for x in (tmp_path / "alerts.jsonl").read_bytes().splitlines()]
    report = scenario_report(alerts)
    assert report.caught == report.attacks == sum(s.is_attack for s in scenarios())
    assert report.false_positives == 0
    out = capsys.readouterr().out
    assert f"attacks caught: {report.attacks}/{report.attacks}; alerts on benign twins: 0" in out
