"""MITRE ATT&CK facts for the Elasticsearch documents: which tactics each technique the rules
name serves, and the attack.mitre.org reference of each.

The rules (``RuleMeta.techniques``) name techniques only; Elastic Security and ECS want the
tactic beside each technique (``threat.tactic.*``) and a sub-technique under its parent
(``threat.technique.subtechnique.*``). The table is the ATT&CK Enterprise matrix's
technique → tactics relation for the techniques tokenwatch uses; a test fails when a rule
names a technique that is not here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

FRAMEWORK = "MITRE ATT&CK"

TACTICS: dict[str, str] = {
    "TA0001": "Initial Access",
    "TA0003": "Persistence",
    "TA0004": "Privilege Escalation",
    "TA0005": "Defense Evasion",
    "TA0006": "Credential Access",
    "TA0008": "Lateral Movement",
}
"""Tactic id → name."""

TECHNIQUES: dict[str, tuple[str, tuple[str, ...]]] = {
    "T1078": ("Valid Accounts", ("TA0001", "TA0003", "TA0004", "TA0005")),
    "T1098": ("Account Manipulation", ("TA0003", "TA0004")),
    "T1528": ("Steal Application Access Token", ("TA0006",)),
    "T1548": ("Abuse Elevation Control Mechanism", ("TA0004", "TA0005")),
    "T1550": ("Use Alternate Authentication Material", ("TA0005", "TA0008")),
}
"""Technique id → (name, tactic ids). A sub-technique (``T1550.001``) has its parent's tactics."""

SUBTECHNIQUES: dict[str, str] = {
    "T1550.001": "Application Access Token",
}
"""Sub-technique id → its own name (ATT&CK writes the full one as ``<parent>: <own>``)."""


def tactic_url(tactic_id: str) -> str:
    return f"https://attack.mitre.org/tactics/{tactic_id}/"


def technique_url(technique_id: str) -> str:
    """``T1550.001`` → ``https://attack.mitre.org/techniques/T1550/001/``."""
    return f"https://attack.mitre.org/techniques/{technique_id.replace('.', '/')}/"


def parent_of(technique_id: str) -> str:
    return technique_id.partition(".")[0]


def places(technique_id: str) -> bool:
    """Whether this table names ``technique_id`` and the tactics it serves (what alerts need)."""
    if parent_of(technique_id) not in TECHNIQUES:
        return False
    return "." not in technique_id or technique_id in SUBTECHNIQUES


def tactics_of(technique_id: str) -> tuple[str, ...]:
    """The tactic ids a technique (or sub-technique) serves; ``KeyError`` for one not in the table."""
    return TECHNIQUES[parent_of(technique_id)][1]


def _ref(kind: str, ident: str, name: str) -> dict[str, str]:
    url = tactic_url(ident) if kind == "tactic" else technique_url(ident)
    return {"id": ident, "name": name, "reference": url}


def _techniques(technique_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Parents in first-named order, each with the sub-techniques named under it."""
    parents: dict[str, dict[str, Any]] = {}
    for tid in technique_ids:
        parent = parent_of(tid)
        entry = parents.setdefault(parent, _ref("technique", parent, TECHNIQUES[parent][0]))
        if tid != parent:
            subs = entry.setdefault("subtechnique", [])
            if all(s["id"] != tid for s in subs):
                subs.append(_ref("technique", tid, SUBTECHNIQUES[tid]))
    return list(parents.values())


def _tactic_ids(technique_ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(t for tid in technique_ids for t in tactics_of(tid)))


def ecs_threat(technique_ids: Iterable[str]) -> dict[str, Any]:
    """ECS ``threat``: framework, every tactic the techniques serve, and the techniques (parents,
    sub-techniques under ``subtechnique``), each with id, name and reference URL."""
    ids = list(technique_ids)
    return {
        "framework": FRAMEWORK,
        "tactic": [_ref("tactic", t, TACTICS[t]) for t in _tactic_ids(ids)],
        "technique": _techniques(ids),
    }


def rule_threat(technique_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Elastic Security's rule ``threat`` shape (``kibana.alert.rule.threat``, detection rules):
    one entry per tactic, holding the techniques that serve it."""
    ids = list(technique_ids)
    return [
        {"framework": FRAMEWORK, "tactic": _ref("tactic", t, TACTICS[t]),
         "technique": _techniques(tid for tid in ids if t in tactics_of(tid))}
        for t in _tactic_ids(ids)
    ]
