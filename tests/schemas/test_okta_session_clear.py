"""Okta "Clear user sessions": with the user's OAuth tokens (a subject-wide revocation) or
without them (the sign-on sessions end, the tokens live).

Okta's Users API: ``DELETE /api/v1/users/{userId}/sessions`` "removes all active identity
provider sessions ... optionally revokes OpenID Connect and OAuth refresh and access tokens
issued to the user" (query ``oauthTokens``). Okta's event-type reference: the clear logs one
``user.session.clear``, and one ``user.session.end`` per ended session with the same
transaction id. The System Log ``debugContext.debugData`` carries the request (``requestUri``,
``url``); a clear whose request names no ``oauthTokens=false`` counts as with tokens.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from schemas.events import CanonicalEvent, EventKind, Request, Revocation
from schemas.redaction import redact_url
from schemas.sources import AdapterContext
from schemas.sources.okta import OktaFormat
from tests.schemas.test_okta import ADMIN, BOB, LINES, _at

USER_SESSIONS = "/api/v1/users/00u8f2kq1zXyAbCdE5d7/sessions"


@pytest.fixture
def ctx(hasher) -> AdapterContext:  # type: ignore[no-untyped-def]  # pytest passes the conftest's hasher fixture; its type is not spelled here
    return AdapterContext(hash_token=hasher)


def clear(**debug: Any) -> dict[str, Any]:
    """The documented deactivate sample turned into an admin's clear of Bob's sessions."""
    raw = orjson.loads(LINES[5])
    raw.update(uuid="u-clear", eventType="user.session.clear", actor=ADMIN)
    raw["debugContext"]["debugData"].update(debug)
    return raw


def _one(raw: dict[str, Any], ctx: AdapterContext) -> CanonicalEvent:
    [event] = OktaFormat().to_events(raw, ctx)
    return event


def _expected(
    kind: EventKind, ctx: AdapterContext, resource: str | None, revocation: Revocation | None
) -> CanonicalEvent:
    return CanonicalEvent(
        event_id="okta:u-clear",
        kind=kind,
        time=_at(24, 10, 0),
        source="okta",
        subject=BOB,
        client_id="0oa5portal",
        network=_one(orjson.loads(LINES[5]), ctx).network,
        request=Request(id="req-u6", resource=resource),
        revocation=revocation,
    )


@pytest.mark.parametrize("debug", [
    {"requestUri": USER_SESSIONS, "url": f"{USER_SESSIONS}?oauthTokens=true"},
    {"requestUri": f"{USER_SESSIONS}?oauthTokens=true"},
    {},  # the Admin Console's clear: no query logged, tokens revoked (Okta "Universal Logout revocations")
    {"url": f"{USER_SESSIONS}?oauthTokens=false&oauthTokens=true"},  # the parameter twice: not a "without"
    {"url": f"{USER_SESSIONS}?forgetDevices=false"},
])
def test_clear_with_tokens_revokes_every_token_of_the_user(ctx: AdapterContext, debug: dict[str, str]) -> None:
    resource = debug.get("requestUri")  # as every Okta request: a token-named parameter's value is hashed
    resource = redact_url(resource, ctx.hash_token) if resource else None
    assert _one(clear(**debug), ctx) == _expected(
        EventKind.REVOKED, ctx, resource, Revocation(target="subject", actor="admin@example.org"))


@pytest.mark.parametrize("query", ["oauthTokens=false", "oauthTokens=FALSE", "forgetDevices=true&oauthTokens=false"])
def test_clear_without_tokens_ends_the_users_sessions_only(ctx: AdapterContext, query: str) -> None:
    """A session end of the user naming no session: it arms nothing (the per-session
    user.session.end events name the sessions, and a sign-on session end kills no token)."""
    event = _one(clear(requestUri=USER_SESSIONS, url=f"{USER_SESSIONS}?{query}"), ctx)
    assert event == _expected(EventKind.SESSION_ENDED, ctx, USER_SESSIONS, None)
    assert event.session_id is None


def test_the_end_of_each_cleared_session_is_a_session_end(ctx: AdapterContext) -> None:
    raw = orjson.loads(LINES[0])
    raw.update(uuid="u-end", eventType="user.session.end")
    event = _one(raw, ctx)
    assert (event.kind, event.session_id, event.subject) == (EventKind.SESSION_ENDED, "102qZ8fGhJkLmN", BOB)
    assert event.revocation is None
