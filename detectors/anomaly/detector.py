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

Decide, then describe: ``_judge`` decides which closed windows alert and keeps each one's
facts in a frozen ``Anomalous``; ``behaviour_finding`` words them as the alert.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from detectors.anomaly.features import CLIENT_USED, FEATURES, SUBJECT_USED, learn, update_window, vector
from detectors.anomaly.last_device import LAST_DEVICE, LastDevice
from detectors.anomaly.profile import PROFILE, BehaviourProfile
from detectors.anomaly.window import WINDOW, BehaviourWindow, EvidenceRecord
from detectors.base import Detector, DetectorConfig, Finding, RuleMeta
from detectors.state import StateStore, stable_hash
from detectors.tables import PLAIN, Table

if TYPE_CHECKING:
    import numpy as np

    from detectors.anomaly.model import AnomalyModel

# numpy, the model and the explainer load with the first model or the first window to judge:
# importing the detectors (every `tokenwatch` command does) must not pull numpy in.
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

# The detector's tables (``StateStore.table("anomaly", ...)``).
OPEN_WINDOWS = "open_windows"  # token id -> its open BehaviourWindow, oldest first
CLOSED_WINDOWS = "closed_windows"  # windows a later use closed, judged at the next expire
SUBJECT_PROFILES = "subject_profiles"  # subject id -> BehaviourProfile
CLIENT_PROFILES = "client_profiles"  # client id -> BehaviourProfile
DEVICE_CONTEXTS = "device_contexts"  # "s:<session>" / "t:<token>" -> LastDevice, least recently used first
HOUSEKEEPING = "housekeeping"  # LAST_PRUNE -> event time profiles and devices were last pruned
LAST_PRUNE = "last_prune"
_PRUNE_EVERY_S = 3_600.0

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


@dataclass(frozen=True, slots=True)
class Anomalous:
    """A closed window scored above the model's threshold, its subject past the learning
    period: everything the ``anomaly.behaviour`` alert says."""

    window: BehaviourWindow
    score: float
    threshold: float  # the model's, when it scored the window
    model_version: str
    # ``explain``'s words for the largest contributions: read against the profiles as they
    # stood when the window was scored (the batch learns right after), so kept as facts.
    reasons: tuple[str, ...]
    contributions: tuple[tuple[str, float], ...]  # (feature group, score drop), largest first


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


class AnomalyDetector(Detector[AnomalyConfig]):
    name: ClassVar[str] = "anomaly"
    rules: ClassVar[tuple[RuleMeta, ...]] = (BEHAVIOUR,)

    def __init__(self, config: AnomalyConfig | None = None, *, collect: bool = False) -> None:
        """``collect``: keep windows and the baseline even without a model (training)."""
        super().__init__(config)
        self.active = collect or self.config.model_path is not None
        self.model: AnomalyModel | None = None
        self.model_error: str | None = None
        self.counters: Counter[str] = Counter()
        # (token id, window start, window end, score) of every scored window, when a list.
        self.recorder: list[tuple[str, float, float, float]] | None = None
        self._lock = threading.Lock()
        self._rows: Any = None  # numpy arrays of max_baseline_windows rows, made when active
        self._times: Any = None
        if self.active:
            import numpy as np

            size = self.config.max_baseline_windows
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
        from detectors.anomaly.model import ModelError, load

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
        token_state = state.tokens.get(token_id)
        subject = event.subject.id if event.subject else (token_state.subject_id if token_state else None)
        if subject is None:
            return []
        client = event.client_id or (token_state.client_id if token_state else None)
        housekeeping = state.table(self.name, HOUSEKEEPING, PLAIN)
        if LAST_PRUNE not in housekeeping:  # the first use: from now on, expire prunes hourly
            housekeeping.put(LAST_PRUNE, 0.0)
        windows: Table[str, BehaviourWindow] = state.table(self.name, OPEN_WINDOWS, WINDOW)
        when = event.epoch
        win = windows.get(token_id)
        if win is not None and when >= win.start + self.config.window_s:
            windows.pop(token_id)
            state.table(self.name, CLOSED_WINDOWS, WINDOW).put(_closed_key(win), win)
            win = None
        if win is None:
            win = BehaviourWindow.opened(token_id, when, subject, client)
            windows.put(token_id, win)
        session = event.session_id or (token_state.session_id if token_state else None)
        chain = f"s:{session}" if session else f"t:{token_id}"
        devices: Table[str, LastDevice] = state.table(self.name, DEVICE_CONTEXTS, LAST_DEVICE)
        last = devices.get(chain)
        previous = last.context if last is not None and when - last.used <= self.config.device_memory_s else None
        subjects, clients = self._profiles(state)
        context = update_window(win, event, subjects.get(subject), clients.get(client) if client else None, previous)
        windows.touch(token_id)
        devices.put_last(chain, LastDevice(context, max(when, last.used) if last is not None else when))
        evicted = devices.evict_oldest(self.config.max_device_contexts)
        if evicted:
            self.counters["device_contexts_evicted"] += evicted
        return []

    def expire(self, watermark: float, state: StateStore) -> list[Finding] | None:
        if not self.active:
            return None
        housekeeping = state.table(self.name, HOUSEKEEPING, PLAIN)
        last_prune = housekeeping.get(LAST_PRUNE)
        if last_prune is None:  # no use seen yet
            return None
        closing = _take_all(state.table(self.name, CLOSED_WINDOWS, WINDOW))
        windows: Table[str, BehaviourWindow] = state.table(self.name, OPEN_WINDOWS, WINDOW)
        horizon = watermark - self.config.window_s
        due = []
        for token_id, win in windows.items():  # opened in event-time order (bar stragglers)
            if win.start > horizon:
                break
            due.append(token_id)
        for token_id in due:
            closed = windows.pop(token_id)
            if closed is not None:
                closing.append(closed)
        findings = self._judge(closing, state)
        if watermark - last_prune >= _PRUNE_EVERY_S:
            housekeeping.put(LAST_PRUNE, watermark)
            self._prune_profiles(state, watermark - self.config.profile_ttl_s)
            devices: Table[str, LastDevice] = state.table(self.name, DEVICE_CONTEXTS, LAST_DEVICE)
            horizon = watermark - self.config.device_memory_s
            devices.forget_before(horizon, _last_used)
        return findings

    def finish(self, state: StateStore) -> list[Finding]:
        if not self.active or LAST_PRUNE not in state.table(self.name, HOUSEKEEPING, PLAIN):
            return []
        closing = _take_all(state.table(self.name, CLOSED_WINDOWS, WINDOW))
        closing += _take_all(state.table(self.name, OPEN_WINDOWS, WINDOW))
        return self._judge(closing, state)

    def _profiles(self, state: StateStore) -> tuple[Table[str, BehaviourProfile], Table[str, BehaviourProfile]]:
        return (state.table(self.name, SUBJECT_PROFILES, PROFILE), state.table(self.name, CLIENT_PROFILES, PROFILE))

    # -- judging -------------------------------------------------------------------
    def _judge(self, closing: list[BehaviourWindow], state: StateStore) -> list[Finding]:
        """Score every closed window of a mature subject in one call; learn from the rest."""
        if not closing:
            return []
        model = self.model  # read once: a swap during this batch applies to the next
        cfg = self.config
        subjects, clients = self._profiles(state)
        scored: list[tuple[BehaviourWindow, BehaviourProfile, BehaviourProfile | None]] = []
        rows: list[list[float]] = []
        for win in closing:
            self._count_token_day(win.token, win.start)
            subj = subjects.get(win.subject)
            client = clients.get(win.client) if win.client else None
            if subj is None or subj.windows < cfg.min_profile_windows:
                self.counters["windows_learning"] += 1
                self._learn(win, subjects, clients)
                continue
            scored.append((win, subj, client))
            rows.append(vector(win, subj, client))
        if not rows:
            return []
        import numpy as np

        from detectors.anomaly import explain

        matrix = np.asarray(rows, dtype=np.float32)
        scores = model.score(matrix) if model is not None else None
        flagged = [i for i, score in enumerate(scores) if score > model.threshold] if model is not None and scores is not None else []
        drops = explain.contributions(model, matrix[flagged]) if flagged and model is not None else []
        findings: list[Finding] = []
        learnable: list[int] = []
        for i, (win, subj, client) in enumerate(scored):
            if scores is not None:
                self.counters["windows_scored"] += 1
                if self.recorder is not None:
                    self.recorder.append((win.token, win.start, win.end, float(scores[i])))
            if i in flagged and self._learning(win, subj):
                self.counters["windows_in_learning_period"] += 1  # neither alerted nor in the ring
            elif i in flagged:
                assert model is not None and scores is not None
                drop = drops[flagged.index(i)]
                why = explain.reasons(drop, win, subj, client, cfg.window_s, cfg.explain_top)
                found = Anomalous(win, float(scores[i]), model.threshold, model.version, tuple(why), tuple(drop))
                findings.append(behaviour_finding(found))
                self.counters["windows_flagged"] += 1
            else:
                learnable.append(i)
        with self._lock:  # the retraining thread reads the ring
            for i in learnable:
                slot = self._next
                self._rows[slot] = matrix[i]
                self._times[slot] = scored[i][0].end
                self._next = (slot + 1) % len(self._rows)
                self._filled = min(self._filled + 1, len(self._rows))
        for i in learnable:  # flagged windows never teach the baseline what an attack looks like
            self._learn(scored[i][0], subjects, clients)
        for i in flagged:  # ... unless the subject is new: then it is how it behaves
            if self._learning(scored[i][0], scored[i][1]):
                self._learn(scored[i][0], subjects, clients)
        return findings

    def _learning(self, win: BehaviourWindow, subj: BehaviourProfile) -> bool:
        """Whether the window's subject is inside its learning period. A young client is
        not: a token of an app the subject never used (consent phishing) must stay judged."""
        age = subj.history_s(win.start)
        return age is not None and age < self.config.learning_period_s

    def _learn(
        self, win: BehaviourWindow, subjects: Table[str, BehaviourProfile], clients: Table[str, BehaviourProfile]
    ) -> None:
        cfg = self.config
        _learn_into(subjects, win.subject, win, SUBJECT_USED, cfg.max_profile_items, cfg.profile_decay)
        if win.client:
            _learn_into(clients, win.client, win, CLIENT_USED, cfg.max_profile_items * 4, cfg.profile_decay)

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

    def _prune_profiles(self, state: StateStore, horizon: float) -> None:
        """Forget profiles whose last window ended before ``horizon``: rows are in last-learnt
        order (``_learn_into``), so this stops at the first fresh one and costs what it forgets."""
        for table in self._profiles(state):
            table.forget_before(horizon, _last_window_end)

    # -- baseline for retraining ---------------------------------------------------
    def baseline(self) -> tuple[np.ndarray, np.ndarray, int]:
        """(rows, window end times, active token-days) of the rolling baseline window."""
        import numpy as np

        if self._rows is None:
            return np.zeros((0, len(FEATURES)), dtype=np.float32), np.zeros(0), 0
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


def behaviour_finding(found: Anomalous) -> Finding:
    """``found`` as an ``anomaly.behaviour`` alert: the window's last event as its trigger,
    the window's evidence records as evidence; 0.1 over the threshold is high severity."""
    win, score, threshold = found.window, found.score, found.threshold
    last = win.evidence[-1]  # the latest novelty (or the first event) stands for the window
    event = _event_of(last, win.token)
    client = f", client {win.client}" if win.client else ""
    summary = (f"Token behaved unlike its owner's baseline: {'; '.join(found.reasons)} (anomaly score {score:.2f}, "
               f"threshold {threshold:.2f}; token {win.token}, subject {win.subject}{client}).")
    details: dict[str, str | int | float | bool | None] = {
        "score": round(score, 4), "threshold": round(threshold, 4), "model_version": found.model_version,
        "requests": win.requests, "window_start": _iso(win.start), "window_end": _iso(win.end),
    }
    for group, drop in found.contributions[:4]:
        details[f"contribution.{group}"] = round(drop, 4)
    for name, count in (("agent_changes", win.agent_changes), ("device_changes", win.device_changes),
                        ("key_changes", win.key_changes), ("network_switches", win.network_switches),
                        ("network_returns", win.network_returns)):
        if count:
            details[name] = count
    high = score >= threshold + 0.1
    return Finding(
        rule=BEHAVIOUR, event=event, key=win.token, summary=summary,
        evidence=tuple(_evidence(r) for r in win.evidence), family_id=last.family_id, token_id=win.token,
        severity="high" if high else None, risk_score=70 if high else None, details=details,
    )


def _closed_key(win: BehaviourWindow) -> str:
    """A closed window's row key: a token's windows start at distinct times."""
    return f"{win.token}@{win.start!r}"


def _take_all(table: Table[str, BehaviourWindow]) -> list[BehaviourWindow]:
    """Every window of ``table``, oldest first, removing them."""
    return [win for key in list(table) if (win := table.pop(key)) is not None]


def _last_used(last: LastDevice) -> float:
    return last.used


def _last_window_end(profile: BehaviourProfile) -> float:
    return profile.last_window_end


def _learn_into(
    profiles: Table[str, BehaviourProfile], key: str, win: BehaviourWindow, used: tuple[str, ...], max_items: int,
    decay: float,
) -> None:
    """Teach ``key``'s profile the window (a new profile starts at the window's start). A
    window that moves the profile's last end on moves its row last: profiles stay in the
    order last learnt, which the idle pruning stops on."""
    profile = profiles.get(key)
    if profile is None:
        profile = BehaviourProfile(win.start)
        profiles.put(key, profile)
    ended = profile.last_window_end
    learn(profile, win, used, max_items, decay)
    if profile.last_window_end > ended:
        profiles.put_last(key, profile)
    else:
        profiles.touch(key)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).isoformat()


def _event_of(r: EvidenceRecord, token_id: str) -> CanonicalEvent:
    """The window's last event, rebuilt from its record (the alert's trigger); the window's
    token is the record's."""
    geo = Geo(country=r.country, city=r.city) if (r.country or r.city) else None
    return CanonicalEvent(
        event_id=r.event_id, kind=EventKind.USED, time=datetime.fromtimestamp(r.time, tz=timezone.utc),
        source=r.source, token=TokenRef(id=token_id, type=TokenType(r.token_type or "unknown"), family_id=r.family_id),
        subject=Subject(id=r.subject) if r.subject else None, client_id=r.client_id, session_id=r.session_id,
        scopes=r.scopes,
        network=Network(ip=r.ip, asn=r.asn, as_org=r.as_org, geo=geo, hosting=r.hosting, user_agent=r.user_agent),
        request=Request(id=r.request_id, method=r.method, resource=r.resource),
        outcome=Outcome(result="success" if r.succeeded else "failure"),
    )


def _evidence(r: EvidenceRecord) -> EvidenceItem:
    return EvidenceItem(
        event_id=r.event_id, kind="used", time=datetime.fromtimestamp(r.time, tz=timezone.utc), source=r.source,
        token_id=r.token_id, ip=r.ip, country=r.country, city=r.city, asn=r.asn, as_org=r.as_org,
        scopes=list(r.scopes), client_id=r.client_id, outcome="success" if r.succeeded else "failure",
        request_id=r.request_id, resource=f"{r.method or 'GET'} {r.resource}" if r.resource else None,
    )
