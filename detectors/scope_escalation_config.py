"""The scope escalation detector's settings, apart from the detector so that they stay pure Python.

``make compile`` compiles ``detectors.scope_escalation`` with mypyc (``pipeline.compiled``); a pydantic
model compiled with it would lose its ``Field`` constraints and descriptions, so the model
lives here and ``detectors.scope_escalation`` imports it (``Detector[ScopeEscalationConfig]``).
"""

from __future__ import annotations

from pydantic import Field

from detectors.base import DetectorConfig

DEFAULT_PRIVILEGED_SCOPES: tuple[str, ...] = (
    # generic admin / write-everything scopes
    "admin", "admin:*", "*:admin", "*.admin", "*:admin:*", "write:all", "*:write:all",
    "root", "sudo", "superuser", "iam:*",
    # Microsoft Graph: tenant-wide write and role management
    "*.ReadWrite.All", "Directory.*", "RoleManagement.*", "Application.ReadWrite.*",
    # Google: Workspace admin and full cloud access
    "https://www.googleapis.com/auth/admin.*", "https://www.googleapis.com/auth/cloud-platform",
    # GitHub
    "delete_repo", "site_admin",
)
EXCHANGE_GRANT_TYPES: tuple[str, ...] = ("urn:ietf:params:oauth:grant-type:token-exchange", "token_exchange")


class ScopeEscalationConfig(DetectorConfig):
    privileged_scopes: tuple[str, ...] = Field(
        default=DEFAULT_PRIVILEGED_SCOPES,
        description="fnmatch patterns (case-sensitive) of privileged scopes; offline_access is deliberately "
        "not included (too common); add it where refresh tokens are rare",
    )
    learning_period_s: float = Field(
        default=7 * 86_400.0, ge=0,
        description="After a subject/client is first seen, privileged scopes are learned silently this long",
    )
    retention_s: float = Field(
        default=90 * 86_400.0, gt=0,
        description="Forget a subject's/client's held privileged scopes after this long unseen",
    )
    exchange_grant_types: tuple[str, ...] = Field(
        default=EXCHANGE_GRANT_TYPES, description="grant_type values of RFC 8693 token exchange"
    )
