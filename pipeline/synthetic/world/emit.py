"""Vendor-shaped lines: each function returns one raw record as the vendor logs it
(field names and nesting of /work/shared/formats), for the adapters in
``schemas/sources`` to read. Times are epoch seconds in, vendor format out.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any

from pipeline.synthetic.vocabulary import AWS_CLI_AGENT, COUNTRY_NAMES, KUBECTL_AGENT
from pipeline.synthetic.world.net import Place

REALM = "8a1c0d4e-6a0b-4f7e-9c55-0b7f3d2a1e90"
ENTRA_TENANT = "4bbb79f7-0000-4000-8000-0000000000ac"
AWS_ACCOUNT = "111122223333"


def iso(t: float, digits: int = 3) -> str:
    text = datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="microseconds")
    head, _, frac = text[:-6].partition(".")
    return f"{head}.{frac[:digits]}Z" if digits else f"{head}Z"


def aws_expiration(t: float) -> str:
    """CloudTrail's non-ISO credential expiry: "Nov 24, 2026 3:00:00 PM"."""
    d = datetime.fromtimestamp(t, tz=timezone.utc)
    return f"{d:%b} {d.day}, {d.year} {d.hour % 12 or 12}:{d:%M:%S} {'AM' if d.hour < 12 else 'PM'}"


# -- Keycloak ---------------------------------------------------------------------
def keycloak(event_id: str, t: float, type_: str, client: str | None, user: str | None, session: str | None,
             ip: str, details: dict[str, str], error: str | None = None) -> dict[str, Any]:
    return {"id": event_id, "time": int(t * 1000), "type": type_, "realmId": REALM, "clientId": client,
            "userId": user, "sessionId": session, "ipAddress": ip, "error": error, "details": details}


# -- gateway ----------------------------------------------------------------------
def gateway(request_id: str, t: float, place: Place, method: str, path: str, status: int, user_agent: str,
            claims: dict[str, Any], required: str | None, proof: str | None = None) -> dict[str, Any]:
    raw: dict[str, Any] = {"timestamp": iso(t), "request_id": request_id, "client_ip": place.ip, "method": method,
                           "path": path, "status": status, "user_agent": user_agent, "jwt": claims}
    if required:
        raw["required_scope"] = required
    if proof:
        raw["dpop_jkt"] = proof
    return raw


# -- Okta -------------------------------------------------------------------------
def okta(uuid: str, t: float, event_type: str, actor: dict[str, Any], place: Place, user_agent: str,
         session: str | None, debug: dict[str, Any], targets: list[dict[str, Any]], client_id: str | None = None,
         result: str = "SUCCESS", reason: str | None = None) -> dict[str, Any]:
    net = place.network
    geo = {"city": place.city.name, "state": place.city.state, "country": COUNTRY_NAMES[place.country],
           "postalCode": None, "geolocation": {"lat": place.city.lat, "lon": place.city.lon}}
    return {
        "uuid": uuid, "published": iso(t), "eventType": event_type, "version": "0", "severity": "INFO",
        "displayMessage": event_type, "actor": actor,
        "client": {"id": client_id, "ipAddress": place.ip, "userAgent": {"rawUserAgent": user_agent},
                   "geographicalContext": geo},
        "authenticationContext": {"authenticationStep": 0, "externalSessionId": session},
        "outcome": {"result": result, "reason": reason},
        "debugContext": {"debugData": {"requestId": f"req-{uuid}", **debug}},
        "securityContext": {"asNumber": net.asn, "asOrg": net.as_org.lower(), "isp": net.as_org.lower(),
                            "domain": net.domain, "isProxy": False},
        "target": targets, "transaction": {"type": "WEB", "id": f"req-{uuid}"},
    }


def okta_actor(user_id: str, login: str, name: str) -> dict[str, Any]:
    return {"id": user_id, "type": "User", "alternateId": login, "displayName": name}


def okta_token_target(kind: str, token_id: str, expires: float, subject: str) -> dict[str, Any]:
    return {"id": token_id, "type": kind, "displayName": kind, "alternateId": None,
            "detailEntry": {"expires": iso(expires), "subject": subject, "hash": f"h{token_id[-12:]}"}}


# -- Entra ID + Graph -------------------------------------------------------------
def entra(uti: str, t: float, category: str, user_id: str, upn: str, app_id: str, app_name: str, place: Place,
          session: str, incoming: str, scopes: list[str], device: dict[str, str], error_code: int = 0) -> dict[str, Any]:
    city = place.city
    return {
        "time": iso(t, 7), "resourceId": f"/tenants/{ENTRA_TENANT}/providers/Microsoft.aadiam",
        "operationName": "Sign-in activity", "category": category, "tenantId": ENTRA_TENANT,
        "resultType": str(error_code), "callerIpAddress": place.ip, "correlationId": f"corr-{uti}", "Level": 4,
        "properties": {
            "id": f"id-{uti}", "createdDateTime": iso(t, 7).replace("Z", "+00:00"), "userPrincipalName": upn,
            "userId": user_id, "appId": app_id, "appDisplayName": app_name, "ipAddress": place.ip,
            "status": {"errorCode": error_code}, "deviceDetail": device,
            "location": {"city": city.name, "state": city.state, "countryOrRegion": place.country,
                         "geoCoordinates": {"latitude": city.lat, "longitude": city.lon}},
            "isInteractive": category == "SignInLogs", "sessionId": session, "uniqueTokenIdentifier": uti,
            "incomingTokenType": incoming, "tokenIssuerType": "AzureAD", "authenticationProtocol": "none",
            "originalRequestId": f"orq-{uti}", "resourceId": "00000003-0000-0000-c000-000000000000",
            "resourceDisplayName": "Microsoft Graph", "autonomousSystemNumber": place.network.asn,
            "authenticationProcessingDetails": [
                {"key": "Oauth Scope Info", "value": "[" + ",".join(f'"{s}"' for s in scopes) + "]"},
                {"key": "Is CAE Token", "value": "False"}],
            "riskEventTypes": [], "riskEventTypes_v2": [],
        },
    }


def graph(request_id: str, t: float, place: Place, method: str, uri: str, status: int, user_agent: str,
          app_id: str, user_id: str, uti: str, scopes: list[str], issued: float) -> dict[str, Any]:
    return {"TimeGenerated": iso(t, 7), "RequestId": request_id, "OperationId": request_id, "RequestMethod": method,
            "RequestUri": f"https://graph.microsoft.com/v1.0{uri}", "ResponseStatusCode": status,
            "IPAddress": place.ip, "UserAgent": user_agent, "AppId": app_id, "UserId": user_id,
            "SignInActivityId": uti, "Scopes": " ".join(scopes), "Roles": "", "TokenIssuedAt": iso(issued, 0),
            "ClientAuthMethod": 0, "Location": "West Europe"}


# -- CloudTrail -------------------------------------------------------------------
def _role_id(role: str) -> str:
    """An IAM role's unique id ("AROA" + 17 characters), stable per role name."""
    return "AROA" + hashlib.sha1(role.encode()).hexdigest()[:17].upper()


def _trail(event_id: str, t: float, source: str, name: str, identity: dict[str, Any], ip: str, agent: str,
           request: dict[str, Any] | None, response: dict[str, Any] | None, error: str | None,
           read_only: bool) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "eventVersion": "1.08", "userIdentity": identity, "eventTime": iso(t, 0), "eventSource": source,
        "eventName": name, "awsRegion": "eu-central-1", "sourceIPAddress": ip, "userAgent": agent,
        "requestParameters": request, "responseElements": response, "requestID": f"r-{event_id}",
        "eventID": event_id, "readOnly": read_only, "eventType": "AwsApiCall", "managementEvent": True,
        "recipientAccountId": AWS_ACCOUNT,
    }
    if error:
        raw["errorCode"] = error
        raw["errorMessage"] = "User is not authorized to perform this operation"
    return raw


def trail_assume_role_by_service(event_id: str, t: float, role: str, session_name: str, key: str,
                                 duration_s: int) -> dict[str, Any]:
    arn = f"arn:aws:sts::{AWS_ACCOUNT}:assumed-role/{role}/{session_name}"
    return _trail(event_id, t, "sts.amazonaws.com", "AssumeRole",
                  {"type": "AWSService", "invokedBy": "ec2.amazonaws.com"}, "ec2.amazonaws.com", "ec2.amazonaws.com",
                  {"roleArn": f"arn:aws:iam::{AWS_ACCOUNT}:role/{role}", "roleSessionName": session_name,
                   "durationSeconds": duration_s},
                  {"credentials": {"accessKeyId": key, "expiration": aws_expiration(t + duration_s),
                                   "sessionToken": "<redacted>"},
                   "assumedRoleUser": {"assumedRoleId": f"{_role_id(role)}:{session_name}", "arn": arn}},
                  None, True)


def trail_assume_role_with_saml(event_id: str, t: float, role: str, user: str, key: str, ip: str,
                                duration_s: int) -> dict[str, Any]:
    arn = f"arn:aws:sts::{AWS_ACCOUNT}:assumed-role/{role}/{user}"
    return _trail(event_id, t, "sts.amazonaws.com", "AssumeRoleWithSAML",
                  {"type": "SAMLUser", "principalId": f"SAMLPRINCIPAL:{user}", "userName": user,
                   "identityProvider": f"arn:aws:iam::{AWS_ACCOUNT}:saml-provider/keycloak"},
                  ip, AWS_CLI_AGENT,
                  {"roleArn": f"arn:aws:iam::{AWS_ACCOUNT}:role/{role}",
                   "principalArn": f"arn:aws:iam::{AWS_ACCOUNT}:saml-provider/keycloak", "durationSeconds": duration_s},
                  {"credentials": {"accessKeyId": key, "expiration": aws_expiration(t + duration_s),
                                   "sessionToken": "<redacted>"},
                   "assumedRoleUser": {"assumedRoleId": f"{_role_id(role)}:{user}", "arn": arn},
                   "subject": user, "subjectType": "persistent"},
                  None, True)


def trail_call(event_id: str, t: float, source: str, name: str, role: str, session_name: str, key: str,
               created: float, ip: str, agent: str, request: dict[str, Any] | None,
               error: str | None = None) -> dict[str, Any]:
    identity = {
        "type": "AssumedRole", "principalId": f"{_role_id(role)}:{session_name}",
        "arn": f"arn:aws:sts::{AWS_ACCOUNT}:assumed-role/{role}/{session_name}", "accountId": AWS_ACCOUNT,
        "accessKeyId": key,
        "sessionContext": {"attributes": {"mfaAuthenticated": "false", "creationDate": iso(created, 0)},
                           "sessionIssuer": {"type": "Role", "principalId": f"{_role_id(role)}",
                                             "arn": f"arn:aws:iam::{AWS_ACCOUNT}:role/{role}",
                                             "accountId": AWS_ACCOUNT, "userName": role}},
    }
    read_only = name.startswith(("Get", "List", "Describe"))
    return _trail(event_id, t, source, name, identity, ip, agent, request, None, error, read_only)


# -- Kubernetes audit -------------------------------------------------------------
def k8s_token_request(audit_id: str, t: float, namespace: str, account: str, pod: str, pod_uid: str, node: str,
                      node_ip: str, jti: str, expiration_s: int) -> dict[str, Any]:
    return {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": audit_id,
        "stage": "ResponseComplete", "requestURI": f"/api/v1/namespaces/{namespace}/serviceaccounts/{account}/token",
        "verb": "create", "user": {"username": f"system:node:{node}", "groups": ["system:nodes", "system:authenticated"]},
        "sourceIPs": [node_ip], "userAgent": "kubelet/v1.31.2",
        "objectRef": {"resource": "serviceaccounts", "namespace": namespace, "name": account, "apiVersion": "v1",
                      "subresource": "token"},
        "responseStatus": {"metadata": {}, "code": 201},
        "requestObject": {"kind": "TokenRequest", "apiVersion": "authentication.k8s.io/v1",
                          "spec": {"audiences": None, "expirationSeconds": expiration_s,
                                   "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod, "uid": pod_uid}}},
        "responseObject": {"kind": "TokenRequest", "status": {"expirationTimestamp": iso(t + expiration_s, 0)}},
        "requestReceivedTimestamp": iso(t, 6), "stageTimestamp": iso(t + 0.01, 6),
        "annotations": {"authentication.kubernetes.io/issued-credential-id": f"JTI={jti}",
                        "authorization.k8s.io/decision": "allow"},
    }


def k8s_call(audit_id: str, t: float, namespace: str, account: str, account_uid: str, pod: str, pod_uid: str,
             node: str, jti: str, ip: str, agent: str, verb: str, resource: str, name: str | None,
             code: int) -> dict[str, Any]:
    uri = f"/api/v1/namespaces/{namespace}/{resource}" + (f"/{name}" if name else "")
    ref: dict[str, Any] = {"resource": resource, "namespace": namespace, "apiVersion": "v1"}
    if name:
        ref["name"] = name
    return {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": audit_id,
        "stage": "ResponseComplete", "requestURI": uri, "verb": verb,
        "user": {"username": f"system:serviceaccount:{namespace}:{account}", "uid": account_uid,
                 "groups": ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"],
                 "extra": {"authentication.kubernetes.io/credential-id": [f"JTI={jti}"],
                           "authentication.kubernetes.io/node-name": [node],
                           "authentication.kubernetes.io/pod-name": [pod],
                           "authentication.kubernetes.io/pod-uid": [pod_uid]}},
        "sourceIPs": [ip], "userAgent": agent, "objectRef": ref,
        "responseStatus": {"metadata": {}, "code": code},
        "requestReceivedTimestamp": iso(t, 6), "stageTimestamp": iso(t + 0.02, 6),
        "annotations": {"authorization.k8s.io/decision": "allow" if code < 400 else "forbid"},
    }


# -- Entra audit log and Kubernetes deletions: revocations in the vendors' own lines ------
def entra_audit(record_id: str, t: float, activity: str, user_id: str, upn: str, admin: str,
                modified: list[dict[str, Any]] | None = None, result: int = 0) -> dict[str, Any]:
    """An Entra ``AuditLogs`` diagnostic record (Microsoft's "Interpret the Microsoft Entra
    audit logs schema in Azure Monitor" sample) of a UserManagement activity on one user."""
    return {
        "time": iso(t, 7), "resourceId": f"/tenants/{ENTRA_TENANT}/providers/Microsoft.aadiam",
        "operationName": activity, "operationVersion": "1.0", "category": "AuditLogs", "tenantId": ENTRA_TENANT,
        "resultSignature": "None", "durationMs": 0, "callerIpAddress": "<null>", "correlationId": f"corr-{record_id}",
        "identity": admin, "level": "Informational",
        "properties": {
            "id": record_id, "category": "UserManagement", "correlationId": f"corr-{record_id}", "result": result,
            "resultReason": "", "activityDisplayName": activity, "activityDateTime": iso(t, 7).replace("Z", "+00:00"),
            "loggedByService": "Core Directory", "operationType": "Update",
            "initiatedBy": {"user": {"id": None, "displayName": None, "userPrincipalName": admin, "ipAddress": "",
                                     "roles": []}},
            "targetResources": [{"id": user_id, "displayName": None, "type": "User", "userPrincipalName": upn,
                                 "modifiedProperties": modified or [], "administrativeUnits": []}],
            "additionalDetails": [],
        },
    }


def entra_revoke_sign_in_sessions(record_id: str, t: float, user_id: str, upn: str, admin: str) -> dict[str, Any]:
    """What Graph ``revokeSignInSessions`` / the portal's "Revoke sessions" logs."""
    stamp = iso(t, 0)
    return entra_audit(record_id, t, "Update StsRefreshTokenValidFrom Timestamp", user_id, upn, admin, [
        {"displayName": "StsRefreshTokensValidFrom", "oldValue": "[]", "newValue": f'["{stamp}"]'},
        {"displayName": "Included Updated Properties", "oldValue": None, "newValue": '"StsRefreshTokensValidFrom"'},
    ])


def k8s_delete(audit_id: str, t: float, namespace: str, resource: str, name: str, uid: str | None, user: str,
               ip: str, grace_s: float = 0.0) -> dict[str, Any]:
    """A completed ``delete`` of a pod or service account by ``user``, logged at RequestResponse
    level (the deleted object as the response, marked for deletion ``grace_s`` later) or, with
    ``uid`` None, at Metadata level (no bodies)."""
    kind = {"pods": "Pod", "serviceaccounts": "ServiceAccount"}[resource]
    event: dict[str, Any] = {
        "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata" if uid is None else "RequestResponse",
        "auditID": audit_id, "stage": "ResponseComplete",
        "requestURI": f"/api/v1/namespaces/{namespace}/{resource}/{name}", "verb": "delete",
        "user": {"username": user, "groups": ["system:authenticated"]}, "sourceIPs": [ip],
        "userAgent": KUBECTL_AGENT,
        "objectRef": {"resource": resource, "namespace": namespace, "name": name, "apiVersion": "v1"},
        "responseStatus": {"metadata": {}, "code": 200},
        "requestReceivedTimestamp": iso(t, 6), "stageTimestamp": iso(t + 0.03, 6),
        "annotations": {"authorization.k8s.io/decision": "allow"},
    }
    if uid is not None:
        event["requestObject"] = {"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/__internal"}
        meta: dict[str, Any] = {"name": name, "namespace": namespace, "uid": uid}
        if resource == "pods":
            meta["deletionTimestamp"] = iso(t + grace_s, 0)
            meta["deletionGracePeriodSeconds"] = int(grace_s)
        event["responseObject"] = {"kind": kind, "apiVersion": "v1", "metadata": meta}
    return event
