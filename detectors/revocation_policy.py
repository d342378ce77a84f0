"""Which tokens a revocation kills, as the IdP that logged it defines it.

A logout or revocation protects only the tokens its IdP then refuses: an Okta sign-out
kills no OAuth token, an Entra ``revokeSignInSessions`` leaves access tokens valid until
``exp``, a Keycloak logout spares offline tokens. ``post_revocation_use`` alerts only on
uses of killed tokens; this module is that knowledge, kept apart from the rule so that a
new IdP's semantics is one ``REVOCATION_POLICY`` line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Final

from detectors.state import REFRESH_TYPE, Observation, StateStore, TokenState, value_of
from schemas.events import CanonicalEvent, EventKind, TokenType

_MAX_LINEAGE_HOPS = 32


@dataclass(frozen=True, slots=True)
class Revocation:
    """One recorded end of validity a token is judged against.

    ``what`` says what ended (the label alerts report as ``revoked``): ``token``, ``family``,
    ``session``, ``subject`` (revoked), ``logout`` (session ended) or ``disabled`` (its
    subject was disabled); ``scope_id`` is the id of that token, family, session or subject."""

    what: str
    scope_id: str | None
    observation: Observation


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

# (event source, what ended: ``Revocation.what``) -> what it kills. Not listed: everything,
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


class Held:
    """The token a revocation is judged against: what it is, what it was granted, when issued.

    A plain class, not a frozen dataclass: compiled, that one is built by its Python-generated
    ``__init__`` (about ten times the cost), and a use that meets a revocation builds one."""

    __slots__: ClassVar[tuple[str, ...]] = ("state", "type", "scopes", "issued", "used_at")

    def __init__(
        self, state: TokenState | None, type: str, scopes: frozenset[str], issued: float | None,
        used_at: float | None = None,
    ) -> None:
        self.state: Final = state
        self.type: Final = type
        self.scopes: Final = scopes
        self.issued: Final = issued
        self.used_at: Final = used_at  # the use being judged (a policy's lifetime_s needs it)

    @classmethod
    def of(cls, token_state: TokenState, used_at: float | None = None) -> Held:
        return cls(token_state, token_state.type, token_state.scopes or frozenset(), issued_at(token_state), used_at)

    @classmethod
    def of_use(cls, event: CanonicalEvent, token_state: TokenState | None, issued: float | None) -> Held:
        """The token of a ``used`` event: the event's own type and scopes where it logs them."""
        ref = event.token
        assert ref is not None
        kind = value_of(ref.type) if ref.type is not TokenType.UNKNOWN or token_state is None else token_state.type
        known_scopes = token_state.scopes if token_state is not None else None
        scopes = known_scopes if known_scopes is not None else frozenset(event.scopes)
        return cls(token_state, kind, scopes, issued, event.epoch)


def kills(state: StateStore, revocation: Revocation, held: Held) -> bool:
    """Whether ``revocation`` kills ``held``, by ``REVOCATION_POLICY`` for the source that
    logged it. A subject-wide revocation covers what was issued up to it, and what was
    minted afterwards from a refresh token it killed (the refresh the IdP should have refused)."""
    rev = revocation.observation
    policy = REVOCATION_POLICY.get((rev.source, revocation.what), EVERYTHING)
    if policy.spared_scope is not None and policy.spared_scope in held.scopes:
        return False
    after = held.issued is not None and held.issued > rev.time
    if after and (revocation.what == "subject" or not policy.issued):
        return policy.refresh and _minted_from_older_grant(state, held.state, rev.time)
    if held.type == REFRESH_TYPE:
        return policy.refresh
    return policy.issued or _outlived(policy, held)


def issued_at(token_state: TokenState | None) -> float | None:
    """When state says the token was issued: its ``iat``, else its issuing event."""
    if token_state is None:
        return None
    if token_state.issued_at is not None:
        return token_state.issued_at
    return token_state.issue.time if token_state.issue is not None else None


def _outlived(policy: Kills, held: Held) -> bool:
    """An issued token, spared by the revocation, used past the lifetime its IdP gives it."""
    return (policy.lifetime_s is not None and held.issued is not None and held.used_at is not None
            and held.used_at > held.issued + policy.lifetime_s)


def _minted_from_older_grant(state: StateStore, token_state: TokenState | None, when: float) -> bool:
    """Whether ``token_state`` came from a refresh whose lineage was issued by ``when``: by its parent
    chain where the IdP logs it (Keycloak), else by its refresh chain's other tokens (Okta
    and Entra log the session as the chain). A fresh sign-in after ``when`` starts anew."""
    if token_state is None:
        return False
    parent, hops = token_state.parent_id, 0
    while parent is not None and hops < _MAX_LINEAGE_HOPS:
        ancestor = state.tokens.get(parent)
        if ancestor is None:
            break
        issued = issued_at(ancestor)
        if issued is not None and issued <= when:
            return True
        parent, hops = ancestor.parent_id, hops + 1
    if token_state.parent_id is None and (
        token_state.issue is None or token_state.issue.kind != EventKind.REFRESHED.value
    ):
        return False  # a grant of its own, not a refresh
    for scope in (
        state.families.get(token_state.family_id) if token_state.family_id else None,
        state.sessions.get(token_state.session_id) if token_state.session_id else None,
    ):
        for other in state.linked_tokens(scope):
            issued = issued_at(other)
            if issued is not None and issued <= when:
                return True
    return False
