"""Post-revocation use: a resource server accepted a token it should have refused.

Revocation, logout and disabling only protect anything if resource servers
stop accepting the affected tokens, and ``exp`` only if they check it. Each
rule fires on a *successful* use (a refused one is the system working):

- ``after_revocation`` — after the token, its family, its session or its
  subject was revoked, or its session ended (logout), when that revocation
  kills this kind of token at the source that logged it (``REVOCATION_POLICY``:
  an Okta sign-out kills no OAuth token, an Entra ``revokeSignInSessions``
  leaves access tokens valid until ``exp``, …);
- ``after_disable`` — after its subject was disabled (takes precedence: one
  use raises one alert);
- ``after_expiry`` — after ``exp`` plus clock skew (only when neither of the
  above fired).

A use within ``propagation_lag_s`` of a revocation is how long revocation
takes to reach the resource server: it is recorded as the metric
``revocation_propagation_lag_s``, not alerted. Subject-wide revocation and
disabling cover only tokens issued before them, so a fresh login after a
password reset stays quiet.

The engine orders events within its allowed lateness; a revocation later
than that reaches ``process`` after the uses it should have caught, so a
``revoked``/``session_ended``/``principal_disabled`` event also checks the
recorded uses of the tokens it covers (retroactive findings, each cited with
a ``used`` event rebuilt from the recorded observation so that the alert id
is the one in-order processing would have produced).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from pydantic import Field

from detectors import describe
from detectors.base import Detector, DetectorConfig, Finding, RuleMeta
from detectors.recorded import use_event
from detectors.state import Observation, ScopeState, StateStore, TokenState
from schemas.alerts import EvidenceItem
from schemas.events import (
    CanonicalEvent,
    EventKind,
    TokenType,
)

LAG_METRIC = "revocation_propagation_lag_s"
_ATT_TOKEN = (("T1550.001", "Use Alternate Authentication Material: Application Access Token"),)
_MAX_LINEAGE_HOPS = 32

AFTER_REVOCATION = RuleMeta(
    id="post_revocation_use.after_revocation",
    name="Token used after revocation or logout",
    category="post_revocation_use",
    severity="critical",
    risk_score=90,
    techniques=_ATT_TOKEN,
    response="revoke_session",
    description="A resource server accepted a token after it, its family, its session or its subject "
    "was revoked or the session ended, beyond the revocation propagation lag, where that revocation kills "
    "this kind of token at the IdP that logged it (an Okta sign-out kills no OAuth token; Entra "
    "revokeSignInSessions leaves access tokens valid for their 60-90 min lifetime; a Keycloak logout spares offline tokens; a token "
    "minted later from a killed refresh token is killed too).",
)
AFTER_DISABLE = RuleMeta(
    id="post_revocation_use.after_disable",
    name="Token used after its principal was disabled",
    category="post_revocation_use",
    severity="critical",
    risk_score=95,
    techniques=_ATT_TOKEN,
    response="revoke_subject",
    description="A resource server accepted a token issued before its user or service account was "
    "disabled, deleted, suspended or had its password reset.",
)
AFTER_EXPIRY = RuleMeta(
    id="post_revocation_use.after_expiry",
    name="Token used after expiry",
    category="post_revocation_use",
    severity="high",
    risk_score=70,
    techniques=_ATT_TOKEN,
    response="none",
    description="A resource server accepted a token after its exp plus clock skew: it does not validate expiry.",
)

# (label, id of what was revoked, the revocation observation)
Fact = tuple[str, str | None, Observation]


@dataclass(frozen=True)
class Kills:
    """Which tokens one kind of revocation, as one IdP logs it, makes that IdP refuse.

    ``refresh``: the refresh tokens it covers, and every token later minted from one
    of them (a refresh the IdP should have refused); ``issued``: tokens already issued
    for resource servers (access, ID, cloud and service-account credentials), False
    when they stay valid until ``exp``; ``spared_scope``: tokens granted this scope
    live elsewhere and survive it; ``lifetime_s``: issued tokens that survive it are
    refused anyway once this old (the IdP does not log ``exp``, and a longer-lived token
    is one a resource enforcing continuous access evaluation must refuse at once)."""

    refresh: bool
    issued: bool
    spared_scope: str | None = None
    lifetime_s: float | None = None


EVERYTHING = Kills(refresh=True, issued=True)
NOTHING = Kills(refresh=False, issued=False)

# (event source, what ended: a ``_what`` label) -> what it kills. Not listed: everything,
# the strict reading for sources whose semantics nobody wrote down (canonical input).
# Subject-disabling is ``after_disable`` and always kills what was issued before it.
REVOCATION_POLICY: dict[tuple[str, str], Kills] = {
    # Okta sign-out or session expiry (user.session.end) ends the Okta sign-on session
    # only: OAuth tokens are not bound to it (Okta's sign-out guides revoke them apart).
    ("okta", "logout"): NOTHING,
    # "Clear user sessions" with oauthTokens: "also revokes OpenID Connect and OAuth
    # refresh and access tokens issued to the user" (the adapter maps only that to subject).
    ("okta", "subject"): EVERYTHING,
    # Keycloak LOGOUT removes the user session: its refresh tokens die and introspection
    # reports its access tokens inactive; offline tokens belong to the offline session.
    ("keycloak", "logout"): Kills(refresh=True, issued=True, spared_scope="offline_access"),
    # Entra revokeSignInSessions: refresh tokens and session cookies are invalidated;
    # access tokens stay valid until exp, which Entra sets 60-90 minutes after issue
    # ("Access tokens in the Microsoft identity platform": token lifetime). A token used
    # later than that is a CAE token (up to 28 h), which CAE resources such as Graph must
    # refuse after this critical event, or one that outlived its lifetime.
    ("entra", "subject"): Kills(refresh=True, issued=False, lifetime_s=5400.0),
    # Kubernetes: deleting the pod a token is bound to (session "pod:<uid>") invalidates it.
    ("k8s", "session"): EVERYTHING,
    ("k8s", "logout"): EVERYTHING,
}


class PostRevocationConfig(DetectorConfig):
    propagation_lag_s: float = Field(
        default=60.0, ge=0, description="Uses this soon after a revocation are propagation lag (a metric), not alerts"
    )
    clock_skew_s: float = Field(
        default=30.0, ge=0, description="Tolerance between issuer and resource-server clocks for exp"
    )


class PostRevocationDetector(Detector):
    name: ClassVar[str] = "post_revocation"
    rules: ClassVar[tuple[RuleMeta, ...]] = (AFTER_REVOCATION, AFTER_DISABLE, AFTER_EXPIRY)
    Config: ClassVar[type[DetectorConfig]] = PostRevocationConfig
    config: PostRevocationConfig

    def process(self, event: CanonicalEvent, state: StateStore) -> list[Finding]:
        kind = event.kind
        if kind is EventKind.USED:
            if event.token is None or event.outcome.result != "success":
                return []
            return self._check_use(event, state)
        if kind is EventKind.REVOKED or kind is EventKind.SESSION_ENDED or kind is EventKind.PRINCIPAL_DISABLED:
            if event.outcome.result == "failure":
                return []  # a revocation that failed revoked nothing
            return self._retro(event, state)
        return []

    # -- in-order: the revocation is already in state ------------------------
    def _check_use(self, event: CanonicalEvent, state: StateStore) -> list[Finding]:
        ref = event.token
        assert ref is not None
        ts = state.tokens.get(ref.id)
        t = event.epoch
        lag = self.config.propagation_lag_s
        # The use may name the subject differently from the IdP (a JWT `sub` that is the
        # login, where IdP events carry the user id): prefer the one the state knows.
        candidates = [s for s in (event.subject.id if event.subject else None, ts.subject_id if ts else None) if s]
        subject = next((s for s in candidates if s in state.subjects), candidates[0] if candidates else None)
        sub = state.subjects.get(subject) if subject else None
        issued = ref.issued_at.timestamp() if ref.issued_at else _issued_at(ts)
        within: float | None = None

        if sub is not None and sub.disabled is not None and _before(issued, sub.disabled.time):
            delta = t - sub.disabled.time
            if delta > lag:
                return [self._finding(AFTER_DISABLE, event, ("disabled", subject, sub.disabled), delta, ts, False)]
            if delta >= 0:
                within = delta

        held = Held(
            ts,
            ref.type.value if ref.type is not TokenType.UNKNOWN or ts is None else ts.type,
            ts.scopes if ts is not None and ts.scopes is not None else frozenset(event.scopes),
            issued,
            t,
        )
        facts = _facts(
            state,
            held,
            ref.family_id or (ts.family_id if ts else None),
            event.session_id or (ts.session_id if ts else None),
            subject,
            sub,
        )
        earliest: Fact | None = None
        for fact in facts:
            if fact[2].time <= t and (earliest is None or fact[2].time < earliest[2].time):
                earliest = fact
        if earliest is not None:
            delta = t - earliest[2].time
            if delta > lag:
                return [self._finding(AFTER_REVOCATION, event, earliest, delta, ts, False)]
            within = delta if within is None else min(within, delta)
        if within is not None:
            state.observe(LAG_METRIC, within)

        expires = ref.expires_at.timestamp() if ref.expires_at else (ts.expires_at if ts else None)
        if expires is not None and t > expires + self.config.clock_skew_s:
            return [self._expiry_finding(event, expires, t, ts)]
        return []

    # -- late revocation: look back at the uses already processed ------------
    def _retro(self, event: CanonicalEvent, state: StateStore) -> list[Finding]:
        rule, label, scope_id, tokens = _targets(event, state)
        if not tokens:
            return []
        when = event.epoch
        lag = self.config.propagation_lag_s
        rev = Observation(event) if any(ts.accepted and ts.accepted[-1].time >= when for ts in tokens) else None
        if rev is None:
            return []
        findings: list[Finding] = []
        for ts in tokens:
            if not ts.accepted or ts.accepted[-1].time < when:
                continue
            if rule is AFTER_DISABLE:
                if not _before(_issued_at(ts), when):
                    continue
            elif not _kills(state, (label, scope_id, rev), Held.of(ts, ts.accepted[-1].time)):
                continue  # (a lifetime-bound kill covers the latest use first: checked per use below)
            for use in ts.accepted:
                if use.time < when or self._flagged(state, ts, use.time, rule):
                    continue
                if rule is not AFTER_DISABLE and not _kills(state, (label, scope_id, rev), Held.of(ts, use.time)):
                    continue
                delta = use.time - when
                if delta <= lag:
                    state.observe(LAG_METRIC, delta)
                    continue
                used = use_event(use, ts)
                findings.append(self._finding(rule, used, (label, scope_id, rev), delta, ts, True, event))
        return findings

    def _flagged(self, state: StateStore, ts: TokenState, use_time: float, rule: RuleMeta) -> bool:
        """Whether what state knew before this event already made ``use_time`` an alert."""
        lag = self.config.propagation_lag_s
        sub = state.subjects.get(ts.subject_id) if ts.subject_id else None
        issued = _issued_at(ts)
        if sub is not None and sub.disabled is not None and _before(issued, sub.disabled.time):
            if use_time - sub.disabled.time > lag:
                return True
        if rule is AFTER_DISABLE:
            return False
        facts = _facts(state, Held.of(ts, use_time), ts.family_id, ts.session_id, ts.subject_id, sub)
        return any(use_time - fact[2].time > lag for fact in facts)

    # -- findings -------------------------------------------------------------
    def _finding(
        self,
        rule: RuleMeta,
        used: CanonicalEvent,
        fact: Fact,
        delta: float,
        ts: TokenState | None,
        retro: bool,
        revocation: CanonicalEvent | None = None,
    ) -> Finding:
        label, scope_id, rev = fact
        ref = used.token
        assert ref is not None
        token_id = ref.id
        rev_item = EvidenceItem.of(revocation) if revocation is not None else rev.evidence(
            token_id if label == "token" else None
        )
        summary = (
            f"Token {token_id} ({ref.type.value}, subject {describe.subject(used, ts)}, "
            f"client {used.client_id or '?'}) was accepted from {describe.place(used, asn=True)} "
            f"at {describe.when(used.epoch)}, {describe.duration(delta)} after "
            f"{_what(label, scope_id, used)} at {describe.when(rev.time)} "
            f"(allowed propagation lag {self.config.propagation_lag_s:g} s)."
        )
        return Finding(
            rule=rule,
            event=used,
            key=token_id,
            summary=summary,
            evidence=(rev_item, EvidenceItem.of(used)),
            family_id=ref.family_id or (ts.family_id if ts else None),
            details={
                "revoked": label,
                "revoked_id": scope_id,
                "revoked_at": describe.when(rev.time, exact=True),
                "revocation_event_id": rev.event_id,
                "seconds_after_revocation": round(delta, 3),
                "propagation_lag_s": self.config.propagation_lag_s,
                "retroactive": retro,
            },
        )

    def _expiry_finding(self, event: CanonicalEvent, expires: float, t: float, ts: TokenState | None) -> Finding:
        ref = event.token
        assert ref is not None
        summary = (
            f"Token {ref.id} ({ref.type.value}, subject {describe.subject(event, ts)}, "
            f"client {event.client_id or '?'}) was accepted from {describe.place(event, asn=True)} "
            f"at {describe.when(t)}, {describe.duration(t - expires)} after it expired at "
            f"{describe.when(expires)}: the resource server does not check exp."
        )
        return Finding(
            rule=AFTER_EXPIRY,
            event=event,
            key=ref.id,
            summary=summary,
            evidence=describe.evidence_with_issue(event, ts),
            family_id=ref.family_id or (ts.family_id if ts else None),
            details={
                "expired_at": describe.when(expires, exact=True),
                "seconds_after_expiry": round(t - expires, 3),
                "clock_skew_s": self.config.clock_skew_s,
            },
        )


# -- state look-ups --------------------------------------------------------------
@dataclass(frozen=True)
class Held:
    """The token a revocation is judged against: what it is, what it was granted, when issued."""

    state: TokenState | None
    type: str
    scopes: frozenset[str]
    issued: float | None
    used_at: float | None = None  # the use being judged (a policy's lifetime_s needs it)

    @classmethod
    def of(cls, ts: TokenState, used_at: float | None = None) -> Held:
        return cls(ts, ts.type, ts.scopes or frozenset(), _issued_at(ts), used_at)


def _facts(
    state: StateStore,
    held: Held,
    family: str | None,
    session: str | None,
    subject: str | None,
    sub: ScopeState | None,
) -> list[Fact]:
    """Every revocation (not disable) known for a token with these ids that kills it."""
    ts = held.state
    facts: list[Fact] = []
    if ts is not None and ts.revoked is not None:
        facts.append(("token", ts.token_id, ts.revoked))
    fam = state.families.get(family) if family else None
    if fam is not None and fam.revoked is not None:
        facts.append(("family", family, fam.revoked))
    ses = state.sessions.get(session) if session else None
    if ses is not None:
        if ses.revoked is not None:
            facts.append(("session", session, ses.revoked))
        if ses.ended is not None:
            facts.append(("logout", session, ses.ended))
    if sub is not None and sub.revoked is not None:
        facts.append(("subject", subject, sub.revoked))
    return [fact for fact in facts if _kills(state, fact, held)] if facts else facts


def _kills(state: StateStore, fact: Fact, held: Held) -> bool:
    """Whether the revocation ``fact`` kills ``held``, by ``REVOCATION_POLICY`` for the source
    that logged it. A subject-wide revocation covers what was issued up to it, and what was
    minted afterwards from a refresh token it killed (the refresh the IdP should have refused)."""
    label, _, rev = fact
    kills = REVOCATION_POLICY.get((rev.source, label), EVERYTHING)
    if kills.spared_scope is not None and kills.spared_scope in held.scopes:
        return False
    after = held.issued is not None and held.issued > rev.time
    if after and (label == "subject" or not kills.issued):
        return kills.refresh and _minted_from_older_grant(state, held.state, rev.time)
    if held.type == TokenType.REFRESH.value:
        return kills.refresh
    return kills.issued or _outlived(kills, held)


def _outlived(kills: Kills, held: Held) -> bool:
    """An issued token, spared by the revocation, used past the lifetime its IdP gives it."""
    return (kills.lifetime_s is not None and held.issued is not None and held.used_at is not None
            and held.used_at > held.issued + kills.lifetime_s)


def _minted_from_older_grant(state: StateStore, ts: TokenState | None, when: float) -> bool:
    """Whether ``ts`` came from a refresh whose lineage was issued by ``when``: by its parent
    chain where the IdP logs it (Keycloak), else by its refresh chain's other tokens (Okta
    and Entra log the session as the chain). A fresh sign-in after ``when`` starts anew."""
    if ts is None:
        return False
    parent, hops = ts.parent_id, 0
    while parent is not None and hops < _MAX_LINEAGE_HOPS:
        known = state.tokens.get(parent)
        if known is None:
            break
        issued = _issued_at(known)
        if issued is not None and issued <= when:
            return True
        parent, hops = known.parent_id, hops + 1
    if ts.parent_id is None and (ts.issue is None or ts.issue.kind != EventKind.REFRESHED.value):
        return False  # a grant of its own, not a refresh
    for scope in (
        state.families.get(ts.family_id) if ts.family_id else None,
        state.sessions.get(ts.session_id) if ts.session_id else None,
    ):
        for other in state.linked_tokens(scope):
            issued = _issued_at(other)
            if issued is not None and issued <= when:
                return True
    return False


def _targets(event: CanonicalEvent, state: StateStore) -> tuple[RuleMeta, str, str | None, list[TokenState]]:
    """(rule, label, id, tokens) covered by a revoking event, from lineage state."""
    kind = event.kind
    scope: ScopeState | None = None
    if kind is EventKind.PRINCIPAL_DISABLED:
        key = event.subject.id if event.subject else None
        scope = state.subjects.get(key) if key else None
        return AFTER_DISABLE, "disabled", key, list(state.linked_tokens(scope))
    if kind is EventKind.SESSION_ENDED:
        key = event.session_id
        scope = state.sessions.get(key) if key else None
        return AFTER_REVOCATION, "logout", key, list(state.linked_tokens(scope))
    target = event.revocation.target if event.revocation else "token"
    if target == "token":
        ts = state.token(event.token.id if event.token else None)
        return AFTER_REVOCATION, "token", ts.token_id if ts else None, [ts] if ts else []
    if target == "family":
        key = state.family_of(event)
        scope = state.families.get(key) if key else None
    elif target == "session":
        key = event.session_id
        scope = state.sessions.get(key) if key else None
    else:
        key = event.subject.id if event.subject else None
        scope = state.subjects.get(key) if key else None
    return AFTER_REVOCATION, target, key, list(state.linked_tokens(scope))


def _issued_at(ts: TokenState | None) -> float | None:
    if ts is None:
        return None
    if ts.issued_at is not None:
        return ts.issued_at
    return ts.issue.time if ts.issue is not None else None


def _before(issued: float | None, revoked: float) -> bool:
    """A subject-wide revocation covers tokens issued up to it (unknown issue: assume before)."""
    return issued is None or issued <= revoked


# -- rebuilding a use for retroactive findings -----------------------------------
# -- wording ---------------------------------------------------------------------
def _what(label: str, scope_id: str | None, used: CanonicalEvent) -> str:
    return {
        "token": "the token itself was revoked",
        "family": f"its token family {scope_id} was revoked",
        "session": f"its session {scope_id} was revoked",
        "logout": f"its session {scope_id} ended (logout)",
        "subject": f"all tokens of subject {scope_id} were revoked",
        "disabled": f"subject {scope_id} was disabled",
    }.get(label, f"{label} {scope_id} was revoked")

