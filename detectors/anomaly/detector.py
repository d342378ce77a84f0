"""`anomaly.behaviour`: a token that behaves unlike its subject's and client's baseline.

``process`` only folds each ``used`` event into its token's window (cheap,
no model call); windows are judged in batches when event time closes them
(``expire``) or the input ends (``finish``): one scikit-learn call per batch,
not per event. Inactive (nothing kept, nothing scored) unless ``model_path``
is set. A missing or unusable model file is logged and counted, never fatal:
the detector then only collects its baseline (so the retraining job can write
the first model) and the rule detectors run as usual.

Learning period: a subject first seen less than ``learning_period_s`` ago is
scored and learns, but raises no alert (its baseline cannot yet tell a new habit
from a thief; Microsoft Defender for Cloud Apps' anomaly policies likewise raise
no alerts in their first seven days). ``min_profile_windows`` bounds it by
activity too: a subject needs that many windows before it is scored. A new
client has no learning period: an app the subject never used is what consent
phishing looks like.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from detectors.anomaly import explain
from detectors.anomaly.features import (
    CLIENT_KEYS,
    FEATURES,
    SUBJECT_KEYS,
    Profile,
    Record,
    Window,
    history_s,
    learn,
    new_profile,
    new_window,
    update_window,
    vector,
)
from detectors.anomaly.model import AnomalyModel, ModelError, load
from detectors.base import Detector, DetectorConfig, Finding, RuleMeta
from detectors.state import StateStore, stable_hash
from schemas.alerts import EvidenceItem
from schemas.events import (
    CanonicalEvent,
    EventKind,
    Geo,
    Network,
    Outcome,
    Request,
    Subject,
    TokenRef,
    TokenType,
)

log = logging.getLogger("tokenwatch.anomaly")

BEHAVIOUR = RuleMeta(
    id="anomaly.behaviour",
    name="Token behaves unlike its owner",
    category="anomaly",
    severity="medium",
    risk_score=50,
    techniques=(("T1550.001", "Use Alternate Authentication Material: Application Access Token"),
                ("T1078", "Valid Accounts")),
    response="none",
    in_demo=False,  # a model, not a scripted attack: the demo scores it apart (notebook 04)
    description=(
        "A token's activity in a window (rate, breadth of resources, new networks, countries or "
        "user agents, failures, hour of day, scopes, device drift and network roaming inside the "
        "session) scored above the anomaly model's threshold against its subject's and client's "
        "baseline, once the subject is past its learning period; the summary names the features that "
        "made it unusual."
    ),
)


class AnomalyConfig(DetectorConfig):
    model_path: Path | None = Field(
        default=None, description="Anomaly model file (skops, from `tokenwatch model train`); unset = inactive"
    )
    window_s: float = Field(default=600.0, gt=0, description="Length of a token's behaviour window (event time)")
    min_profile_windows: int = Field(
        default=5, ge=1, description="Windows a subject needs in its baseline before its windows are scored"
    )
    learning_period_s: float = Field(
        default=7 * 86_400.0, ge=0,
        description="A subject first seen less than this long ago (event time) is scored and learned but raises "
        "no alert; 0 = alert as soon as min_profile_windows are learned",
    )
    device_memory_s: float = Field(
        default=86_400.0, gt=0,
        description="Forget a session's (or token's) last device context after this long unused (event time)",
    )
    max_device_contexts: int = Field(
        default=200_000, ge=100,
        description="Sessions/tokens whose last device context is kept; the least recently used go first",
    )
    alerts_per_10k_tokens_per_day: float = Field(
        default=20.0, gt=0, description="Alert budget the threshold is calibrated to: alerts per 10k active tokens per day"
    )
    retrain_every_s: float = Field(
        default=86_400.0, ge=0, description="Wall-clock interval of retraining inside `tokenwatch run`; 0 = never"
    )
    baseline_window_s: float = Field(
        default=7 * 86_400.0, gt=0, description="Rolling baseline retraining uses (event time before the latest window)"
    )
    max_baseline_windows: int = Field(default=200_000, ge=100, description="Windows kept for retraining (a ring)")
    min_training_windows: int = Field(default=1_000, ge=10, description="Fewer baseline windows than this: no retraining")
    profile_ttl_s: float = Field(default=30 * 86_400.0, gt=0, description="Forget a subject/client profile idle this long")
    max_profile_items: int = Field(
        default=256, ge=8, description="Networks, agents, countries, resources, scopes remembered per profile"
    )
    profile_decay: float = Field(
        default=0.99, gt=0, lt=1, description="Per-window decay of a profile's usual rate and hours (adapts to drift)"
    )
    explain_top: int = Field(default=3, ge=1, description="Reasons named in an alert's summary")
    model_kind: Literal["tail", "isolation_forest"] = Field(
        default="tail", description="Model retraining fits: per-feature tail rarity, or scikit-learn's IsolationForest"
    )
    n_estimators: int = Field(default=200, ge=10, description="Trees of the IsolationForest when retraining")
    max_samples: int = Field(default=512, ge=16, description="Samples per tree when retraining")
    seed: int = Field(default=0, description="Random seed of retraining (same baseline + seed = same model)")


class AnomalyDetector(Detector):
    name = "anomaly"
    rules = (BEHAVIOUR,)
    Config = AnomalyConfig

    def __init__(self, config: DetectorConfig | None = None, *, collect: bool = False) -> None:
        """``collect``: keep windows and the baseline even without a model (training)."""
        super().__init__(config)
        self.config: AnomalyConfig
        self.active = collect or self.config.model_path is not None
        self.model: AnomalyModel | None = None
        self.model_error: str | None = None
        self.counters: Counter[str] = Counter()
        # (token id, window start, window end, score) of every scored window, when a list.
        self.recorder: list[tuple[str, float, float, float]] | None = None
        self._lock = threading.Lock()
        size = self.config.max_baseline_windows if self.active else 0
        self._rows = np.zeros((size, len(FEATURES)), dtype=np.float32)
        self._times = np.full(size, -np.inf)
        self._filled = 0
        self._next = 0
        self._day_tokens: dict[int, set[int] | int] = {}
        if self.config.model_path is not None:
            self.reload()

    # -- model ---------------------------------------------------------------------
    def reload(self) -> bool:
        """(Re)read ``model_path``; on failure keep the current model, log and count it."""
        try:
            model = load(self.config.model_path) if self.config.model_path else None
        except ModelError as exc:
            self.model_error = str(exc)
            self.counters["model_errors"] += 1
            log.error("%s; anomaly scoring is off until a valid model is installed", exc)
            return False
        self.swap(model)
        return True

    def swap(self, model: AnomalyModel | None) -> None:
        """Install a model: one reference assignment, so a batch being judged keeps the
        model it started with and the next batch uses the new one."""
        self.model = model
        self.model_error = None
        if model is not None:
            self.counters["model_swaps"] += 1
            log.info("anomaly %s", model.describe())

    # -- stream --------------------------------------------------------------------
    def process(self, event: CanonicalEvent, state: StateStore) -> list[Finding]:
        if not self.active or event.kind is not EventKind.USED or event.token is None:
            return []
        token_id = event.token.id
        known = state.tokens.get(token_id)
        subject = event.subject.id if event.subject else (known.subject_id if known else None)
        if subject is None:
            return []
        client = event.client_id or (known.client_id if known else None)
        ns = state.namespace(self.name)
        if not ns:
            ns.update({"w": {}, "closed": [], "u": {}, "c": {}, "pruned": 0.0})
        windows: dict[str, Window] = ns["w"]
        devices: dict[str, list[Any]] = ns.setdefault("dev", {})
        when = event.epoch
        win = windows.get(token_id)
        if win is not None and when >= win["s"] + self.config.window_s:
            del windows[token_id]
            ns["closed"].append([token_id, win])
            win = None
        if win is None:
            win = windows[token_id] = new_window(when, subject, client)
        session = event.session_id or (known.session_id if known else None)
        chain = f"s:{session}" if session else f"t:{token_id}"
        last = devices.pop(chain, None)  # re-inserted last: the dict is in least-recently-used order
        previous = last[:3] if last is not None and when - last[3] <= self.config.device_memory_s else None
        context = update_window(win, event, ns["u"].get(subject), ns["c"].get(client) if client else None, previous)
        devices[chain] = [*context, max(when, last[3]) if last is not None else when]
        if len(devices) > self.config.max_device_contexts:
            del devices[next(iter(devices))]
            self.counters["device_contexts_evicted"] += 1
        return []

    def expire(self, watermark: float, state: StateStore) -> list[Finding] | None:
        if not self.active or self.name not in state.detector_state:
            return None
        ns = state.namespace(self.name)
        closing: list[list[Any]] = ns["closed"]
        ns["closed"] = []
        windows: dict[str, Window] = ns["w"]
        horizon = watermark - self.config.window_s
        while windows:  # opened in event-time order (bar stragglers): the oldest close first
            token_id = next(iter(windows))
            if windows[token_id]["s"] > horizon:
                break
            closing.append([token_id, windows.pop(token_id)])
        findings = self._judge(closing, ns)
        if watermark - ns["pruned"] >= 3_600.0:
            ns["pruned"] = watermark
            self._prune_profiles(ns, watermark - self.config.profile_ttl_s)
            self._prune_devices(ns, watermark - self.config.device_memory_s)
        return findings

    def finish(self, state: StateStore) -> list[Finding]:
        if not self.active or self.name not in state.detector_state:
            return []
        ns = state.namespace(self.name)
        closing = ns["closed"] + [[tid, win] for tid, win in ns["w"].items()]
        ns["closed"], ns["w"] = [], {}
        return self._judge(closing, ns)

    # -- judging -------------------------------------------------------------------
    def _judge(self, closing: list[list[Any]], ns: dict[str, Any]) -> list[Finding]:
        """Score every closed window of a mature subject in one call; learn from the rest."""
        if not closing:
            return []
        model = self.model  # read once: a swap during this batch applies to the next
        cfg = self.config
        subjects: dict[str, Profile] = ns["u"]
        clients: dict[str, Profile] = ns["c"]
        scored: list[tuple[str, Window, Profile, Profile | None]] = []
        rows: list[list[float]] = []
        for token_id, win in closing:
            self._count_token_day(token_id, win["s"])
            subj = subjects.get(win["sub"])
            client = clients.get(win["cli"]) if win["cli"] else None
            if subj is None or subj["w"] < cfg.min_profile_windows:
                self.counters["windows_learning"] += 1
                self._learn(win, subjects, clients)
                continue
            scored.append((token_id, win, subj, client))
            rows.append(vector(win, subj, client))
        if not rows:
            return []
        matrix = np.asarray(rows, dtype=np.float32)
        scores = model.score(matrix) if model is not None else None
        flagged = [i for i, score in enumerate(scores) if score > model.threshold] if model is not None and scores is not None else []
        drops = explain.contributions(model, matrix[flagged]) if flagged and model is not None else []
        findings: list[Finding] = []
        learnable: list[int] = []
        for i, (token_id, win, subj, client) in enumerate(scored):
            if scores is not None:
                self.counters["windows_scored"] += 1
                if self.recorder is not None:
                    self.recorder.append((token_id, win["s"], win["e"], float(scores[i])))
            if i in flagged and self._learning(win, subj):
                self.counters["windows_in_learning_period"] += 1  # neither alerted nor in the ring
            elif i in flagged:
                assert model is not None and scores is not None
                why = explain.reasons(drops[flagged.index(i)], win, subj, client, cfg.window_s, cfg.explain_top)
                findings.append(self._finding(token_id, win, float(scores[i]), model, why, drops[flagged.index(i)]))
                self.counters["windows_flagged"] += 1
            else:
                learnable.append(i)
        with self._lock:  # the retraining thread reads the ring
            for i in learnable:
                slot = self._next
                self._rows[slot] = matrix[i]
                self._times[slot] = scored[i][1]["e"]
                self._next = (slot + 1) % len(self._rows)
                self._filled = min(self._filled + 1, len(self._rows))
        for i in learnable:  # flagged windows never teach the baseline what an attack looks like
            self._learn(scored[i][1], subjects, clients)
        for i in flagged:  # ... unless the subject is new: then it is how it behaves
            if self._learning(scored[i][1], scored[i][2]):
                self._learn(scored[i][1], subjects, clients)
        return findings

    def _learning(self, win: Window, subj: Profile) -> bool:
        """Whether the window's subject is inside its learning period. A young client is
        not: a token of an app the subject never used (consent phishing) must stay judged."""
        age = history_s(subj, win["s"])
        return age is not None and age < self.config.learning_period_s

    def _learn(self, win: Window, subjects: dict[str, Profile], clients: dict[str, Profile]) -> None:
        cfg = self.config
        subj = subjects.get(win["sub"])
        if subj is None:
            subj = subjects[win["sub"]] = new_profile(win["s"])
        learn(subj, win, SUBJECT_KEYS, cfg.max_profile_items, cfg.profile_decay)
        if win["cli"]:
            client = clients.get(win["cli"])
            if client is None:
                client = clients[win["cli"]] = new_profile(win["s"])
            learn(client, win, CLIENT_KEYS, cfg.max_profile_items * 4, cfg.profile_decay)

    def _count_token_day(self, token_id: str, start: float) -> None:
        """Distinct active tokens per UTC day (the budget's denominator); days older than
        yesterday keep only their count."""
        day = int(start // 86_400)
        seen = self._day_tokens.get(day)
        if seen is None:
            with self._lock:
                for old, tokens in [(d, v) for d, v in self._day_tokens.items() if d < day - 1 and isinstance(v, set)]:
                    self._day_tokens[old] = len(tokens)
                horizon = day - int(self.config.baseline_window_s // 86_400) - 2
                for old in [d for d in self._day_tokens if d < horizon]:
                    del self._day_tokens[old]
                seen = self._day_tokens[day] = set()
        if isinstance(seen, set):
            seen.add(stable_hash(token_id))

    def _prune_profiles(self, ns: dict[str, Any], horizon: float) -> None:
        for table in (ns["u"], ns["c"]):
            for key in [k for k, p in table.items() if p["t"] < horizon]:
                del table[key]

    def _prune_devices(self, ns: dict[str, Any], horizon: float) -> None:
        devices: dict[str, list[Any]] = ns.get("dev", {})
        while devices:  # least recently used first: stop at the first one still fresh
            chain = next(iter(devices))
            if devices[chain][3] >= horizon:
                break
            del devices[chain]

    # -- baseline for retraining ---------------------------------------------------
    def baseline(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(rows, window end times, active token-days) of the rolling baseline window."""
        with self._lock:
            times = self._times[: self._filled].copy()
            rows = self._rows[: self._filled].copy()
            days = dict(self._day_tokens)
        if not len(times):
            return rows, times, 0
        keep = times >= times.max() - self.config.baseline_window_s
        token_days = self.token_days(int(times[keep].min() // 86_400), int(times.max() // 86_400), days)
        order = np.argsort(times[keep], kind="stable")
        return rows[keep][order], times[keep][order], token_days

    def token_days(self, first: int, last: int, days: dict[int, set[int] | int] | None = None) -> int:
        """Distinct active tokens summed over UTC days ``first``..``last`` (day numbers)."""
        if days is None:
            with self._lock:
                days = dict(self._day_tokens)
        return sum(v if isinstance(v, int) else len(v) for d, v in days.items() if first <= d <= last)

    # -- findings ------------------------------------------------------------------
    def _finding(
        self, token_id: str, win: Window, score: float, model: AnomalyModel, why: list[str],
        drops: list[tuple[str, float]],
    ) -> Finding:
        last: Record = win["ev"][-1]  # the latest novelty (or the first event) stands for the window
        event = _event_of(last)
        who = f"{win['sub']}" + (f" (client {win['cli']})" if win["cli"] else "")
        summary = (f"Token {token_id} of {who} behaved unlike its baseline "
                   f"(anomaly score {score:.2f}, threshold {model.threshold:.2f}): {'; '.join(why)}.")
        records = list(win["ev"])
        details: dict[str, str | int | float | bool | None] = {
            "score": round(score, 4), "threshold": round(model.threshold, 4), "model_version": model.version,
            "requests": win["n"], "window_start": _iso(win["s"]), "window_end": _iso(win["e"]),
        }
        for group, drop in drops[:4]:
            details[f"contribution.{group}"] = round(drop, 4)
        for name, counter in (("agent_changes", "dua"), ("device_changes", "ddev"), ("key_changes", "dkey"),
                              ("network_switches", "nsw"), ("network_returns", "nret")):
            if win.get(counter):
                details[name] = win[counter]
        high = score >= model.threshold + 0.1
        return Finding(
            rule=BEHAVIOUR, event=event, key=token_id, summary=summary,
            evidence=tuple(_evidence(r) for r in records), family_id=last[4], token_id=token_id,
            severity="high" if high else None, risk_score=70 if high else None, details=details,
        )


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat()


def _event_of(r: Record) -> CanonicalEvent:
    """The window's last event, rebuilt from its record (the alert's trigger)."""
    geo = Geo(country=r[12], city=r[13]) if (r[12] or r[13]) else None
    return CanonicalEvent(
        event_id=r[0], kind=EventKind.USED, time=datetime.fromtimestamp(r[1], tz=timezone.utc), source=r[2],
        token=TokenRef(id=r[3], type=TokenType(r[5] or "unknown"), family_id=r[4]),
        subject=Subject(id=r[6]) if r[6] else None, client_id=r[7], session_id=r[8], scopes=tuple(r[18]),
        network=Network(ip=r[9], asn=r[10], as_org=r[11], geo=geo, hosting=r[14], user_agent=r[15]),
        request=Request(id=r[17], method=r[19], resource=r[20]),
        outcome=Outcome(result="success" if r[16] else "failure"),
    )


def _evidence(r: Record) -> EvidenceItem:
    return EvidenceItem(
        event_id=r[0], kind="used", time=datetime.fromtimestamp(r[1], tz=timezone.utc), source=r[2],
        token_id=r[3], ip=r[9], country=r[12], city=r[13], asn=r[10], as_org=r[11], scopes=list(r[18]),
        client_id=r[7], outcome="success" if r[16] else "failure", request_id=r[17],
        resource=f"{r[19] or 'GET'} {r[20]}" if r[20] else None,
    )
