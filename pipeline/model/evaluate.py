"""Evaluation on a labeled stream: ROC AUC, precision, recall and alert volume.

The stream runs through every configured detector with the anomaly model
installed. Behaviour windows that end after the model's training window are
judged against the labels (a window of an attacked token overlapping the
attack is an attack window); alerts are counted per rule, and anomaly alerts
per 10k active tokens per day against the budget.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from detectors.anomaly import AnomalyDetector
from detectors.anomaly.model import AnomalyModel
from pipeline.config import Settings
from pipeline.model.train import anomaly_config, run_engine
from schemas.events import CanonicalEvent


@dataclass
class Report:
    model: AnomalyModel
    windows: int = 0
    attack_windows: int = 0
    roc_auc: float = float("nan")
    precision: float = float("nan")
    recall: float = float("nan")
    flagged: int = 0
    true_positives: int = 0
    anomaly_alerts: int = 0
    alerts_on_attacks: int = 0
    token_days: int = 0
    days: float = 0.0
    per_attack: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind -> (caught, total)
    rule_alerts: Counter[str] = field(default_factory=Counter)
    rule_alerts_on_attacks: Counter[str] = field(default_factory=Counter)
    misses: list[str] = field(default_factory=list)

    @property
    def alerts_per_10k_token_days(self) -> float:
        return self.anomaly_alerts / self.token_days * 10_000 if self.token_days else 0.0

    @property
    def benign_alerts_per_10k_token_days(self) -> float:
        """False alerts only: the volume the budget bounds (attacks are not the analyst's noise)."""
        benign = self.anomaly_alerts - self.alerts_on_attacks
        return benign / self.token_days * 10_000 if self.token_days else 0.0

    def render(self) -> str:
        budget = self.model.budget_per_10k_token_days
        held = "holds" if self.benign_alerts_per_10k_token_days <= budget else "EXCEEDED"
        lines = [
            self.model.describe(),
            f"windows judged: {self.windows:,} ({self.attack_windows} attack windows) over {self.days:.1f} days, "
            f"{self.token_days:,} active token-days",
            f"ROC AUC: {self.roc_auc:.4f}",
            f"at threshold {self.model.threshold:.4f}: {self.flagged} windows flagged, precision "
            f"{self.precision:.3f}, recall {self.recall:.3f}",
            f"anomaly alerts: {self.anomaly_alerts} ({self.alerts_on_attacks} on attacks) = "
            f"{self.alerts_per_10k_token_days:.1f} per 10k active tokens per day, "
            f"{self.benign_alerts_per_10k_token_days:.1f} on benign tokens; budget {budget:g}: {held}",
            "recall per attack: " + ", ".join(f"{k} {c}/{t}" for k, (c, t) in sorted(self.per_attack.items())),
            "rule alerts on attack tokens: " + (_fmt(self.rule_alerts_on_attacks) or "none"),
            "rule alerts in all: " + (_fmt(self.rule_alerts) or "none"),
        ]
        if self.misses:
            lines.append("missed attacks (best window score vs threshold):")
            lines += [f"  {m}" for m in self.misses]
        return "\n".join(lines)


def _fmt(counter: Counter[str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counter.items()))


def _epoch(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def evaluate(events: Iterable[CanonicalEvent], labels: list[dict[str, Any]], model: AnomalyModel,
             settings: Settings) -> Report:
    from sklearn.metrics import roc_auc_score

    config = anomaly_config(settings, model_path=None)
    anomaly = AnomalyDetector(config, collect=True)
    anomaly.swap(model)
    anomaly.recorder = []
    rules = [d for d in settings.build_detectors() if d.name != "anomaly"]
    alerts = run_engine([*rules, anomaly], events, settings)

    attacks: dict[str, list[tuple[float, float, str]]] = {}
    for label in labels:
        attacks.setdefault(label["token_id"], []).append((_epoch(label["start"]), _epoch(label["end"]), label["attack"]))
    report = Report(model=model)
    y: list[int] = []
    scores: list[float] = []
    best: dict[tuple[str, float], float] = {}
    first = last = None
    for token_id, start, end, score in anomaly.recorder:
        if start <= model.trained_to:
            continue
        first = start if first is None else min(first, start)
        last = end if last is None else max(last, end)
        hit = next((a for a in attacks.get(token_id, ()) if start <= a[1] and end >= a[0]), None)
        y.append(int(hit is not None))
        scores.append(score)
        if hit is not None:
            key = (token_id, hit[0])
            best[key] = max(best.get(key, float("-inf")), score)
    report.windows, report.attack_windows = len(y), sum(y)
    if 0 < sum(y) < len(y):
        report.roc_auc = float(roc_auc_score(y, scores))
    flagged = [s > model.threshold for s in scores]
    report.flagged = sum(flagged)
    report.true_positives = sum(f and t for f, t in zip(flagged, y, strict=True))
    report.precision = report.true_positives / report.flagged if report.flagged else float("nan")
    report.recall = report.true_positives / report.attack_windows if report.attack_windows else float("nan")

    per: dict[str, list[int]] = {}
    for label in labels:
        key = (label["token_id"], _epoch(label["start"]))
        best_score = best.get(key)
        caught = best_score is not None and best_score > model.threshold
        counts = per.setdefault(label["attack"], [0, 0])
        counts[0] += caught
        counts[1] += 1
        if not caught:
            shown = f"{best_score:.4f}" if best_score is not None else "no window judged"
            report.misses.append(f"{label['attack']} on {label.get('subject', '?')} ({label['token_id']}): {shown} "
                                 f"vs {model.threshold:.4f}")
    report.per_attack = {k: (c, t) for k, (c, t) in per.items()}

    for alert in alerts:
        report.rule_alerts[alert.rule.id] += 1
        token = alert.token.id if alert.token else None
        on_attack = token in attacks
        if on_attack:
            report.rule_alerts_on_attacks[alert.rule.id] += 1
        if alert.rule.id == "anomaly.behaviour" and alert.timestamp.timestamp() > model.trained_to:
            report.anomaly_alerts += 1
            report.alerts_on_attacks += on_attack
    if first is not None and last is not None:
        report.days = (last - first) / 86_400
        report.token_days = anomaly.token_days(int(first // 86_400), int(last // 86_400))
    return report
