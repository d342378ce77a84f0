"""`tokenwatch demo`: the synthetic world end to end (every injected attack caught, no alert
on the benign population, the summary says so, files and store where it says), and the
bundled sample (`--sample`): every attack caught, every benign twin quiet."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import orjson
import pytest

from pipeline.cli.demo import scenario_report
from pipeline.cli.main import SAMPLE_STREAM, main
from pipeline.store.sqlite import SqliteStore
from pipeline.synthetic.sample import render, scenarios
from pipeline.synthetic.world.attacks import EPISODES
from tests.conftest import TEST_HASH_KEY

SMALL = ["--size", "40", "--seed", "11", "--duration", "8h"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    out = tmp_path_factory.mktemp("demo")
    buffer = io.StringIO()
    with pytest.MonkeyPatch.context() as env, contextlib.redirect_stdout(buffer):
        # module scope runs before conftest's per-test secrets fixture: isolate the hash key here too
        env.setenv("TOKENWATCH_TOKEN_HASH_KEY", TEST_HASH_KEY.decode())
        env.setenv("TOKENWATCH_STATE_DIR", str(tmp_path_factory.mktemp("state")))
        code = main(["demo", *SMALL, "--output-dir", str(out)])
    return out, code, buffer.getvalue()


def test_demo_catches_every_injected_attack_with_no_false_positive(demo_run: tuple[Path, int, str]) -> None:
    out, code, text = demo_run
    assert code == 0
    figures = orjson.loads((out / "summary.json").read_bytes())
    assert figures["attacks"] == figures["caught"] == len(EPISODES)
    assert figures["false_positives"] == 0 and figures["false_positive_alerts"] == []
    assert all(o["caught"] and o["other_rules"] == [] for o in figures["outcomes"])
    assert f"attacks caught: {len(EPISODES)}/{len(EPISODES)}; false positives on the benign population: 0" in text
    assert sum(figures["alerts_per_rule"].values()) == len(EPISODES)
    assert figures["events"] > 5000 and figures["events_per_s"] > 0
    [moves] = [line for line in text.splitlines() if line.startswith("  benign moves")]
    assert "vpn" in moves and "none" not in moves  # the classic false positives are in the world, and quiet


def test_demo_writes_events_labels_alerts_and_the_store(demo_run: tuple[Path, int, str]) -> None:
    out, _, text = demo_run
    formats = {p.stem for p in (out / "events").glob("*.jsonl")}
    assert formats == {"keycloak", "okta", "entra", "graph", "cloudtrail", "k8s", "gateway"}
    labels = orjson.loads((out / "labels.json").read_bytes())
    assert len(labels["attacks"]) == len(EPISODES) and labels["seed"] == 11
    alerts = [orjson.loads(line) for line in (out / "alerts.jsonl").read_bytes().splitlines()]
    store = SqliteStore(out / "tokenwatch.db")
    try:
        assert {a["alert"]["id"] for a in store.list_alerts(limit=1000)} == {a["alert"]["id"] for a in alerts}
        actions = store.list_actions(limit=1000)
        assert actions and all(a.dry_run for a in actions)
        assert {a.state for a in actions} <= {"dry_run", "awaiting_approval"}
    finally:
        store.close()
    assert "requests the endpoint received: 0" in text and str(out / "tokenwatch.db") in (out / "tokenwatch.toml").read_text()
    assert not (out / "dead-letters.jsonl").exists()


def test_demo_rejects_a_world_too_short_for_its_attacks(tmp_path: Path) -> None:
    assert main(["demo", "--duration", "2h", "--output-dir", str(tmp_path)]) == 2


# -- the bundled sample -----------------------------------------------------------------
def test_committed_sample_matches_its_generator() -> None:
    assert SAMPLE_STREAM.read_bytes() == render(scenarios()), "run: python -m pipeline.synthetic.sample"


def test_sample_has_an_attack_for_every_rule_and_benign_twins() -> None:
    from detectors import DETECTORS

    rules = {rule.id for cls in DETECTORS.values() for rule in cls.rules if rule.in_demo}
    covered = {rule for s in scenarios() for rule in s.expected}
    assert covered == rules
    assert sum(not s.is_attack for s in scenarios()) >= 10


def test_sample_demo_catches_every_attack_with_no_false_positive(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--sample", "--output-dir", str(tmp_path)]) == 0
    alerts = [orjson.loads(x) for x in (tmp_path / "alerts.jsonl").read_bytes().splitlines()]
    report = scenario_report(alerts)
    assert report.caught == report.attacks == sum(s.is_attack for s in scenarios())
    assert report.false_positives == 0
    out = capsys.readouterr().out
    assert f"attacks caught: {report.attacks}/{report.attacks}; alerts on benign twins: 0" in out
