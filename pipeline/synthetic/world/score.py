"""Alerts against the ground truth: which injected attack each alert explains,
which attacks were caught by their rule, and which alerts no attack explains
(false positives on the benign population)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pipeline.synthetic.world.model import Label


@dataclass
class Outcome:
    label: Label
    caught_by: list[dict[str, Any]] = field(default_factory=list)  # alerts of the expected rule
    also: list[dict[str, Any]] = field(default_factory=list)  # alerts of other rules about the same ids

    @property
    def caught(self) -> bool:
        return bool(self.caught_by)


@dataclass
class Score:
    outcomes: list[Outcome]
    false_positives: list[dict[str, Any]]
    per_rule: Counter[str]

    @property
    def attacks(self) -> int:
        return len(self.outcomes)

    @property
    def caught(self) -> int:
        return sum(o.caught for o in self.outcomes)

    @property
    def extra_alerts(self) -> int:
        return sum(len(o.also) for o in self.outcomes)

    def to_json(self) -> dict[str, Any]:
        return {
            "attacks": self.attacks, "caught": self.caught, "false_positives": len(self.false_positives),
            "alerts_per_rule": dict(sorted(self.per_rule.items())),
            "outcomes": [{**o.label.to_json(), "caught": o.caught,
                          "alert_ids": [a["alert"]["id"] for a in o.caught_by],
                          "other_rules": sorted({a["rule"]["id"] for a in o.also})} for o in self.outcomes],
            "false_positive_alerts": [{"id": a["alert"]["id"], "rule": a["rule"]["id"], "summary": a["alert"]["summary"]}
                                      for a in self.false_positives],
        }


def alert_ids(alert: Mapping[str, Any]) -> set[str]:
    """The ids an alert names that a label may list: token, session, token family."""
    token = alert.get("token") or {}
    session = alert.get("session") or {}
    ids = {token.get("id"), session.get("id")}
    if token.get("family_id"):
        ids.add(f"family:{token['family_id']}")
    return {i for i in ids if i}


def score(alerts: Iterable[Mapping[str, Any]], labels: Iterable[Label]) -> Score:
    outcomes = [Outcome(label) for label in labels]
    by_key: dict[str, list[Outcome]] = {}
    for outcome in outcomes:
        for key in outcome.label.keys:
            if key:
                by_key.setdefault(key, []).append(outcome)
    false_positives: list[dict[str, Any]] = []
    per_rule: Counter[str] = Counter()
    for alert in alerts:
        doc = dict(alert)
        rule = doc["rule"]["id"]
        per_rule[rule] += 1
        matched = {id(o): o for key in alert_ids(doc) for o in by_key.get(key, ())}
        if not matched:
            false_positives.append(doc)
            continue
        for outcome in matched.values():
            (outcome.caught_by if outcome.label.rule == rule else outcome.also).append(doc)
    return Score(outcomes, false_positives, per_rule)


def render(result: Score) -> str:
    """The attacks table and the verdict line, for the terminal."""
    width = max((len(o.label.attack) for o in result.outcomes), default=10) + 2
    lines = [f"{'injected attack':<{width}} {'source':<17} {'expected rule':<38} result"]
    for o in result.outcomes:
        label = o.label
        if o.caught:
            ids = ", ".join(a["alert"]["id"] for a in o.caught_by)
            verdict = f"caught by {ids}"
        else:
            verdict = "MISSED"
        if o.also:
            verdict += f" (also: {', '.join(sorted({a['rule']['id'] for a in o.also}))})"
        lines.append(f"{label.attack:<{width}} {label.source:<17} {label.rule:<38} {verdict}")
    for alert in result.false_positives:
        lines.append(f"FALSE POSITIVE {alert['rule']['id']} {alert['alert']['id']}: {alert['alert']['summary']}")
    lines.append("")
    lines.append(f"attacks caught: {result.caught}/{result.attacks}; "
                 f"false positives on the benign population: {len(result.false_positives)}")
    return "\n".join(lines)
