"""Injected attacks, one episode each, with their ground truth.

Each episode plays the victim's legitimate activity around the attack (a session
of a real member of the population, who also has an ordinary working day), then
the attacker's steps in the vendor's own lines. ``Label.keys`` are the ids the
alert must name: the token (or key, or session) the attack is about. An attack
is designed to raise exactly its rule and nothing else (``tests/world``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

from pipeline.synthetic.vocabulary import (
    ATTACKER_KUBECTL_AGENT,
    ATTACKER_SCRIPT_AGENT,
    AWS_CLI_AGENT,
    AWS_SDK_AGENT,
    BARE_BROWSER_AGENT,
    CLUSTER_PREFIX,
    HR_API,
    NETWORKS,
    ORDERS_ADMIN_SCOPE,
    ORDERS_API,
    PAYMENTS_API,
)
from pipeline.synthetic.world import emit
from pipeline.synthetic.world.model import Label, Records, User, WorldSpec, new_id, short_id
from pipeline.synthetic.world.net import HOME_BY_COUNTRY, Place, place_in
from pipeline.synthetic.world.population import build_users
from pipeline.synthetic.world.sessions import (
    ADMIN_CONSOLE,
    HR_PORTAL,
    MOBILE,
    PORTAL,
    KeycloakSession,
    OktaSession,
)

Episode = Callable[["Injector", User, float], Label]


class Injector:
    def __init__(self, spec: WorldSpec, rec: Records) -> None:
        self.spec, self.rec = spec, rec
        self.rng = random.Random(f"{spec.seed}:attacks")

    def attacker_residential(self, victim: User) -> Place:
        """A residential proxy in the victim's country, on another ISP than the victim's."""
        nets = [n for n in HOME_BY_COUNTRY[victim.country] if NETWORKS[n].as_org != NETWORKS[victim.home_net].as_org]
        return place_in(self.rng.choice(nets), self.rng)

    def label(self, attack: str, rule: str, victim: User, keys: tuple[str, ...], t: float, source: str,
              description: str) -> Label:
        return Label(attack, rule, description, victim.id, keys, emit.iso(t), source)

    def uses(self, session: KeycloakSession | OktaSession, start: float, end: float, place: Place,
             every: float = 25.0) -> float:
        """The victim's ordinary calls, refreshing before the access token expires."""
        t = start
        while t < end:
            token = session.token
            if token is not None and t > token.exp - 20:
                session.refresh(t, place)
                t += 0.2
            session.use(t, place)
            t += self.rng.uniform(every * 0.6, every * 1.4)
        return t


# -- replay -----------------------------------------------------------------------
def refresh_reuse(inj: Injector, v: User, t: float) -> Label:
    s = KeycloakSession(v, inj.rec, PORTAL)
    home = v.home()
    first = s.login(t - 1200, home)
    inj.uses(s, t - 1190, t - 610, home)
    stolen = first.refresh_id  # rotated by the victim's first refresh, some 15 minutes before the theft
    inj.uses(s, t - 600, t + 300, home)
    thief = place_in("tor", inj.rng)
    s.keycloak_event(t, "REFRESH_TOKEN_ERROR", thief,
                     {"refresh_token_id": stolen or "", "grant_type": "refresh_token",
                      "reason": "Maximum allowed refresh token reuse exceeded"},
                     error="invalid_token")
    return inj.label("refresh_token_replay", "replay.refresh_reuse", v, (stolen or "",), t, "keycloak",
                     "a refresh token the victim's client rotated earlier is redeemed again from a Tor exit")


def okta_reported_reuse(inj: Injector, v: User, t: float) -> Label:
    s = OktaSession(v, inj.rec, HR_PORTAL)
    home = v.home()
    token = s.login(t - 1800, home)
    inj.uses(s, t - 1790, t - 60, home, every=60)
    thief = place_in("do-de", inj.rng)
    s.okta_event(t, "app.oauth2.as.token.detect_reuse", thief, {"grantType": "refresh_token"},
                 [emit.okta_token_target("refresh_token", token.refresh_id or "", t + 86400, v.id)])
    return inj.label("okta_refresh_reuse_verdict", "replay.refresh_reuse", v,
                     (token.refresh_id or "", f"family:{s.id}"), t, "okta",
                     "Okta reports reuse of a rotated refresh token, redeemed from a DigitalOcean droplet")


def concurrent_use(inj: Injector, v: User, t: float) -> Label:
    s = OktaSession(v, inj.rec, HR_PORTAL)
    home = v.home()
    token = s.login(t - 900, home)
    inj.uses(s, t - 890, t + 600, home, every=30)
    proxy = inj.attacker_residential(v)
    for dt in (12.0, 40.0, 95.0):
        s.use(t + dt, proxy, route=("GET", "/expenses", "expenses:read", HR_API))
    return inj.label("stolen_session_token_in_parallel", "replay.concurrent_use", v, (token.id,), t, "okta+gateway",
                     f"an infostealer's access token is used from {proxy.network.as_org} while the victim is "
                     f"active on {NETWORKS[v.home_net].as_org}")


def dpop_mismatch(inj: Injector, v: User, t: float) -> Label:
    s = KeycloakSession(v, inj.rec, MOBILE)
    home = v.home()
    token = s.login(t - 120, home)
    inj.uses(s, t - 110, t - 20, home)
    proxy = inj.attacker_residential(v)
    claims = s.claims(token, PAYMENTS_API)
    inj.rec.add(t, "gateway", emit.gateway(f"gw-{new_id(inj.rng)}", t, proxy, "POST", "/payments", 201,
                                           ATTACKER_SCRIPT_AGENT, claims, "payments:write",
                                           short_id(inj.rng, 43)))
    return inj.label("dpop_token_replayed_with_other_key", "replay.binding_mismatch", v, (token.id,), t,
                     "keycloak+gateway", "a DPoP-bound mobile token is accepted with a proof from another key")


def ec2_credential_exfiltration(inj: Injector, v: User, t: float) -> Label:
    rng = inj.rng
    instance = f"i-0{new_id(rng).replace('-', '')[:16]}"
    key = "ASIA" + new_id(rng).replace("-", "")[:16].upper()
    issued = t - 1500
    inj.rec.add(issued, "cloudtrail", emit.trail_assume_role_by_service(new_id(rng), issued, "app-role", instance,
                                                                         key, 21600))
    ip = NETWORKS["aws-fra"].address(rng)
    for u in range(4):
        when = issued + 120 + u * 300
        inj.rec.add(when, "cloudtrail", emit.trail_call(new_id(rng), when, "s3.amazonaws.com", "GetObject", "app-role",
                                                        instance, key, issued, ip, AWS_SDK_AGENT,
                                                        {"bucketName": "acme-orders", "key": "batch/in.json"}))
    thief = place_in("hetzner", rng)
    inj.rec.add(t, "cloudtrail", emit.trail_call(new_id(rng), t, "s3.amazonaws.com", "ListBuckets", "app-role",
                                                 instance, key, issued, thief.ip, AWS_CLI_AGENT, None))
    return inj.label("instance_credentials_used_outside_aws", "replay.binding_mismatch", v, (key,), t, "cloudtrail",
                     "EC2 instance-profile credentials (SSRF to the metadata API) are used from a Hetzner server")


def pod_token_theft(inj: Injector, v: User, t: float) -> Label:
    rng = inj.rng
    pod, pod_uid, account_uid, jti = f"ledger-{new_id(rng)[:10]}-x2x4q", new_id(rng), new_id(rng), new_id(rng)
    issued = t - 1200
    inj.rec.add(issued, "k8s", emit.k8s_token_request(new_id(rng), issued, "payments", "ledger", pod, pod_uid,
                                                       "node-3", f"{CLUSTER_PREFIX}.0.3", jti, 3607))
    for u in range(5):
        when = issued + 60 + u * 200
        inj.rec.add(when, "k8s", emit.k8s_call(new_id(rng), when, "payments", "ledger", account_uid, pod, pod_uid,
                                               "node-3", jti, f"{CLUSTER_PREFIX}.7.41", "ledger/1.4", "get", "configmaps",
                                               "ledger-config", 200))
    thief = place_in("do-de", rng)
    inj.rec.add(t, "k8s", emit.k8s_call(new_id(rng), t, "payments", "ledger", account_uid, pod, pod_uid, "node-3",
                                        jti, thief.ip, ATTACKER_KUBECTL_AGENT, "list", "secrets", None, 200))
    return inj.label("pod_token_used_outside_its_pod", "replay.binding_mismatch", v, (f"JTI={jti}", jti), t, "k8s",
                     "a pod's service-account token, read from a compromised container, is used with kubectl "
                     "from a VPS")


def duplicate_request(inj: Injector, v: User, t: float) -> Label:
    s = KeycloakSession(v, inj.rec, PORTAL)
    home = v.home()
    token = s.login(t - 100, home)
    inj.uses(s, t - 90, t - 5, home)
    first = s.use(t, home, route=("GET", "/payments/8812", "payments:read", PAYMENTS_API))
    replay = dict(first, timestamp=emit.iso(t + 45))
    inj.rec.add(t + 45, "gateway", replay)
    return inj.label("captured_request_replayed", "replay.duplicate_request", v, (token.id,), t, "gateway",
                     "a captured request is replayed 45 s later with the same request id")


# -- geo ----------------------------------------------------------------------------
def session_hijack_far_away(inj: Injector, v: User, t: float) -> Label:
    s = OktaSession(v, inj.rec, HR_PORTAL)
    home = v.home()
    s.login(t - 2400, home)
    inj.uses(s, t - 2390, t - 1500, home, every=60)
    far = place_in("starhub", inj.rng)
    stolen = s.refresh(t, far)  # the attacker's refresh in the victim's Okta session, from Singapore
    inj.uses(s, t + 30, t + 200, far, every=50)
    return inj.label("session_used_from_another_continent", "geo_divergence.impossible_travel", v,
                     (stolen.id, stolen.refresh_id or "", s.id), t, "okta+gateway",
                     "the victim's Okta session refreshes from Singapore 25 minutes after activity in Germany")


def hosting_divergence(inj: Injector, v: User, t: float) -> Label:
    s = KeycloakSession(v, inj.rec, PORTAL)
    home = v.home()
    token = s.login(t - 180, home)
    inj.uses(s, t - 170, t - 80, home)
    vps = place_in("do-de", inj.rng)
    s.use(t, vps, route=("GET", "/orders", "orders:read", ORDERS_API))
    s.use(t + 30, vps, route=("GET", "/payments/77", "payments:read", PAYMENTS_API))
    return inj.label("token_used_from_vps", "geo_divergence.issue_use_divergence", v, (token.id,), t,
                     "keycloak+gateway", "a token issued at the victim's home is used from a DigitalOcean droplet")


# -- scope ----------------------------------------------------------------------------
def scope_not_granted(inj: Injector, v: User, t: float) -> Label:
    s = KeycloakSession(v, inj.rec, PORTAL)
    home = v.home()
    token = s.login(t - 120, home)
    inj.uses(s, t - 110, t - 5, home)
    s.use(t, home, status=204, route=("DELETE", "/orders/4711", ORDERS_ADMIN_SCOPE, ORDERS_API))
    return inj.label("route_not_enforcing_scope", "scope_escalation.scope_not_granted", v, (token.id,), t, "gateway",
                     "DELETE /orders requiring orders:admin is accepted with a token granted orders:read")


def grant_widening(inj: Injector, v: User, t: float) -> Label:
    s = KeycloakSession(v, inj.rec, PORTAL)
    home = v.home()
    token = s.login(t - 300, home)
    inj.uses(s, t - 290, t - 10, home)
    wider = replace(token, scopes=(*token.scopes, "orders:write"))
    s.token = wider
    new = s.refresh(t, home)
    return inj.label("refresh_widens_scope", "scope_escalation.grant_widening", v, (new.refresh_id or "", new.id), t,
                     "keycloak", "a refresh returns orders:write, beyond the original grant")


def new_privileged_scope(inj: Injector, v: User, t: float) -> Label:
    s = KeycloakSession(v, inj.rec, PORTAL)
    home = v.home()
    s.login(t - 9000, home)
    inj.uses(s, t - 8990, t - 8400, home, every=60)
    admin = KeycloakSession(v, inj.rec, ADMIN_CONSOLE)
    token = admin.login(t, home)
    return inj.label("first_admin_scope", "scope_escalation.new_privileged_scope", v,
                     (token.id, token.refresh_id or ""), t, "keycloak",
                     "a user who never held orders:admin signs in to the admin console with it")


# -- post-revocation ----------------------------------------------------------------------------
def use_after_okta_revoke(inj: Injector, v: User, t: float) -> Label:
    s = OktaSession(v, inj.rec, HR_PORTAL)
    home = v.home()
    token = s.login(t - 1500, home)
    inj.uses(s, t - 1490, t - 700, home, every=60)
    s.okta_event(t - 600, "app.oauth2.as.token.revoke", home, {"clientAuthType": "client_secret_basic"},
                 [emit.okta_token_target("access_token", token.id, token.exp, v.id)])
    thief = inj.attacker_residential(v)
    s.use(t, thief, route=("GET", "/hr/me", "hr:read", HR_API))
    return inj.label("revoked_token_still_accepted", "post_revocation_use.after_revocation", v, (token.id,), t,
                     "okta+gateway", "an access token revoked at Okta 10 minutes earlier is accepted by the HR API")


def use_after_logout(inj: Injector, v: User, t: float) -> Label:
    s = KeycloakSession(v, inj.rec, PORTAL)
    home = v.home()
    token = s.login(t - 170, home)
    inj.uses(s, t - 160, t - 130, home)
    s.logout(t - 120, home)
    s.use(t, home, route=("GET", "/orders", "orders:read", ORDERS_API))
    return inj.label("token_used_after_logout", "post_revocation_use.after_revocation", v, (token.id, s.id), t,
                     "keycloak+gateway", "an access token is accepted 2 minutes after its session logged out")


def use_after_disable(inj: Injector, v: User, t: float) -> Label:
    s = OktaSession(v, inj.rec, HR_PORTAL)
    home = v.home()
    token = s.login(t - 1800, home)
    inj.uses(s, t - 1790, t - 1300, home, every=60)
    admin = {"id": "00uadm1n" + short_id(inj.rng, 12), "type": "User", "alternateId": "it-admin@acme.example",
             "displayName": "IT Admin"}
    office = place_in("telekom", inj.rng)
    raw = emit.okta(new_id(inj.rng), t - 900, "user.lifecycle.deactivate", admin, office, BARE_BROWSER_AGENT, None, {},
                    [{"id": v.id, "type": "User", "alternateId": v.login}], None)
    inj.rec.add(t - 900, "okta", raw)
    s.use(t, home, route=("GET", "/expenses", "expenses:read", HR_API))
    return inj.label("leaver_uses_token_after_deactivation", "post_revocation_use.after_disable", v, (token.id,), t,
                     "okta+gateway", "a deactivated employee's access token is accepted 15 minutes later")


def use_after_expiry(inj: Injector, v: User, t: float) -> Label:
    s = KeycloakSession(v, inj.rec, PORTAL)
    home = v.home()
    token = s.login(t - 7500, home)
    inj.uses(s, t - 7490, t - 7300, home)
    thief = inj.attacker_residential(v)
    s.token = token
    s.use(t, thief, route=("GET", "/orders", "orders:read", ORDERS_API))
    return inj.label("expired_token_accepted", "post_revocation_use.after_expiry", v, (token.id,), t, "gateway",
                     "a token that expired two hours ago, taken from a log file, is accepted")


# (episode, identity provider of the victim, whether the episode disables the victim)
EPISODES: tuple[tuple[Episode, str, bool], ...] = (
    (refresh_reuse, "keycloak", False),
    (okta_reported_reuse, "okta", False),
    (concurrent_use, "okta", False),
    (dpop_mismatch, "keycloak", False),
    (ec2_credential_exfiltration, "keycloak", False),
    (pod_token_theft, "keycloak", False),
    (duplicate_request, "keycloak", False),
    (session_hijack_far_away, "okta", False),
    (hosting_divergence, "keycloak", False),
    (scope_not_granted, "keycloak", False),
    (grant_widening, "keycloak", False),
    (new_privileged_scope, "keycloak", False),
    (use_after_okta_revoke, "okta", False),
    (use_after_logout, "keycloak", False),
    (use_after_disable, "okta", True),
    (use_after_expiry, "keycloak", False),
)


def victims(spec: WorldSpec) -> list[User]:
    """One victim per episode: an ordinary employee in Germany (home broadband, no VPN,
    not travelling), drawn from a second population so the main one keeps its shape."""
    pool = build_users(replace(spec, users=max(200, spec.users), seed=spec.seed * 7919 + 1))
    chosen: list[User] = []
    for _, idp, _ in EPISODES:
        for user in pool:
            if (user.idp == idp and user.country == "DE" and user.vpn is None and user.trip is None
                    and not user.admin and user not in chosen):
                chosen.append(user)
                break
        else:
            raise RuntimeError(f"no victim for an episode of {idp}")
    for user in chosen:
        if user.idp == "keycloak":  # the DPoP episode's victim needs the mobile app
            user.device_key = user.device_key or short_id(user.rng, 43)
    return chosen


def schedule(spec: WorldSpec) -> list[float]:
    """When each episode strikes: spread over the second part of the world, in working hours."""
    lo = spec.t0 + max(2.6 * 3600, 0.35 * spec.hours * 3600)
    hi = spec.t_end - 1.2 * 3600
    if hi <= lo:
        raise ValueError("the world must last at least 6 hours to inject attacks")
    n = len(EPISODES)
    return [lo + (hi - lo) * (i + 0.5) / n for i in range(n)]
