"""Post-revocation use: a resource server accepted a token it should have refused.

Revocation, logout and disabling only protect anything if resource servers
stop accepting the affected tokens, and ``exp`` only if they check it. Each
rule fires on a *successful* use (a refused one is the system working):

- ``after_revocation`` — after the token, its family, its session or its
  subject was revoked, or its session ended (logout), when that revocation
  kills this kind of token at the source that logged it
  (``detectors.revocation_policy.REVOCATION_POLICY``: an Okta sign-out kills no
  OAuth token, an Entra ``revokeSignInSessions`` leaves access tokens valid
  until ``exp``, …);
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

Deciding and wording are apart: ``judge_use`` and ``judge_revocation`` read state and
return a ``Judgement`` of facts; ``late_use_finding`` words one ``LateUse`` as an alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from detectors import describe
from detectors.base import Detector, Finding, RuleMeta
from detectors.binding import token_label
from detectors.post_revocation_use_config import PostRevocationUseConfig
from detectors.recorded import use_event
from detectors.revocation_policy import Held, Revocation, issued_at, kills
from detectors.state import Observation, ScopeState, StateStore, TokenState
from schemas.alerts import EvidenceItem
from schemas.events import CanonicalEvent, EventKind

LAG_METRIC = "revocation_propagation_lag_s"
_ATT_TOKEN = (("T1550.001", "Use Alternate Authentication Material: Application Access Token"),)

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


# -- the facts a decision returns ------------------------------------------------
@dataclass(frozen=True, slots=True)
class Expiry:
    """The token's ``exp`` (epoch seconds), for a use that came after it."""

    at: float


@dataclass(frozen=True, slots=True)
class LateUse:
    """A successful use its resource server should have refused: everything its alert says."""

    rule: RuleMeta
    use: CanonicalEvent  # the accepted use; rebuilt from state when the revocation came later
    token_state: TokenState | None  # what state knew of the token
    after: Revocation | Expiry  # what ended the token's validity
    late_s: float  # seconds after it
    allowed_s: float  # the propagation lag (revocation, disable) or clock skew (expiry) exceeded
    revoking: CanonicalEvent | None = None  # the revocation, when it arrived after the use (retroactive)


@dataclass(frozen=True, slots=True)
class Judgement:
    """What one event shows: uses that came too late (one alert each, in order), and how long
    after a revocation uses still came within the propagation lag (``LAG_METRIC`` samples)."""

    late: tuple[LateUse, ...] = ()
    lags: tuple[float, ...] = ()


QUIET = Judgement()


class PostRevocationUseDetector(Detector[PostRevocationUseConfig]):
    name: ClassVar[str] = "post_revocation_use"
    rules: ClassVar[tuple[RuleMeta, ...]] = (AFTER_REVOCATION, AFTER_DISABLE, AFTER_EXPIRY)

    def process(self, event: CanonicalEvent, state: StateStore) -> list[Finding]:
        kind = event.kind
        if kind is EventKind.USED:
            if event.token is None or event.outcome.result != "success":
                return []
            judged = judge_use(event, state, self.config)
        elif kind is EventKind.REVOKED or kind is EventKind.SESSION_ENDED or kind is EventKind.PRINCIPAL_DISABLED:
            if event.outcome.result == "failure":
                return []  # a revocation that failed revoked nothing
            judged = judge_revocation(event, state, self.config)
        else:
            return []
        for lag in judged.lags:
            state.observe(LAG_METRIC, lag)
        return [late_use_finding(match) for match in judged.late]


# -- deciding --------------------------------------------------------------------
def judge_use(event: CanonicalEvent, state: StateStore, config: PostRevocationUseConfig) -> Judgement:
    """An accepted use, in order: what state already knows ended the token is judged against it.

    Disabling takes precedence over revocation, and both over expiry, so one use raises at
    most one alert. Reads state, changes nothing."""
    ref = event.token
    assert ref is not None
    token_state = state.tokens.get(ref.id)
    t, lag = event.epoch, config.propagation_lag_s
    lags: list[float] = []
    for rule, ended in _ends_of(event, token_state, state):
        late = t - ended.observation.time
        if late > lag:
            return Judgement((LateUse(rule, event, token_state, ended, late, lag),))
        if late >= 0:
            lags.append(late)
    within = (min(lags),) if lags else ()
    expires = ref.expires_at.timestamp() if ref.expires_at else (token_state.expires_at if token_state else None)
    if expires is not None and t > expires + config.clock_skew_s:
        return Judgement((LateUse(AFTER_EXPIRY, event, token_state, Expiry(expires), t - expires, config.clock_skew_s),), within)
    return Judgement(lags=within) if within else QUIET


def _ends_of(event: CanonicalEvent, token_state: TokenState | None, state: StateStore) -> list[tuple[RuleMeta, Revocation]]:
    """What state knows ended the used token, in precedence order: its subject's disabling, then
    the earliest revocation up to the use that kills it. Asked on every accepted use, and nearly
    always nothing ended it: what only a recorded end needs (the issue time, the ``Held``
    record) is worked out only once there is one."""
    ref = event.token
    assert ref is not None
    ends: list[tuple[RuleMeta, Revocation]] = []
    subject = _subject_of(event, token_state, state)
    sub = state.subjects.get(subject) if subject else None
    family = ref.family_id or (token_state.family_id if token_state else None)
    session = event.session_id or (token_state.session_id if token_state else None)
    recorded = _recorded_revocations(token_state, state, family, session, subject, sub)
    if not recorded and (sub is None or sub.disabled is None):
        return ends
    issued = ref.issued_at.timestamp() if ref.issued_at else issued_at(token_state)
    disabled = _disabling(sub, subject, issued)
    if disabled is not None:
        ends.append((AFTER_DISABLE, disabled))
    if recorded:
        held = Held.of_use(event, token_state, issued)
        when = event.epoch
        revoked: Revocation | None = None
        for revocation in recorded:  # the earliest up to the use that kills it (the first of equals)
            at = revocation.observation.time
            if at <= when and (revoked is None or at < revoked.observation.time) and kills(state, revocation, held):
                revoked = revocation
        if revoked is not None:
            ends.append((AFTER_REVOCATION, revoked))
    return ends


def judge_revocation(event: CanonicalEvent, state: StateStore, config: PostRevocationUseConfig) -> Judgement:
    """A revocation that arrived after uses it covers (beyond the engine's lateness): the
    recorded uses since it that nothing state knew before had already flagged."""
    rule, what, scope_id, tokens = _targets(event, state)
    when, lag = event.epoch, config.propagation_lag_s
    used_since = [token_state for token_state in tokens if token_state.accepted and token_state.accepted[-1].time >= when]
    if not used_since:
        return QUIET
    revocation = Revocation(what, scope_id, Observation(event))
    late: list[LateUse] = []
    lags: list[float] = []
    for token_state in used_since:
        if not _covers(state, rule, revocation, token_state):
            continue  # (a lifetime-bound kill covers the latest use first: checked per use below)
        for use in token_state.accepted:
            if use.time < when or _flagged(state, token_state, use.time, rule, lag):
                continue
            if rule is not AFTER_DISABLE and not kills(state, revocation, Held.of(token_state, use.time)):
                continue
            delta = use.time - when
            if delta <= lag:
                lags.append(delta)
            else:
                late.append(LateUse(rule, use_event(use, token_state), token_state, revocation, delta, lag, event))
    return Judgement(tuple(late), tuple(lags))


def _covers(state: StateStore, rule: RuleMeta, revocation: Revocation, token_state: TokenState) -> bool:
    """Whether a late revocation reaches ``token_state`` at all (judged at its latest use)."""
    if rule is AFTER_DISABLE:
        return _before(issued_at(token_state), revocation.observation.time)
    return kills(state, revocation, Held.of(token_state, token_state.accepted[-1].time))


def _flagged(state: StateStore, token_state: TokenState, use_time: float, rule: RuleMeta, lag: float) -> bool:
    """Whether what state knew before this event already made ``use_time`` an alert."""
    sub = state.subjects.get(token_state.subject_id) if token_state.subject_id else None
    disabled = _disabling(sub, token_state.subject_id, issued_at(token_state))
    if disabled is not None and use_time - disabled.observation.time > lag:
        return True
    if rule is AFTER_DISABLE:
        return False
    revocations = _revocations(state, Held.of(token_state, use_time), token_state.family_id, token_state.session_id, token_state.subject_id, sub)
    return any(use_time - r.observation.time > lag for r in revocations)


# -- state look-ups --------------------------------------------------------------
def _subject_of(event: CanonicalEvent, token_state: TokenState | None, state: StateStore) -> str | None:
    """The subject id state knows: a use may name it differently from the IdP (a JWT `sub`
    that is the login, where IdP events carry the user id)."""
    named = event.subject.id if event.subject else None
    known = token_state.subject_id if token_state else None
    if not named:
        return known or None
    if named in state.subjects or not known:
        return named
    return known if known in state.subjects else named


def _disabling(sub: ScopeState | None, subject: str | None, issued: float | None) -> Revocation | None:
    """The subject's disabling, when it covers a token issued at ``issued``."""
    if sub is None or sub.disabled is None or not _before(issued, sub.disabled.time):
        return None
    return Revocation("disabled", subject, sub.disabled)


def _revocations(
    state: StateStore,
    held: Held,
    family: str | None,
    session: str | None,
    subject: str | None,
    sub: ScopeState | None,
) -> list[Revocation]:
    """Every revocation (not disable) known for a token with these ids that kills it."""
    found = _recorded_revocations(held.state, state, family, session, subject, sub)
    return [r for r in found if kills(state, r, held)] if found else found


def _recorded_revocations(
    token_state: TokenState | None,
    state: StateStore,
    family: str | None,
    session: str | None,
    subject: str | None,
    sub: ScopeState | None,
) -> list[Revocation]:
    """Every revocation (not disable) recorded for a token with these ids, whatever it kills."""
    found: list[Revocation] = []
    if token_state is not None and token_state.revoked is not None:
        found.append(Revocation("token", token_state.token_id, token_state.revoked))
    fam = state.families.get(family) if family else None
    if fam is not None and fam.revoked is not None:
        found.append(Revocation("family", family, fam.revoked))
    ses = state.sessions.get(session) if session else None
    if ses is not None:
        if ses.revoked is not None:
            found.append(Revocation("session", session, ses.revoked))
        if ses.ended is not None:
            found.append(Revocation("logout", session, ses.ended))
    if sub is not None and sub.revoked is not None:
        found.append(Revocation("subject", subject, sub.revoked))
    return found


def _targets(event: CanonicalEvent, state: StateStore) -> tuple[RuleMeta, str, str | None, list[TokenState]]:
    """(rule, what, id, tokens) covered by a revoking event, from lineage state."""
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
        token_state = state.token(event.token.id if event.token else None)
        return AFTER_REVOCATION, "token", token_state.token_id if token_state else None, [token_state] if token_state else []
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


def _before(issued: float | None, revoked: float) -> bool:
    """A subject-wide revocation covers tokens issued up to it (unknown issue: assume before)."""
    return issued is None or issued <= revoked


# -- wording ---------------------------------------------------------------------
def late_use_finding(match: LateUse) -> Finding:
    """The alert for ``match``: its summary sentence, evidence and details. Decides nothing."""
    if isinstance(match.after, Expiry):
        return _expired_finding(match, match.after)
    return _revoked_finding(match, match.after)


def _revoked_finding(match: LateUse, revocation: Revocation) -> Finding:
    used, token_state, rev = match.use, match.token_state, revocation.observation
    ref = used.token
    assert ref is not None
    cited = EvidenceItem.of(match.revoking) if match.revoking is not None else rev.evidence(
        ref.id if revocation.what == "token" else None
    )
    summary = (
        f"{token_label(ref, token_state)} accepted {describe.duration(match.late_s)} after {_what(revocation)} "
        f"at {describe.when(rev.time)}, from {describe.place(used, asn=True)} at {describe.when(used.epoch)} "
        f"(allowed propagation lag {describe.duration(match.allowed_s)}; {_ids(used, token_state)})."
    )
    return Finding(
        rule=match.rule,
        event=used,
        key=ref.id,
        summary=summary,
        evidence=(cited, EvidenceItem.of(used)),
        family_id=ref.family_id or (token_state.family_id if token_state else None),
        details={
            "revoked": revocation.what,
            "revoked_id": revocation.scope_id,
            "revoked_at": describe.when(rev.time, exact=True),
            "revocation_event_id": rev.event_id,
            "seconds_after_revocation": round(match.late_s, 3),
            "propagation_lag_s": match.allowed_s,
            "retroactive": match.revoking is not None,
        },
    )


def _expired_finding(match: LateUse, expiry: Expiry) -> Finding:
    used, token_state = match.use, match.token_state
    ref = used.token
    assert ref is not None
    summary = (
        f"{token_label(ref, token_state)} accepted {describe.duration(match.late_s)} after it expired at "
        f"{describe.when(expiry.at)}, from {describe.place(used, asn=True)} at {describe.when(used.epoch)}: "
        f"the resource server does not check exp ({_ids(used, token_state)})."
    )
    return Finding(
        rule=match.rule,
        event=used,
        key=ref.id,
        summary=summary,
        evidence=describe.evidence_with_issue(used, token_state),
        family_id=ref.family_id or (token_state.family_id if token_state else None),
        details={
            "expired_at": describe.when(expiry.at, exact=True),
            "seconds_after_expiry": round(match.late_s, 3),
            "clock_skew_s": match.allowed_s,
        },
    )


def _ids(used: CanonicalEvent, token_state: TokenState | None) -> str:
    """Whose token, by id, for the end of a summary: "token t-1, subject alice, client portal"."""
    assert used.token is not None
    return f"token {used.token.id}, subject {describe.subject(used, token_state)}, client {used.client_id or '?'}"


def _what(revocation: Revocation) -> str:
    scope_id = revocation.scope_id
    return {
        "token": "the token itself was revoked",
        "family": f"its token family {scope_id} was revoked",
        "session": f"its session {scope_id} was revoked",
        "logout": f"its session {scope_id} ended (logout)",
        "subject": f"all tokens of subject {scope_id} were revoked",
        "disabled": f"subject {scope_id} was disabled",
    }.get(revocation.what, f"{revocation.what} {scope_id} was revoked")
