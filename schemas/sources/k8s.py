"""Kubernetes audit events (``audit.k8s.io/v1`` ``Event``, one per line as the log backend writes them).

The managed control planes export the same events in their clouds' envelopes; ``k8s_aks``
(Azure diagnostic settings, Log Analytics) and ``k8s_gke`` (Cloud Audit Logs) unwrap them
and map them with this class, so every shape gives the events described here.

Two kinds of record matter, both only at the terminal stage of a request
(``ResponseComplete``, or ``Panic`` when the handler crashed); the earlier stages
(``RequestReceived``, ``ResponseStarted``) repeat the same request and are skipped as
``stage:<stage>``:

- **Issuance** — a TokenRequest (``create serviceaccounts/token``) → ``issued``. The
  token id is the annotation ``authentication.kubernetes.io/issued-credential-id``,
  kept whole (``"JTI=<uuid>"``) exactly as uses name it in
  ``user.extra["authentication.kubernetes.io/credential-id"]``. A token bound to a Pod
  gets ``token.binding = pod:<pod uid>`` and ``session_id = "pod:<pod uid>"`` (every token
  the kubelet rotates for one pod shares it). ``client_id`` is the requesting user (the
  kubelet's ``system:node:<node>``, or whoever ran ``kubectl create token``); the address
  is the requester's (the node's). ``responseObject.status.token`` is never read.
- **Use** — any request authenticated with a service-account token that carries a JTI
  credential id → ``used``. The pod extras (``pod-name``/``pod-uid``) are claims inside
  the token, not proof of where the caller is: they give ``token.binding`` and
  ``session_id`` (as at issuance) and ``client_id = "pod:<namespace>/<pod name>"`` (the
  workload the token was issued to, as ``azp`` names an OAuth client); whether the caller
  really is that pod is the replay detector's address check.

- **Deletion** — a completed ``delete`` of a pod → ``revoked`` of its session
  ``pod:<uid>``; of a service account → ``principal_disabled`` of its subject
  (``k8s_deletions``: where the uid comes from, and what happens at ``Metadata`` level).

Caller address: the LAST entry of ``sourceIPs`` that is not one of the operator's
trusted proxies (``common.client_address``), the connection's peer. The earlier
entries come from ``X-Forwarded-For``/``X-Real-Ip``, which any client can set (the
Kubernetes docs say so): taking the first would let a thief replay a pod's token from
anywhere while claiming the pod's address. The apiserver is fronted by L4 balancers
(client-certificate auth needs TLS to end at it), so the peer is the real client except
behind an impersonating L7 proxy, where the peer is the proxy, whose own token this is.

Expiry: ``status.expirationTimestamp`` (else ``requestReceivedTimestamp`` +
``spec.expirationSeconds``), except for the kubelet's default 3607 s pod token: with
``--service-account-extend-token-expiration`` (the default) the apiserver mints it valid
for up to a year while still reporting 3607 s, and marks uses past 3607 s with the
``authentication.k8s.io/stale-token`` annotation instead of rejecting them. The adapter
cannot see that flag, so such tokens get the sound upper bound: issue time + 365 days.

Not tracked (skipped and counted): requests without a JTI credential id (other users,
x509 client certificates, legacy secret tokens, anonymous) as ``"<verb> <resource>"``;
TokenRequests without the credential-id annotation (Kubernetes < 1.30) as
``tokenrequest-without-credential-id``; failed TokenRequests as ``tokenrequest-failed``;
older audit API versions as ``apiVersion:<version>``.

``event_id`` is ``k8s:<auditID>@<requestReceivedTimestamp>``: the apiserver takes
``auditID`` from the client's ``Audit-ID`` header when one is sent, so on its own it
would let a client make its requests look like redeliveries of one another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from schemas.events import (
    Binding,
    CanonicalEvent,
    EventKind,
    Network,
    Outcome,
    Request,
    Subject,
    TokenRef,
    TokenType,
)
from schemas.redaction import redact_url
from schemas.sources.base import AdapterContext, InvalidRecord, UnsupportedEventType
from schemas.sources.common import MAX_RESOURCE, MAX_USER_AGENT, Memo, client_address, explain, invalid
from schemas.sources.k8s_deletions import SA_PREFIX, SKIPPED_BODY, deletion_event, is_deletion

API_VERSION = "audit.k8s.io/v1"
ISSUED_ID = "authentication.kubernetes.io/issued-credential-id"
CREDENTIAL_ID = "authentication.kubernetes.io/credential-id"
POD_NAME = "authentication.kubernetes.io/pod-name"
POD_UID = "authentication.kubernetes.io/pod-uid"
DECISION = "authorization.k8s.io/decision"
STALE_TOKEN = "authentication.k8s.io/stale-token"
KUBELET_DEFAULT_SECONDS = 3607  # WarnOnlyBoundTokenExpirationSeconds: may be extended server-side
EXTENDED_EXPIRY = timedelta(days=365)  # ExpirationExtensionSeconds, the cap of any extension
_LONG_AUDIT_ID = 128  # longer (client-chosen) audit ids are hashed into the event id
_KNOWN_VERBS = frozenset({
    "get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "proxy",
    "post", "put", "head", "options",
})

_ID = Field(default=None, max_length=512)


class _Lenient(BaseModel):
    # "ignore", not "allow": unknown keys (responseObject.status.token among them) are not kept.
    model_config = ConfigDict(extra="ignore")


class AuditUser(_Lenient):
    username: str | None = _ID
    uid: str | None = _ID
    extra: dict[str, list[str]] | None = None


class ObjectRef(_Lenient):
    uid: str | None = _ID
    resource: str | None = _ID
    subresource: str | None = _ID
    namespace: str | None = _ID
    name: str | None = _ID
    apiGroup: str | None = _ID


class ResponseStatus(_Lenient):
    code: int | None = Field(default=None, ge=0, le=999)


class AuditEvent(_Lenient):
    auditID: str = Field(min_length=1, max_length=4096)
    stage: Literal["RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"]
    verb: str = Field(min_length=1, max_length=64)
    requestURI: str | None = Field(default=None, max_length=MAX_RESOURCE)
    user: AuditUser | None = None
    sourceIPs: list[str] | None = None  # a chain: common.client_address reads its right end
    userAgent: str | None = Field(default=None, max_length=MAX_USER_AGENT)
    objectRef: ObjectRef | None = None
    responseStatus: ResponseStatus | None = None
    requestReceivedTimestamp: datetime
    annotations: dict[str, str] | None = None


class BoundObjectRef(_Lenient):
    kind: str | None = _ID
    name: str | None = _ID
    uid: str | None = _ID


class TokenRequestSpec(_Lenient):
    audiences: list[str] | None = Field(default=None, max_length=64)
    expirationSeconds: int | None = Field(default=None, ge=1, le=2**32)
    boundObjectRef: BoundObjectRef | None = None


class TokenRequestStatus(_Lenient):
    expirationTimestamp: datetime | None = None


class TokenRequestBody(_Lenient):
    spec: TokenRequestSpec | None = None
    status: TokenRequestStatus | None = None


class K8sAuditFormat:
    name: ClassVar[str] = "k8s"
    match_keys: ClassVar[frozenset[str]] = frozenset({"apiVersion"})  # with kind, also a canonical line's

    def __init__(self) -> None:
        # Callers, subjects and outcomes repeat across thousands of lines: build each once.
        self._tokens: Memo[tuple[str, str | None], TokenRef] = Memo()
        self._subjects: Memo[str, Subject] = Memo()
        self._networks: Memo[tuple[str | None, str | None], Network] = Memo()
        self._outcomes: dict[tuple[int | None, bool, bool, bool], Outcome] = {}

    def matches(self, raw: Mapping[str, Any]) -> bool:
        api = raw.get("apiVersion")
        return raw.get("kind") == "Event" and isinstance(api, str) and api.startswith("audit.k8s.io/")

    def to_events(self, raw: Mapping[str, Any], ctx: AdapterContext) -> list[CanonicalEvent]:
        if raw.get("apiVersion") != API_VERSION:
            raise UnsupportedEventType(f"apiVersion:{str(raw.get('apiVersion'))[:40]}")
        stage = raw.get("stage")
        if stage == "RequestReceived" or stage == "ResponseStarted":
            raise UnsupportedEventType(f"stage:{stage}")  # before validation: often half the log
        try:
            rec = AuditEvent.model_validate(raw)
        except ValidationError as exc:
            raise invalid("k8s: ", exc) from None
        time = rec.requestReceivedTimestamp
        if time.tzinfo is None:
            raise InvalidRecord("k8s: requestReceivedTimestamp has no timezone")
        time = time.astimezone(timezone.utc)
        base_id = f"k8s:{_audit_key(rec.auditID)}@{time.isoformat(timespec='microseconds')[:-6]}Z"
        credential = _credential_id(rec.user)
        try:
            if _is_token_request(rec):
                if credential is None:
                    return [self._issued(rec, raw, base_id, time, ctx)]
                # A workload minting tokens with its own token: a use, and an issuance if one was made.
                used = self._used(rec, credential, f"{base_id}#used", time, ctx)
                try:
                    return [used, self._issued(rec, raw, base_id, time, ctx)]
                except UnsupportedEventType:
                    return [used]
            if is_deletion(rec):
                return self._deletion(rec, raw, credential, base_id, time, ctx)
            if credential is None:
                raise UnsupportedEventType(_skip_label(rec))
            return [self._used(rec, credential, base_id, time, ctx)]
        except ValidationError as exc:
            raise InvalidRecord(f"k8s: {explain(exc)}") from None

    # -- issuance --------------------------------------------------------------------
    def _issued(
        self, rec: AuditEvent, raw: Mapping[str, Any], event_id: str, time: datetime, ctx: AdapterContext
    ) -> CanonicalEvent:
        code = rec.responseStatus.code if rec.responseStatus is not None else None
        if rec.stage == "Panic" or (code is not None and code >= 400):
            raise UnsupportedEventType("tokenrequest-failed")  # nothing was minted, or never delivered
        token_id = (rec.annotations or {}).get(ISSUED_ID)
        if not token_id:
            raise UnsupportedEventType("tokenrequest-without-credential-id")
        if len(token_id) > 512:
            raise InvalidRecord(f"k8s: annotations.{ISSUED_ID}: longer than 512 characters")
        request = _token_request(raw.get("requestObject"), "requestObject")
        response = _token_request(raw.get("responseObject"), "responseObject")
        spec = (request.spec if request else None) or (response.spec if response else None)
        bound = spec.boundObjectRef if spec else None
        pod_uid = bound.uid if bound is not None and bound.kind == "Pod" and bound.uid else None
        obj = rec.objectRef
        assert obj is not None  # _is_token_request checked it
        if not obj.namespace or not obj.name:
            raise InvalidRecord("k8s: objectRef.namespace/name: missing on a TokenRequest")
        status = response.status if response else None
        expires = _expiry(time, spec, status.expirationTimestamp if status else None, bound)
        user = rec.user
        return CanonicalEvent(
            event_id=event_id,
            kind=EventKind.ISSUED,
            time=time,
            source=self.name,
            token=TokenRef(
                id=token_id,
                type=TokenType.SERVICE_ACCOUNT,
                issued_at=time,
                expires_at=expires,
                audience=tuple(spec.audiences or ()) if spec else (),
                binding=Binding(method="pod", value=pod_uid) if pod_uid else None,
            ),
            subject=self._subject(f"{SA_PREFIX}{obj.namespace}:{obj.name}"),
            client_id=user.username if user is not None else None,
            session_id=f"pod:{pod_uid}" if pod_uid else None,
            network=self._network(rec.sourceIPs, rec.userAgent, ctx),
            request=self._request(rec, code, ctx),
            outcome=self._outcome(code, rec),
        )

    # -- deletion of a pod or service account (k8s_deletions) ----------------------------
    def _deletion(
        self, rec: AuditEvent, raw: Mapping[str, Any], credential: str | None, base_id: str, time: datetime,
        ctx: AdapterContext,
    ) -> list[CanonicalEvent]:
        request = self._request(rec, rec.responseStatus.code if rec.responseStatus else None, ctx)
        if credential is None:
            return [deletion_event(rec, raw, base_id, time, self.name, request)]
        # Deleted with a service-account token (a controller, a CI job): a use, and the deletion.
        used = self._used(rec, credential, f"{base_id}#used", time, ctx)
        try:
            return [used, deletion_event(rec, raw, base_id, time, self.name, request)]
        except UnsupportedEventType:
            return [used]

    # -- use ---------------------------------------------------------------------------
    def _used(
        self, rec: AuditEvent, credential: str, event_id: str, time: datetime, ctx: AdapterContext
    ) -> CanonicalEvent:
        user = rec.user
        assert user is not None and user.extra is not None  # _credential_id found one
        extra = user.extra
        username = user.username
        if not username:
            raise InvalidRecord("k8s: user.username: missing on a request with a credential id")
        pod_uid = _first(extra.get(POD_UID))
        pod_name = _first(extra.get(POD_NAME))
        client_id = None
        if pod_name and username.startswith(SA_PREFIX):
            namespace = username[len(SA_PREFIX):].partition(":")[0]
            client_id = f"pod:{namespace}/{pod_name}"
        code = rec.responseStatus.code if rec.responseStatus is not None else None
        return CanonicalEvent(
            event_id=event_id,
            kind=EventKind.USED,
            time=time,
            source=self.name,
            token=self._token(credential, pod_uid, username),
            subject=self._subject(username),
            client_id=client_id,
            session_id=f"pod:{pod_uid}" if pod_uid else None,
            network=self._network(rec.sourceIPs, rec.userAgent, ctx),
            request=self._request(rec, code, ctx),
            outcome=self._outcome(code, rec),
        )

    # -- memoised parts -------------------------------------------------------------------
    def _token(self, credential: str, pod_uid: str | None, username: str) -> TokenRef:
        key = (credential, pod_uid)
        ref = self._tokens.get(key)
        if ref is None:
            # JTI credential ids also come from external JWT authenticators (OIDC users).
            kind = TokenType.SERVICE_ACCOUNT if username.startswith(SA_PREFIX) else TokenType.ACCESS
            ref = self._tokens.put(key, TokenRef(
                id=credential,
                type=kind,
                binding=Binding(method="pod", value=pod_uid) if pod_uid else None,
            ))
        return ref

    def _subject(self, username: str) -> Subject:
        found = self._subjects.get(username)
        if found is None:
            kind: Literal["service", "user"] = "service" if username.startswith(SA_PREFIX) else "user"
            found = self._subjects.put(username, Subject(id=username, kind=kind))
        return found

    def _network(self, source_ips: list[str] | None, user_agent: str | None, ctx: AdapterContext) -> Network:
        # The peer, passing over the operator's trusted proxies: see the module docstring.
        ip = client_address(source_ips, ctx, f"{self.name}.sourceIPs")
        key = (ip, user_agent)
        found = self._networks.get(key)
        if found is None:
            found = self._networks.put(key, Network(ip=ip, user_agent=user_agent))
        return found

    def _request(self, rec: AuditEvent, code: int | None, ctx: AdapterContext) -> Request:
        uri = redact_url(rec.requestURI, ctx.hash_token) if rec.requestURI else None
        status = 500 if code is None and rec.stage == "Panic" else code
        return Request(id=_audit_key(rec.auditID), method=rec.verb, resource=uri, status=status)

    def _outcome(self, code: int | None, rec: AuditEvent) -> Outcome:
        notes = rec.annotations or {}
        forbid = notes.get(DECISION) == "forbid"
        stale = STALE_TOKEN in notes
        panic = rec.stage == "Panic"
        key = (code, forbid, stale, panic)
        found = self._outcomes.get(key)
        if found is None:
            if panic:
                found = Outcome(result="failure", reason=f"apiserver panic (HTTP {code or 500})")
            elif forbid:
                found = Outcome(result="failure", reason=f"authorization forbid (HTTP {code or 403})")
            elif code is None:
                found = Outcome(result="unknown", reason="no responseStatus")
            elif code >= 400:
                found = Outcome(result="failure", reason=f"HTTP {code}")
            else:
                found = Outcome(result="success", reason="stale token (past its warn-after time)" if stale else None)
            if len(self._outcomes) < 4096:
                self._outcomes[key] = found
        return found


def _is_token_request(rec: AuditEvent) -> bool:
    obj = rec.objectRef
    return (
        obj is not None and obj.resource == "serviceaccounts" and obj.subresource == "token"
        and rec.verb == "create" and not obj.apiGroup
    )


def _credential_id(user: AuditUser | None) -> str | None:
    """The JTI credential id the request was authenticated with, if any (x509 ids are not tokens)."""
    if user is None or not user.extra:
        return None
    value = _first(user.extra.get(CREDENTIAL_ID))
    if value is None or not value.startswith("JTI="):
        return None
    if len(value) > 512:
        raise InvalidRecord(f"k8s: user.extra.{CREDENTIAL_ID}: longer than 512 characters")
    return value


def _first(values: list[str] | None) -> str | None:
    return values[0] if values and values[0] else None


def _token_request(value: Any, where: str) -> TokenRequestBody | None:
    if value is None or value == SKIPPED_BODY:
        return None  # logged at Metadata level, or too big to log (AKS): no body
    try:
        return TokenRequestBody.model_validate(value)
    except ValidationError as exc:
        raise InvalidRecord(f"k8s: {where}.{explain(exc)}") from None


def _expiry(
    time: datetime, spec: TokenRequestSpec | None, reported: datetime | None, bound: BoundObjectRef | None
) -> datetime | None:
    """When the token stops being accepted, or a sound upper bound of it (module docstring)."""
    if reported is not None:
        if reported.tzinfo is None:
            raise InvalidRecord("k8s: responseObject.status.expirationTimestamp has no timezone")
        if reported < time:
            raise InvalidRecord("k8s: responseObject.status.expirationTimestamp is before the request")
    requested = spec.expirationSeconds if spec is not None else None
    if requested is not None:
        # The spec is known: the extension applies only to pod-bound tokens.
        extendable = requested == KUBELET_DEFAULT_SECONDS and bound is not None and bound.kind == "Pod"
    else:
        # Bodies not logged: judge by the reported lifetime (the handler adds a few ms).
        extendable = reported is not None and abs((reported - time).total_seconds() - KUBELET_DEFAULT_SECONDS) < 2
    if extendable:
        return time + EXTENDED_EXPIRY
    if reported is not None:
        return reported
    return time + timedelta(seconds=requested) if requested is not None else None


def _audit_key(audit_id: str) -> str:
    if len(audit_id) <= _LONG_AUDIT_ID:
        return audit_id
    return "h:" + hashlib.blake2b(audit_id.encode(), digest_size=16).hexdigest()


def _skip_label(rec: AuditEvent) -> str:
    """A bounded label for skipped requests: resource names of rejected requests are the
    client's invention (a scanner's 404s and 403s), so they are not counted by name."""
    verb = rec.verb if rec.verb in _KNOWN_VERBS else "other"
    obj = rec.objectRef
    if obj is None or not obj.resource:
        return f"{verb} non-resource"
    code = rec.responseStatus.code if rec.responseStatus is not None else None
    if code is None or code >= 400:
        return f"{verb} rejected"
    return f"{verb} {obj.resource}/{obj.subresource}" if obj.subresource else f"{verb} {obj.resource}"
