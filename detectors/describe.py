"""How findings word what they saw: durations, instants, places, AS names, subjects,
scope lists and counted nouns for alert summaries, and the evidence a finding about a
token cites.

One function per idea, shared by every detector, so that the same fact reads
the same way in every alert. The house style, checked over every rule's summaries by
``tests/detectors/test_wording.py``:

- A summary leads with what happened ("Refresh token redeemed again …"), names
  tokens, sessions and requests by id near its end, and ends with a full stop: a
  table that cuts it still shows the meaning.
- Durations are compact, in at most two units: "45 s", "2 min 30 s", "2 h 10 min",
  "3 d 4 h" (``duration``); units are never spelled out.
- An AS name reads as its registry publishes it (``as_name``): mixed or upper case is
  kept ("Deutsche Telekom AG", "DIGITALOCEAN-ASN"); a name a source folded to lower
  case (Okta's ``asOrg``) is restored: a one-word handle upper case
  ("digitalocean-asn" -> "DIGITALOCEAN-ASN"), other names capitalised word by word
  with legal forms in their usual spelling ("starhub ltd" -> "Starhub Ltd",
  "deutsche telekom ag" -> "Deutsche Telekom AG"). So the same AS reads the same
  whichever source reported it. The AS number follows as "AS3320" when given.
- A count agrees with its noun ("1 scope", "2 scopes", ``counted``/``named``), never "(s)".
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Protocol

from detectors.state import TokenState
from schemas.alerts import EvidenceItem
from schemas.events import CanonicalEvent

# (singular, plural) of seconds, minutes, hours, days
_Unit = tuple[str, str]
_UNITS: tuple[_Unit, _Unit, _Unit, _Unit] = (("s", "s"), ("min", "min"), ("h", "h"), ("d", "d"))
# Legal forms restored in a case-folded multi-word AS name ("starhub ltd" -> "Starhub Ltd").
_LEGAL_FORMS = {
    form.casefold(): form
    for form in ("AG", "GmbH", "KG", "SE", "SA", "SAS", "SL", "SpA", "BV", "NV", "AB", "AS", "Oy", "LLC", "LLP",
                 "Inc", "Ltd", "PLC", "Co", "Corp", "Pty", "ASN")
}


class Located(Protocol):
    """Where an event happened, as recorded: ``detectors.state.Observation`` or
    any record with the same fields (optional ``egress`` and ``service`` are read
    when present)."""

    @property
    def ip(self) -> str | None: ...
    @property
    def city(self) -> str | None: ...
    @property
    def country(self) -> str | None: ...
    @property
    def as_org(self) -> str | None: ...
    @property
    def asn(self) -> int | None: ...


def duration(seconds: float) -> str:
    """A time span in at most its two largest units, sign ignored, compact for tables.

    "under 1 s", "45 s", "5 min", "2 min 30 s", "2 h 10 min", "3 d 4 h";
    seconds up to 2 min, minutes up to 2 h, hours up to 2 days.
    """
    seconds = abs(seconds)
    if seconds < 1:
        return "under 1 s"
    s, m, h, d = _UNITS
    total = int(round(seconds))
    if total < 120:
        return _amount(total, s)
    minutes, rest = divmod(total, 60)
    if minutes < 120:
        return _amounts(minutes, m, rest, s)
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return _amounts(hours, h, minutes, m)
    days, hours = divmod(hours, 24)
    return _amounts(days, d, hours, h)


def when(epoch: float, *, exact: bool = False) -> str:
    """An instant (epoch seconds) in UTC, ISO 8601: "2026-11-24 09:05:00Z" to the
    second for a summary; ``exact=True`` gives the RFC 3339 form for alert details,
    "2026-11-24T09:05:00Z", with fractions of a second when there are any."""
    moment = datetime.fromtimestamp(epoch, tz=timezone.utc)
    if exact:
        return moment.isoformat().replace("+00:00", "Z")
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def as_name(org: str | None, asn: int | None = None) -> str | None:
    """How an autonomous system reads in a summary: its name in the registry's spelling
    (see the module docstring), else "AS<number>", else None."""
    name = " ".join(org.split()) if org else ""
    if name and name == name.lower() and name != name.upper():  # folded to lower case by a source
        words = name.split(" ")
        name = name.upper() if len(words) == 1 else " ".join(_restored(word) for word in words)
    return name or (f"AS{asn}" if asn else None)


def _restored(word: str) -> str:
    """One word of a case-folded AS name: a legal form as spelled ("gmbh," -> "GmbH,"),
    anything else capitalised."""
    core = word.rstrip(",.")
    return _LEGAL_FORMS.get(core, core[:1].upper() + core[1:]) + word[len(core):]


def network(org: str | None, asn: int | None) -> str | None:
    """A network named on its own: "Vodafone GmbH (AS3209)", "AS3209", or None when unknown."""
    name = as_name(org)
    if name and asn:
        return f"{name} (AS{asn})"
    return name or (f"AS{asn}" if asn else None)


def place(where: Located | CanonicalEvent, *, address: bool = True, asn: bool = False) -> str:
    """Where an observation or event came from.

    By default the address leads, as for a request's origin:
    "79.200.1.10 (Berlin, DE, Deutsche Telekom AG)", "an unknown address" when
    none was recorded. ``address=False`` leads with the city, as for a traveller's
    whereabouts, and names the address only when nothing else is known:
    "Berlin, DE (Deutsche Telekom AG)". ``asn=True`` adds the AS number after the
    AS name ("Deutsche Telekom AG, AS3320"). An allowlisted egress is always named.
    A cloud service that called instead of an address is named as one: "AWS service
    ec2.amazonaws.com".
    """
    if isinstance(where, CanonicalEvent):
        net, geo = where.network, where.network.geo
        ip, as_org, as_number, egress = net.ip or _caller_service(net.service), net.as_org, net.asn, net.egress
        city, country = (geo.city, geo.country) if geo is not None else (None, None)
    else:
        ip, as_org, as_number = where.ip or _caller_service(getattr(where, "service", None)), where.as_org, where.asn
        city, country, egress = where.city, where.country, getattr(where, "egress", None)
    network = [part for part in (as_name(as_org), f"AS{as_number}" if asn and as_number else None) if part]
    if egress:
        network.append(f"egress {egress}")
    if address:
        parts = [part for part in (city, country) if part] + network
        origin = ip or "an unknown address"
        return f"{origin} ({', '.join(parts)})" if parts else origin
    if city and country:
        spot = f"{city}, {country}"
    else:
        spot = city or country or ip or "an unknown place"
    return f"{spot} ({', '.join(network)})" if network else spot


def subject(event: CanonicalEvent, token_state: TokenState | None = None) -> str:
    """Who a token belongs to: the event's subject by name, else by id, else the
    subject recorded for the token, else "?"."""
    if event.subject is not None:
        return event.subject.name or event.subject.id
    return (token_state.subject_id if token_state is not None else None) or "?"


def scope_list(scopes: Iterable[str]) -> str:
    """Scopes (or audiences) sorted and space-separated, as in an OAuth ``scope``
    parameter: "admin read"; "(none)" for an empty list."""
    return " ".join(sorted(scopes)) or "(none)"


def counted(count: int, noun: str, plural: str | None = None) -> str:
    """A count with its noun in agreement: "1 network", "3 networks", "2 countries"."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def named(noun: str, scopes: Iterable[str]) -> str:
    """A noun and the scopes (or audiences) it names, in agreement: "scope admin",
    "scopes admin write"."""
    listed = sorted(scopes)
    return f"{noun if len(listed) == 1 else noun + 's'} {scope_list(listed)}"


def listing(items: Iterable[str]) -> str:
    """Items as prose: "a", "a and b", "a, b and c"."""
    parts = list(items)
    return ", ".join(parts[:-1]) + f" and {parts[-1]}" if len(parts) > 1 else "".join(parts)


def evidence_with_issue(event: CanonicalEvent, token_state: TokenState | None) -> tuple[EvidenceItem, ...]:
    """Evidence for a finding about what a token did in ``event``: the token's
    issue first when it was seen (what was granted), then the event itself."""
    if token_state is not None and token_state.issue is not None:
        return token_state.issue.evidence(token_state.token_id), EvidenceItem.of(event)
    return (EvidenceItem.of(event),)


def _caller_service(service: str | None) -> str | None:
    """A calling service as a place: "AWS service ec2.amazonaws.com", "service <name>"."""
    if not service:
        return None
    if service.endswith(".amazonaws.com") or service == "AWS Internal":
        return f"AWS service {service}"
    return f"service {service}"


def _amount(count: int, unit: _Unit) -> str:
    return f"{count} {unit[count != 1]}"


def _amounts(count: int, unit: _Unit, rest: int, rest_unit: _Unit) -> str:
    """Two units, the smaller left out when it counts zero: "2 h 10 min", "2 h"."""
    head = _amount(count, unit)
    return f"{head} {_amount(rest, rest_unit)}" if rest else head
