"""What a CloudTrail record says about AWS itself: service callers, EC2 instance
credentials, VPC endpoints, the role a service assumed, and which records are one call.

Kept apart from the record mapping (``schemas.sources.cloudtrail``) because each
answer is a fact about AWS's conventions, documented by AWS, that the mapping
only consults:

- "CloudTrail userIdentity element": ``sessionContext.ec2RoleDelivery`` is "1.0"
  when the Instance Metadata Service v1 delivered the credentials, "2.0" for IMDSv2;
  EC2 names the role session after the instance ("i-<instance id>").
- "CloudTrail record contents": ``vpcEndpointId`` and ``vpcEndpointAccountId`` (the
  endpoint owner's account); ``requestID`` is made by the called service per request.
- "Example sharedEventID": a call that concerns two accounts is delivered to both,
  with its own ``eventID`` and ``recipientAccountId`` in each copy.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from ipaddress import ip_address
from typing import Any, Protocol

from schemas.sources.common import cut

_INSTANCE_SESSION = re.compile(r"i-(?:[0-9a-f]{8}|[0-9a-f]{17})")
"""EC2's instance ids: "i-" and 8 (older) or 17 lowercase hex digits."""
_MAX_ARN = 2048
_MAX_SESSION_NAME = 128  # STS allows 64; a longer value is cut, not a reason to lose the record
_ROLE_ARN = re.compile(r"arn:(aws[a-z-]*):iam::([0-9]{12}):role/(?:.*/)?([^/]+)")


class _Session(Protocol):
    @property
    def ec2RoleDelivery(self) -> str | None: ...  # vendor name


class _Identity(Protocol):
    @property
    def type(self) -> str | None: ...
    @property
    def principalId(self) -> str | None: ...
    @property
    def arn(self) -> str | None: ...
    @property
    def sessionContext(self) -> _Session | None: ...


def aws_service(name: str | None) -> bool:
    """A service principal as CloudTrail writes it ("ec2.amazonaws.com", "AWS Internal")."""
    return name is not None and (name.endswith(".amazonaws.com") or name == "AWS Internal")


def is_ip(value: str) -> bool:
    try:
        ip_address(value)
    except ValueError:
        return False
    return True


def session_name(principal: str | None) -> str | None:
    """The role session name in "AROA…:<session>" (an assumed-role id)."""
    if not principal or ":" not in principal:
        return None
    return principal.split(":", 1)[1] or None


def instance_credentials(ident: _Identity | None) -> bool:
    """Were these role credentials delivered to an EC2 instance by its metadata service?

    Read from the use record alone: IMDS stamps ``ec2RoleDelivery`` on every use of the
    credentials it delivered; older records still name the session after the instance.
    Such credentials belong inside AWS, so a use from elsewhere is the exfiltration pattern
    even when the issuing ``AssumeRole`` by ec2.amazonaws.com is not in the stream.
    """
    if ident is None or ident.type != "AssumedRole":
        return False
    context = ident.sessionContext
    if context is not None and context.ec2RoleDelivery:
        return True
    name = session_name(ident.principalId)
    if name is None and ident.arn:
        name = ident.arn.rsplit("/", 1)[-1]
    return name is not None and _INSTANCE_SESSION.fullmatch(name) is not None


def own_endpoint(endpoint: str | None, owner: str | None, recipient: str | None, holder: str | None) -> bool:
    """Did the call come through a VPC endpoint of the credentials' own account?

    ``owner`` is ``vpcEndpointAccountId``; records from before that field existed are
    judged by ``recipientAccountId``. When the holder's account is not recorded the
    endpoint is taken as its own, as before. An endpoint of another account is not
    "inside": a thief with the key can call through an endpoint of their own account.
    """
    if not endpoint:
        return False
    owner = owner or recipient
    return owner is None or holder is None or owner == holder


def assumed_by_service(parameters: Any) -> tuple[str | None, str | None]:
    """(assumed-role session ARN, session name) from an AssumeRole's ``requestParameters``.

    An ``AssumeRole`` made by an AWS service for an instance profile or task role
    carries no ``assumedRoleUser`` in its response (only ``credentials``); the request's
    ``roleArn`` and ``roleSessionName`` name the same session, as the ARN its uses will
    show: "arn:aws:sts::<account>:assumed-role/<role name>/<session>".
    """
    if not isinstance(parameters, Mapping):
        return None, None
    role, session = parameters.get("roleArn"), parameters.get("roleSessionName")
    session = cut(session, _MAX_SESSION_NAME) if isinstance(session, str) and session else None
    if not isinstance(role, str) or not role:
        return None, session
    match = _ROLE_ARN.fullmatch(role)
    if match is None or session is None:
        return cut(role, _MAX_ARN), session
    partition, account, name = match.groups()
    return cut(f"arn:{partition}:sts::{account}:assumed-role/{name}/{session}", _MAX_ARN), session


def call_id(request_id: str, source: str, name: str, key: str | None, time: str, caller: str | None) -> str:
    """One event id for every delivered copy of one API call.

    An organisation trail (or any call that concerns two accounts) delivers a copy to
    each account, each with its own ``eventID``; keyed by ``eventID`` they would be two
    acceptances of one request (``replay.duplicate_request``). The copies agree on what
    the caller did — request id, API, key, time, address — so those make the id, and the
    engine's event-id dedup keeps one. Two records that differ in any of them stay two
    events: a request id seen again at another time or from another address is still a
    duplicate request.
    """
    body = "\x1f".join((request_id, source, name, key or "", time, caller or ""))
    digest = hashlib.blake2b(body.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    return f"cloudtrail:{request_id}:{digest}"
