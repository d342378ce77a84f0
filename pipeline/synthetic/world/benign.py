"""Benign activity: working days of employees (web sessions, the mobile app in
the evening, the admin console, AWS sign-ins), travel, and the machines —
service accounts on client credentials, Kubernetes pods, EC2 instances."""

from __future__ import annotations

import math
import random

from pipeline.synthetic.vocabulary import (
    AUTOMATION_AGENT,
    AWS_CLI_AGENT,
    AWS_SDK_AGENT,
    CLUSTER_PREFIX,
    KEYCLOAK_ISSUER,
    NETWORKS,
    ORDERS_API,
    PAYMENTS_API,
    VPC_PREFIX,
)
from pipeline.synthetic.world import emit
from pipeline.synthetic.world.model import Records, User, WorldSpec, new_id
from pipeline.synthetic.world.moves import Whereabouts, flight_egress, relay_egress
from pipeline.synthetic.world.net import Place, place_in, vpn_place
from pipeline.synthetic.world.sessions import (
    ADMIN_CONSOLE,
    HR_PORTAL,
    MOBILE,
    EntraSession,
    KeycloakSession,
    OktaSession,
    Session,
    session_for,
)

CALL_INTERVAL_S = 55.0  # mean gap between API calls of an active user
VPN_LATE_SHARE = 0.5  # work blocks a VPN user starts at home, connecting the VPN a few minutes in
HANDOVER_IN_USE_SHARE = 0.5  # phones leaving home whose app is in use as Wi-Fi drops to the carrier
OKTA_EVENING_SHARE = 0.3  # evenings an Okta user with the HR app (keeps_refresh) checks it again


def user_place(user: User, t: float) -> Place:
    """Where the user's laptop is at ``t``: the VPN egress, home, or the hotel after a trip."""
    trip = user.trip
    if trip is not None and t >= trip.arrive:
        return Place(NETWORKS[trip.network].address(random.Random(user.id)), NETWORKS[trip.network], trip.city)
    if user.vpn:
        return vpn_place(user.vpn, random.Random(user.id))
    return user.home()


def browser_whereabouts(user: User, rec: Records, a: float, b: float) -> Whereabouts:
    """Where the user's browser egresses during [a, b): through Private Relay for relay users
    (the VPN bypasses it), else the laptop's place; a VPN user who starts at home connects
    the VPN a few minutes into the block, in the middle of the session."""
    place = user_place(user, a)
    if user.relay:
        rec.behaviours["private_relay_sessions"] += 1
        return relay_egress(place.country, place.city, a, b, user.rng)
    if place.egress is not None and user.rng.random() < VPN_LATE_SHARE:
        rec.behaviours["vpn_connected_mid_session"] += 1
        return Whereabouts.still(user.home()).then(a + user.rng.uniform(60, 900), place)
    return Whereabouts.still(place)


def drive(session: Session, start: float, end: float, where: Place | Whereabouts, resume: bool = False) -> float:
    """Log in (or refresh on resume), call APIs until ``end``, refreshing before expiry,
    from wherever the device is at each moment; returns when the last call was made."""
    rng = session.user.rng
    path = where if isinstance(where, Whereabouts) else Whereabouts.still(where)
    token = session.refresh(start, path.at(start)) if resume else session.login(start, path.at(start))
    t = last = token.iat
    while True:
        t += min(rng.expovariate(1 / CALL_INTERVAL_S), 900)
        if t >= end:
            return last
        if t > token.exp - 20:
            if rng.random() < 0.02:
                # the client's clock runs behind: it sends the expired token once, gets 401, then refreshes
                t = max(t, token.exp + rng.uniform(2, 25))
                session.use(t, path.at(t), status=401)
                t += 0.3
            token = session.refresh(t, path.at(t))
            t += 0.2
        session.use(t, path.at(t))
        last = t


def simulate_user(user: User, spec: WorldSpec, rec: Records) -> None:
    rng = user.rng
    days = math.ceil(spec.hours / 24) + 1
    for day in range(days):
        midnight = spec.t0 + day * 86400 - user.tz_h * 3600  # local midnight in UTC
        weekday = ((spec.start.weekday() + day) % 7) < 5
        if not weekday and rng.random() > 0.15:
            continue
        morning = midnight + rng.gauss(8.6, 0.7) * 3600
        lunch = morning + rng.uniform(3.0, 4.0) * 3600
        afternoon = lunch + rng.uniform(0.6, 1.1) * 3600
        evening = afternoon + rng.uniform(3.0, 4.5) * 3600
        worked = False
        for a, b in ((morning, lunch), (afternoon, evening)):
            # the first block actually worked that day (the world may begin mid-day) opens the admin tools
            worked = _work_block(user, spec, rec, a, b, first=not worked) or worked
        trip = user.trip
        if trip is not None and midnight <= trip.depart < midnight + 86400:
            if trip.wifi is not None:
                _on_board(user, spec, rec)
            _arrival(user, spec, rec)
        if user.device_key is not None and rng.random() < 0.6:
            _mobile_evening(user, spec, rec, midnight + rng.uniform(19.0, 21.5) * 3600)
        if user.keeps_refresh and rng.random() < OKTA_EVENING_SHARE:
            _okta_evening(user, spec, rec, midnight + rng.uniform(18.5, 22.0) * 3600)


def _clip(user: User, spec: WorldSpec, a: float, b: float) -> tuple[float, float] | None:
    end = min(b, spec.t_end - 60, user.until if user.until is not None else b)
    trip = user.trip
    if trip is not None and a < trip.arrive and b > trip.depart:  # in the air: stop at departure
        end = min(end, trip.depart - 1800)
    if a < spec.t0 or end - a < 300:
        return None
    return a, end


def _work_block(user: User, spec: WorldSpec, rec: Records, a: float, b: float, first: bool) -> bool:
    """One stretch of work; False when it falls outside the world (or the user's time)."""
    rng = user.rng
    span = _clip(user, spec, a, b)
    if span is None:
        return False
    a, b = span
    browser = browser_whereabouts(user, rec, a, b)
    laptop = Whereabouts.still(user_place(user, a)) if user.relay else browser  # the CLI bypasses the relay
    if first and user.admin:
        # Admins open their admin tool first thing (the demo learns privileged scopes for an hour)
        if user.idp == "keycloak":
            admin: Session = KeycloakSession(user, rec, ADMIN_CONSOLE)
        else:
            admin = EntraSession(user, rec, HR_PORTAL, admin_app=True)
        a = drive(admin, a, a + rng.uniform(600, 1500), browser) + rng.uniform(60, 300)
        admin.logout(a - 30, browser.at(a - 30))
    if first and user.engineer:
        _aws_console(user, rec, a, min(b, a + rng.uniform(1800, 5400)), laptop)
    kept = _kept_app_session(user)
    if kept is not None:
        # The HR app redeems the refresh token it kept when the user signed out of Okta, an hour
        # or more ago: no new sign-on, and the app is simply closed at the end.
        rec.behaviours["okta_refresh_after_sign_out"] += 1
        drive(kept, a, b, browser, resume=True)
        return True
    session = session_for(user, rec)
    last = drive(session, a, b, browser)
    if rng.random() < 0.5:
        at = min(last, b) + rng.uniform(1, 30)
        session.logout(at, browser.at(at))
        # signed out: nothing for the laptop to resume, except an Okta app's refresh token
        user.last_session = session if user.keeps_refresh else None
    else:
        user.last_session = session  # the laptop is closed with the session still alive
    return True


def _kept_app_session(user: User) -> OktaSession | None:
    session = user.last_session
    if user.keeps_refresh and isinstance(session, OktaSession) and session.token is not None:
        return session
    return None


def _resume_or_sign_in(user: User, rec: Records, a: float, b: float, where: Whereabouts) -> Session:
    """The laptop's client redeems the refresh token it still holds: Okta and Entra refresh
    tokens outlive hours of sleep; Keycloak's SSO session has idled out, so Keycloak refuses
    and the user signs in again. Returns the session that worked until ``b``."""
    rng = user.rng
    session, user.last_session = user.last_session, None
    if isinstance(session, Session) and session.token is not None:
        if not isinstance(session, KeycloakSession):
            drive(session, a, b, where, resume=True)
            return session
        session.stale_refresh(a, where.at(a))
        a += rng.uniform(5, 40)
    session = session_for(user, rec)
    drive(session, a, b, where)
    return session


def _arrival(user: User, spec: WorldSpec, rec: Records) -> None:
    """An hour or so after landing the user works from the hotel, resuming the laptop's session."""
    rng, trip = user.rng, user.trip
    assert trip is not None
    start = trip.arrive + rng.uniform(0.5, 1.5) * 3600
    span = _clip(user, spec, start, start + rng.uniform(1.0, 3.0) * 3600)
    if span is None:
        return
    a, b = span
    where = browser_whereabouts(user, rec, a, b)
    session = _resume_or_sign_in(user, rec, a, b, where)
    session.logout(b + rng.uniform(1, 30), where.at(b))


def _on_board(user: User, spec: WorldSpec, rec: Records) -> None:
    """On a transatlantic flight the user works on the plane's Wi-Fi, across the handover from
    one side's ground station to the other's (another country within a second); the laptop is
    closed for landing with the session alive, and resumed at the hotel (``_arrival``)."""
    rng, trip = user.rng, user.trip
    assert trip is not None and trip.wifi is not None
    takeoff, landing = trip.depart + 1.5 * 3600, trip.arrive - 1.5 * 3600
    handover = takeoff + (landing - takeoff) * rng.uniform(0.4, 0.6)
    a = max(takeoff + 1800, handover - rng.uniform(0.3, 1.5) * 3600)
    b = min(landing - 1800, handover + rng.uniform(0.3, 1.5) * 3600)
    b = min(b, spec.t_end - 60, user.until if user.until is not None else b)
    if a < spec.t0 or b - a < 600:
        return
    rec.behaviours["flight_on_board_wifi"] += 1
    where = flight_egress(trip.wifi, a, b, handover, rng)
    user.last_session = _resume_or_sign_in(user, rec, a, b, where)


def _okta_evening(user: User, spec: WorldSpec, rec: Records, start: float) -> None:
    """An Okta user checks an expense in the HR app at home hours after signing out of Okta:
    the app redeems its refresh token (Okta refresh tokens outlive the sign-on session)."""
    kept = _kept_app_session(user)
    span = _clip(user, spec, start, start + user.rng.uniform(300, 1200))
    if kept is None or span is None or (user.trip is not None and start >= user.trip.depart):
        return
    a, b = span
    rec.behaviours["okta_refresh_after_sign_out"] += 1
    drive(kept, a, b, browser_whereabouts(user, rec, a, b), resume=True)


def _mobile_evening(user: User, spec: WorldSpec, rec: Records, start: float) -> None:
    """The phone app on home wifi; some evenings the user leaves and carries on over the
    carrier's network (the same token and refresh chain, new addresses): seconds later when
    Wi-Fi drops at the door with the app open, else at the next screen minutes later."""
    rng = user.rng
    span = _clip(user, spec, start, start + rng.uniform(600, 2400))
    if span is None or (user.trip is not None and start >= user.trip.depart):
        return
    a, b = span
    session = KeycloakSession(user, rec, MOBILE)
    home = user.home()
    if rng.random() < 0.4:
        switch = a + (b - a) * rng.uniform(0.3, 0.6)
        last = drive(session, a, switch, home)
        carrier = place_in(user.mobile_net, rng, user.city)
        if rng.random() < HANDOVER_IN_USE_SHARE:
            walking = last + rng.uniform(2, 40)  # Wi-Fi drops at the door while the app is open
            rec.behaviours["phone_handover_in_use"] += 1
        else:
            walking = last + rng.uniform(150, 600)  # the app is idle until the next screen
        _continue(session, walking, b, carrier)
    else:
        drive(session, a, b, home)


def _continue(session: Session, start: float, end: float, place: Place) -> None:
    rng = session.user.rng
    token = session.token
    assert token is not None
    t = start
    while t < end:
        if t > token.exp - 20:
            token = session.refresh(t, place)
            t += 0.2
        session.use(t, place)
        t += min(rng.expovariate(1 / CALL_INTERVAL_S), 900)


def _aws_console(user: User, rec: Records, a: float, b: float, where: Whereabouts) -> None:
    """An engineer federates into AWS (SAML) and works with the CLI from the laptop."""
    rng = user.rng
    t = a
    while t < b:
        place = where.at(t)
        key = "ASIA" + new_id(rng).replace("-", "")[:16].upper()
        created = t
        rec.add(t, "cloudtrail", emit.trail_assume_role_with_saml(new_id(rng), t, "engineer", user.login, key,
                                                                   place.ip, 3600))
        stop = min(b, t + 3500)
        while True:
            t += rng.expovariate(1 / 150)
            if t >= stop:
                break
            source, name, params = rng.choice(_ENGINEER_CALLS)
            error = "AccessDenied" if rng.random() < 0.03 else None
            caller, agent = where.at(t).ip, AWS_CLI_AGENT
            if rng.random() < 0.1:  # an Athena query reads S3 with the engineer's credentials (forward access)
                source, name, params = "s3.amazonaws.com", "GetObject", {"bucketName": "acme-athena-results"}
                caller = agent = "athena.amazonaws.com"
            rec.add(t, "cloudtrail", emit.trail_call(new_id(rng), t, source, name, "engineer", user.login, key,
                                                     created, caller, agent, params, error))
        t = stop + 1


_ENGINEER_CALLS = (
    ("ec2.amazonaws.com", "DescribeInstances", None),
    ("s3.amazonaws.com", "ListBuckets", None),
    ("s3.amazonaws.com", "GetObject", {"bucketName": "acme-build-artifacts", "key": "release/app.tar.gz"}),
    ("logs.amazonaws.com", "FilterLogEvents", {"logGroupName": "/acme/orders-api"}),
    ("ecs.amazonaws.com", "DescribeServices", {"cluster": "prod"}),
)


# -- machines ---------------------------------------------------------------------
SERVICE_CLIENTS = (
    # client id, scopes, route, host network
    ("billing-batch", ("orders:read", "payments:read"), ("GET", "/payments", "payments:read", PAYMENTS_API), "hetzner"),
    ("report-exporter", ("orders:read",), ("GET", "/orders", "orders:read", ORDERS_API), "aws-fra"),
    ("ci-deployer", ("orders:read", "orders:write"), ("POST", "/orders/import", "orders:write", ORDERS_API), "ovh"),
)


def simulate_service(index: int, spec: WorldSpec, rec: Records) -> None:
    """A service account on client credentials: a fresh token every 5 minutes, steady calls."""
    client, scopes, route, net = SERVICE_CLIENTS[index % len(SERVICE_CLIENTS)]
    rng = random.Random(f"{spec.seed}:service:{index}")
    account = new_id(rng)
    place = place_in(net, rng)
    t = spec.t0 + rng.uniform(0, 300)
    while t < spec.t_end - 60:
        token_id = new_id(rng)
        rec.add(t, "keycloak", emit.keycloak(new_id(rng), t, "CLIENT_LOGIN", client, account, None, place.ip, {
            "token_id": token_id, "grant_type": "client_credentials", "scope": " ".join(scopes),
            "client_auth_method": "client-secret", "username": f"service-account-{client}"}))
        exp = t + 300
        u = t
        while True:
            u += rng.expovariate(1 / 40)
            if u >= exp - 5 or u >= spec.t_end - 60:
                break
            claims = {"jti": token_id, "sub": account, "azp": client, "scope": " ".join(scopes),
                      "iss": KEYCLOAK_ISSUER, "aud": route[3], "iat": int(t), "exp": int(exp)}
            status = 503 if rng.random() < 0.003 else (201 if route[0] == "POST" else 200)
            rec.add(u, "gateway", emit.gateway(f"gw-{new_id(rng)}", u, place, route[0], route[1], status,
                                               AUTOMATION_AGENT, claims, route[2]))
        t = u + rng.uniform(1, 20)


def simulate_pod(index: int, spec: WorldSpec, rec: Records) -> None:
    """A pod with a bound service-account token that the kubelet renews every ~48 minutes."""
    rng = random.Random(f"{spec.seed}:pod:{index}")
    namespace, account = rng.choice((("payments", "ledger"), ("orders", "orders-worker"), ("reports", "exporter")))
    node = f"node-{rng.randint(1, 6)}"
    node_ip = f"{CLUSTER_PREFIX}.0.{node[5:]}"
    pod = f"{account}-{new_id(rng)[:10]}-{new_id(rng)[:5]}"
    pod_uid, account_uid, pod_ip = new_id(rng), new_id(rng), f"{CLUSTER_PREFIX}.{rng.randint(1, 60)}.{rng.randint(2, 250)}"
    t = spec.t0 + rng.uniform(0, 600)
    while t < spec.t_end - 60:
        jti = new_id(rng)
        rec.add(t, "k8s", emit.k8s_token_request(new_id(rng), t, namespace, account, pod, pod_uid, node, node_ip,
                                                 jti, 3607))
        renew = t + 2880 + rng.uniform(0, 60)
        u = t
        while True:
            u += rng.expovariate(1 / 90)
            if u >= renew or u >= spec.t_end - 60:
                break
            verb, resource, name = rng.choice((("get", "configmaps", f"{account}-config"), ("list", "secrets", None),
                                               ("update", "leases", account)))
            code = 403 if rng.random() < 0.004 else 200
            rec.add(u, "k8s", emit.k8s_call(new_id(rng), u, namespace, account, account_uid, pod, pod_uid, node, jti,
                                            pod_ip, f"{account}/1.4", verb, resource, name, code))
        t = renew


def simulate_instance(index: int, spec: WorldSpec, rec: Records) -> None:
    """An EC2 instance: instance-profile credentials renewed hourly, API calls from its public address."""
    rng = random.Random(f"{spec.seed}:ec2:{index}")
    instance = f"i-0{new_id(rng).replace('-', '')[:16]}"
    ip = NETWORKS["aws-fra"].address(rng)
    private_ip = f"{VPC_PREFIX}.{rng.randint(1, 63)}.{rng.randint(4, 250)}"
    t = spec.t0 + rng.uniform(0, 900)
    while t < spec.t_end - 60:
        key = "ASIA" + new_id(rng).replace("-", "")[:16].upper()
        rec.add(t, "cloudtrail", emit.trail_assume_role_by_service(new_id(rng), t, "app-role", instance, key, 21600))
        renew = t + 3600
        u = t
        while True:
            u += rng.expovariate(1 / 120)
            if u >= renew or u >= spec.t_end - 60:
                break
            source, name, params = rng.choice((
                ("s3.amazonaws.com", "GetObject", {"bucketName": "acme-orders", "key": "batch/in.json"}),
                ("s3.amazonaws.com", "PutObject", {"bucketName": "acme-orders", "key": "batch/out.json"}),
                ("sqs.amazonaws.com", "ReceiveMessage", {"queueUrl": "https://sqs.eu-central-1.amazonaws.com/q"}),
                ("kms.amazonaws.com", "Decrypt", None)))
            # S3 is reached through the VPC's gateway endpoint: CloudTrail logs the private address
            via_endpoint = source == "s3.amazonaws.com" and rng.random() < 0.5
            raw = emit.trail_call(new_id(rng), u, source, name, "app-role", instance, key, t,
                                  private_ip if via_endpoint else ip, AWS_SDK_AGENT, params)
            if via_endpoint:
                raw["vpcEndpointId"] = "vpce-0a1b2c3d4e5f60718"
            rec.add(u, "cloudtrail", raw)
        t = renew
