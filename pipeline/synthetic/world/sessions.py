"""One sign-in session per identity provider, and the resource-server lines of
its tokens: Keycloak (gateway uses and introspection), Okta (gateway uses),
Entra ID (Graph activity). Each session writes its own records."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline.synthetic.vocabulary import (
    BROWSER_AGENT,
    HR_API,
    KEYCLOAK_ISSUER,
    MOBILE_APP_AGENT,
    MOBILE_APP_CLIENT,
    OKTA_ISSUER,
    ORDERS_ADMIN_SCOPE,
    ORDERS_API,
    PAYMENTS_API,
    PORTAL_CLIENT,
    PORTAL_SCOPES,
    VPC_PREFIX,
)
from pipeline.synthetic.world import emit
from pipeline.synthetic.world.model import Records, User, new_id, short_id
from pipeline.synthetic.world.net import Place

# (method, path, required scope, audience)
Route = tuple[str, str, str, str]


@dataclass(frozen=True)
class Client:
    id: str
    scopes: tuple[str, ...]
    routes: tuple[Route, ...]  # what its users call, all within its scopes
    denied: tuple[Route, ...]  # routes that need more: answered 403 (a normal failure)
    access_ttl: int
    user_agent: str = BROWSER_AGENT
    dpop: bool = False
    introspected_share: float = 0.0  # share of calls to a resource server that introspects instead


PORTAL = Client(PORTAL_CLIENT, PORTAL_SCOPES,
                (("GET", "/orders/{n}", "orders:read", ORDERS_API), ("GET", "/orders", "orders:read", ORDERS_API),
                 ("GET", "/payments/{n}", "payments:read", PAYMENTS_API)),
                (("POST", "/orders", "orders:write", ORDERS_API),), 300, introspected_share=0.1)
MOBILE = Client(MOBILE_APP_CLIENT, ("openid", "orders:read", "payments:read", "payments:write"),
                (("GET", "/orders", "orders:read", ORDERS_API), ("GET", "/payments/{n}", "payments:read", PAYMENTS_API),
                 ("POST", "/payments", "payments:write", PAYMENTS_API)),
                (("DELETE", "/payments/{n}", "payments:admin", PAYMENTS_API),), 300, MOBILE_APP_AGENT, dpop=True)
ADMIN_CONSOLE = Client("admin-console", ("openid", "profile", "orders:read", ORDERS_ADMIN_SCOPE),
                       (("GET", "/admin/orders/{n}", ORDERS_ADMIN_SCOPE, ORDERS_API),
                        ("PATCH", "/admin/orders/{n}", ORDERS_ADMIN_SCOPE, ORDERS_API),
                        ("GET", "/orders", "orders:read", ORDERS_API)),
                       (("DELETE", "/admin/tenants/{n}", "tenants:admin", ORDERS_API),), 300)
HR_PORTAL = Client("0oa5hrportal", ("openid", "profile", "offline_access", "hr:read", "expenses:read", "expenses:write"),
                   (("GET", "/hr/me", "hr:read", HR_API), ("GET", "/expenses", "expenses:read", HR_API),
                    ("POST", "/expenses", "expenses:write", HR_API)),
                   (("GET", "/hr/salaries", "hr:admin", HR_API),), 3600)
GRAPH_APP = ("14d82eec-204b-4c2f-b7e8-296a70dab67e", "Acme Intranet")
ADMIN_APP = ("c44b4083-3bb0-49c1-b47d-974e53cbdf3c", "Azure Portal")
GRAPH_SCOPES = ("User.Read", "Mail.Read", "Calendars.Read", "Files.Read")
GRAPH_ADMIN_SCOPES = (*GRAPH_SCOPES, "Directory.Read.All")
GRAPH_CALLS = (("GET", "/me"), ("GET", "/me/messages"), ("GET", "/me/events"), ("GET", "/me/drive/root/children"))
GRAPH_DENIED = (("GET", "/users"),)


@dataclass
class Token:
    id: str
    iat: float
    exp: float
    scopes: tuple[str, ...]
    refresh_id: str | None = None


@dataclass
class Session:
    """Common driving interface; subclasses write the vendor's lines."""

    user: User
    rec: Records
    client: Client
    id: str = ""
    token: Token | None = None
    calls: int = field(default=0)

    def login(self, t: float, place: Place) -> Token:
        raise NotImplementedError

    def refresh(self, t: float, place: Place) -> Token:
        raise NotImplementedError

    def logout(self, t: float, place: Place) -> None:
        """Most sources log no logout; those that do override this."""

    def use(self, t: float, place: Place, status: int | None = None, route: Route | None = None) -> dict[str, Any]:
        """One API call with the current token; 403 when the route needs a scope the token lacks."""
        rng, token, client = self.user.rng, self.token, self.client
        assert token is not None
        denied = False
        if route is None:
            denied = rng.random() < 0.012
            route = rng.choice(client.denied if denied else client.routes)
        if status is None:
            status = 403 if denied else (201 if route[0] == "POST" else 200)
        self.calls += 1
        method, path, required, aud = route
        path = path.replace("{n}", str(rng.randint(1000, 99999)))
        claims = self.claims(token, aud)
        proof = claims["cnf"]["jkt"] if "cnf" in claims else None
        raw = emit.gateway(f"gw-{new_id(rng)}", t, place, method, path, status, client.user_agent, claims, required, proof)
        self.rec.add(t, "gateway", raw)
        return raw

    def claims(self, token: Token, aud: str) -> dict[str, Any]:
        raise NotImplementedError


class KeycloakSession(Session):
    def keycloak_event(self, t: float, type_: str, place: Place, details: dict[str, str], error: str | None = None,
                       client: str | None = None) -> dict[str, Any]:
        """Log one Keycloak event of this session (public: attacks log events a session never would)."""
        raw = emit.keycloak(new_id(self.user.rng), t, type_, client or self.client.id, self.user.id, self.id,
                            place.ip, details, error)
        self.rec.add(t, "keycloak", raw)
        return raw

    def login(self, t: float, place: Place) -> Token:
        rng = self.user.rng
        self.id = new_id(rng)
        if rng.random() < 0.04:  # a mistyped password first: Keycloak logs LOGIN_ERROR (a skipped type)
            failed_at = t - rng.uniform(8, 30)
            raw = emit.keycloak(new_id(rng), failed_at, "LOGIN_ERROR", self.client.id, self.user.id,
                                None, place.ip, {"auth_method": "openid-connect", "username": self.user.login},
                                "invalid_user_credentials")
            self.rec.add(failed_at, "keycloak", raw)
        code = new_id(rng)
        self.keycloak_event(t, "LOGIN", place, {"auth_method": "openid-connect", "auth_type": "code", "code_id": code,
                                                 "username": self.user.login})
        token = Token(new_id(rng), t + 0.4, t + 0.4 + self.client.access_ttl, self.scopes(), new_id(rng))
        self.keycloak_event(t + 0.4, "CODE_TO_TOKEN", place, {
            "code_id": code, "token_id": token.id, "refresh_token_id": token.refresh_id or "",
            "refresh_token_type": "Refresh", "scope": " ".join(token.scopes), "grant_type": "authorization_code",
            "client_auth_method": "client-secret"})
        self.token = token
        return token

    def scopes(self) -> tuple[str, ...]:
        return self.client.scopes

    def refresh(self, t: float, place: Place, presented: str | None = None) -> Token:
        rng, old = self.user.rng, self.token
        assert old is not None
        token = Token(new_id(rng), t, t + self.client.access_ttl, old.scopes, new_id(rng))
        self.keycloak_event(t, "REFRESH_TOKEN", place, {
            "token_id": token.id, "refresh_token_id": presented or old.refresh_id or "",
            "updated_refresh_token_id": token.refresh_id or "", "refresh_token_type": "Refresh",
            "scope": " ".join(token.scopes), "grant_type": "refresh_token", "client_auth_method": "client-secret"})
        self.token = token
        if rng.random() < 0.005:
            # The response was lost: the client retries with the same refresh token a few
            # seconds later, from the same place; Keycloak (reuse allowed once) answers again.
            retry = Token(new_id(rng), t + rng.uniform(3, 12), 0, old.scopes, new_id(rng))
            retry.exp = retry.iat + self.client.access_ttl
            self.keycloak_event(retry.iat, "REFRESH_TOKEN", place, {
                "token_id": retry.id, "refresh_token_id": old.refresh_id or "",
                "updated_refresh_token_id": retry.refresh_id or "", "refresh_token_type": "Refresh",
                "scope": " ".join(retry.scopes), "grant_type": "refresh_token", "client_auth_method": "client-secret"})
            self.token = retry
        return self.token

    def stale_refresh(self, t: float, place: Place) -> None:
        """The SSO session timed out while the laptop slept: Keycloak refuses the current refresh token."""
        assert self.token is not None
        self.keycloak_event(t, "REFRESH_TOKEN_ERROR", place, {"refresh_token_id": self.token.refresh_id or "",
                                                              "grant_type": "refresh_token", "reason": "Session not active"},
                            error="invalid_token")

    def logout(self, t: float, place: Place) -> None:
        self.keycloak_event(t, "LOGOUT", place, {"redirect_uri": "https://portal.acme.example/"}, client=PORTAL_CLIENT)

    def use(self, t: float, place: Place, status: int | None = None, route: Route | None = None) -> dict[str, Any]:
        rng = self.user.rng
        if route is None and status is None and rng.random() < self.client.introspected_share:
            # reports-api validates tokens by introspection at Keycloak, from the internal network
            assert self.token is not None
            self.calls += 1
            raw = emit.keycloak(new_id(rng), t, "INTROSPECT_TOKEN", "reports-api", self.user.id, self.id,
                                f"{VPC_PREFIX}.4.{rng.randint(10, 14)}", {"token_id": self.token.id})
            self.rec.add(t, "keycloak", raw)
            return raw
        return super().use(t, place, status, route)

    def claims(self, token: Token, aud: str) -> dict[str, Any]:
        claims: dict[str, Any] = {"jti": token.id, "sub": self.user.id, "client_id": self.client.id, "sid": self.id,
                                  "scope": " ".join(token.scopes), "iss": KEYCLOAK_ISSUER, "aud": aud,
                                  "iat": int(token.iat), "exp": int(token.exp)}
        if self.client.dpop and self.user.device_key:
            claims["cnf"] = {"jkt": self.user.device_key}
        return claims


class OktaSession(Session):
    def okta_event(self, t: float, event_type: str, place: Place, debug: dict[str, Any],
                   targets: list[dict[str, Any]]) -> None:
        """Log one Okta System Log event of this session (public: attacks log events a session never would)."""
        u = self.user
        raw = emit.okta(new_id(u.rng), t, event_type, emit.okta_actor(u.id, u.login, u.name), place,
                        self.client.user_agent, self.id, debug, [{"id": u.id, "type": "User"}, *targets],
                        self.client.id)
        self.rec.add(t, "okta", raw)

    def _grant(self, t: float, place: Place, grant: str, token: Token) -> None:
        debug = {"grantType": grant, "grantedScopes": ", ".join(token.scopes),
                 "requestedScopes": " ".join(token.scopes), "clientAuthType": "client_secret_basic",
                 "requestUri": "/oauth2/aus1acme/v1/token"}
        self.okta_event(t, "app.oauth2.as.token.grant.access_token", place, debug,
                        [emit.okta_token_target("access_token", token.id, token.exp, self.user.id)])
        if token.refresh_id:
            self.okta_event(t + 0.1, "app.oauth2.as.token.grant.refresh_token", place, debug,
                            [emit.okta_token_target("refresh_token", token.refresh_id, t + 7 * 86400, self.user.id)])

    def login(self, t: float, place: Place) -> Token:
        rng = self.user.rng
        self.id = "102" + short_id(rng, 22)
        self.okta_event(t, "user.session.start", place, {}, [])
        token = Token("AT." + short_id(rng), t + 1.2, t + 1.2 + self.client.access_ttl, self.client.scopes,
                      "RT." + short_id(rng))
        self._grant(t + 1.2, place, "authorization_code", token)
        self.token = token
        return token

    def refresh(self, t: float, place: Place) -> Token:
        rng = self.user.rng
        token = Token("AT." + short_id(rng), t, t + self.client.access_ttl, self.client.scopes, "RT." + short_id(rng))
        self._grant(t, place, "refresh_token", token)
        self.token = token
        return token

    def logout(self, t: float, place: Place) -> None:
        self.okta_event(t, "user.session.end", place, {}, [])

    def claims(self, token: Token, aud: str) -> dict[str, Any]:
        return {"jti": token.id, "sub": self.user.id, "client_id": self.client.id, "sid": self.id,
                "scope": " ".join(token.scopes), "iss": OKTA_ISSUER, "aud": aud,
                "iat": int(token.iat), "exp": int(token.exp)}


@dataclass
class EntraSession(Session):
    """Interactive sign-in, then non-interactive refreshes; Graph activity for uses.
    Admins use the Azure portal (directory scopes) besides the intranet app."""

    admin_app: bool = False

    @property
    def app(self) -> tuple[str, str]:
        return ADMIN_APP if self.admin_app else GRAPH_APP

    def _sign_in(self, t: float, place: Place, category: str, incoming: str) -> Token:
        u = self.user
        scopes = GRAPH_ADMIN_SCOPES if self.admin_app else GRAPH_SCOPES
        uti = short_id(u.rng, 22)
        raw = emit.entra(uti, t, category, u.id, u.login, self.app[0], self.app[1], place, self.id, incoming,
                         list(scopes), {"deviceId": "", "operatingSystem": "Windows10", "browser": "Edge 131"})
        self.rec.add(t, "entra", raw)
        self.token = Token(uti, t, t + u.rng.randint(3900, 5400), scopes)
        return self.token

    def login(self, t: float, place: Place) -> Token:
        self.id = new_id(self.user.rng)
        return self._sign_in(t, place, "SignInLogs", "none")

    def refresh(self, t: float, place: Place) -> Token:
        return self._sign_in(t, place, "NonInteractiveUserSignInLogs", "refreshToken")

    def use(self, t: float, place: Place, status: int | None = None, route: Route | None = None) -> dict[str, Any]:
        rng, token = self.user.rng, self.token
        assert token is not None
        denied = status is None and rng.random() < 0.01
        method, uri = rng.choice(GRAPH_DENIED if denied else GRAPH_CALLS)
        if route is not None:
            method, uri = route[0], route[1]
        self.calls += 1
        raw = emit.graph(new_id(rng), t, place, method, uri, status or (403 if denied else 200), BROWSER_AGENT,
                         self.app[0], self.user.id, token.id, list(token.scopes), token.iat)
        self.rec.add(t, "graph", raw)
        return raw

    def claims(self, token: Token, aud: str) -> dict[str, Any]:  # Graph lines carry no JWT claims
        return {}


def session_for(user: User, rec: Records, client: Client | None = None) -> Session:
    if user.idp == "okta":
        return OktaSession(user, rec, HR_PORTAL)
    if user.idp == "entra":
        return EntraSession(user, rec, HR_PORTAL)
    return KeycloakSession(user, rec, client or PORTAL)
