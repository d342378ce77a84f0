"""What kind of network an alert's source address is on, in words an analyst reads.

Enrichment marks a network as hosting/VPN/Tor (``source.hosting``) and, when the address is
on one of the operator's egress lists, with that list's class and name (``net_class``,
``net_list``: README "Egress lists"; an alert carries them as ``source.net_class`` /
``source.net_list`` or, for ``issue_use_divergence``, as ``details.use_net_list``). A Tor
exit is named as one when its list's name says Tor (``tor-exits``, the README's example) or
its AS belongs to an organisation that runs only Tor exits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Organisations whose AS carries Tor exit relays only (all are also in
# pipeline.ingest.enrich_config.DEFAULT_HOSTING_AS_ORGS, checked by a test). VPN companies that
# also run exits (Calyx) are left out: their addresses are not all exits.
TOR_EXIT_AS_ORGS: tuple[str, ...] = (
    "Stiftung Erneuerbare Freiheit", "Zwiebelfreunde", "Foundation for Applied Privacy", "Emerald Onion",
)
CLASS_WORDS = {
    "relay": "relay egress",
    "in_flight": "in-flight Wi-Fi",
    "provider": "provider network",
    "reputation": "reputation list",
}
_TOR_LIST = re.compile(r"(?<![a-z])tor(?![a-z])", re.IGNORECASE)
_TOR_ORGS = re.compile(r"\b(?:" + "|".join(re.escape(o) for o in TOR_EXIT_AS_ORGS) + r")\b", re.IGNORECASE)


def network_kinds(doc: Mapping[str, Any]) -> list[str]:
    """``["hosting/VPN/Tor network", "reputation list tor-exits", "Tor exit"]`` and the like."""
    source = _section(doc, "source")
    details = _section(doc, "details")
    net_class = source.get("net_class") or details.get("use_net_class")
    net_list = source.get("net_list") or details.get("use_net_list")
    org = _section(_section(source, "as"), "organization").get("name")
    kinds: list[str] = []
    if source.get("hosting") is True:
        kinds.append("hosting/VPN/Tor network")
    if isinstance(net_class, str) or isinstance(net_list, str):
        words = CLASS_WORDS.get(str(net_class), "egress list") if net_class else "egress list"
        kinds.append(f"{words} {net_list}" if isinstance(net_list, str) else words)
    if is_tor_exit(org, net_list):
        kinds.append("Tor exit")
    return kinds


def is_tor_exit(as_org: Any, net_list: Any) -> bool:
    return (isinstance(net_list, str) and bool(_TOR_LIST.search(net_list))) or (
        isinstance(as_org, str) and bool(_TOR_ORGS.search(as_org)))


def _section(doc: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = doc.get(name)
    return value if isinstance(value, Mapping) else {}
