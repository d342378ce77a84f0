"""One answer under any real arrival order (issue 18), `tokenwatch detect` side: the demo world
delivered in event-time order, with each source's usual delay, with Okta two hours late and as
per-format files one after another; every injected attack is caught in each, nothing else is
raised, and late events are counted against the per-source watermark.
(tests/integration/test_one_answer_service.py runs the same deliveries through `tokenwatch run`
and asserts the same alert ids.)"""

from __future__ import annotations

import pytest

from pipeline.synthetic.world.score import score
from schemas.redaction import make_token_hasher
from tests.conftest import TEST_HASH_KEY
from tests.one_answer_world import DELIVERIES, deliver, detect, world

HASHER = make_token_hasher(TEST_HASH_KEY)


@pytest.mark.parametrize("how", DELIVERIES)
def test_every_attack_is_caught_and_nothing_else_however_the_world_arrives(how: str) -> None:
    alerts, summary = detect(deliver(how), HASHER)
    result = score(alerts, world().labels)
    missed = [outcome.label.attack for outcome in result.outcomes if not outcome.caught]
    assert missed == [] and result.false_positives == []
    assert result.attacks == len(world().labels) > 10
    if how == "in_order":
        assert summary.engine["late_events"] == summary.engine["reordered_events"] == 0
    else:  # some lines arrive after the slowest source's watermark passed them: judged all the same
        assert summary.engine["late_events"] > 0


def test_a_source_two_hours_late_holds_state_for_its_revocations() -> None:
    """Okta's revocation of a token the gateway saw used arrives two hours after the use: Okta
    keeps delivering, so time waits for it and the use is still in state (with one watermark for
    every source, the token had expired from state and the alert was missed)."""
    alerts, summary = detect(deliver("okta_two_hours_late"), HASHER)
    [label] = [label for label in world().labels if label.attack == "revoked_token_still_accepted"]
    found = [a for a in alerts if a["rule"]["id"] == label.rule and a["token"]["id"] in label.keys]
    assert len(found) == 1 and found[0]["details"]["retroactive"] is True
    assert 0 < summary.engine["late_events"] < len(deliver("okta_two_hours_late")) // 100


def test_the_concatenated_files_give_the_attacks_the_merged_files_give() -> None:
    """The README's backfill: `produce` of the directory merges by event time (``in_order``);
    `cat events/*.jsonl` gives each file hours late behind the previous one, and still the same
    attacks with the same rules."""
    merged, _ = detect(deliver("in_order"), HASHER)
    concatenated, summary = detect(deliver("files_one_after_another"), HASHER)

    def caught(alerts: list[dict]) -> list[tuple[str, tuple[str, ...]]]:
        return sorted((o.label.attack, tuple(sorted({a["rule"]["id"] for a in o.caught_by})))
                      for o in score(alerts, world().labels).outcomes)

    assert caught(concatenated) == caught(merged)
    # Late: the first line of each file after the first (time then waits for that file).
    assert summary.engine["late_events"] == len(world().per_format()) - 1
