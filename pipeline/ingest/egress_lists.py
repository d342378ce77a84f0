"""Egress lists: networks of one class (relay, in-flight, provider, reputation) read
from files the operator maintains, and read again when a file changes.

A list file holds one entry a line; ``#`` starts a comment:

- ``192.0.2.0/24`` or ``192.0.2.7`` — a range or one address (the Tor Project's bulk
  exit list is this: one address a line);
- ``AS64500`` — an AS number (events or an ASN .mmdb must supply numbers);
- ``org: Gogo`` — AS organisation words, matched like ``enrich.hosting_as_orgs``;
- ``198.51.100.0/24,label,...`` — CSV whose first field is a range or address: a
  threat-intel ``cidr,label`` export, or Apple's Private Relay egress list (RFC 8805
  geofeed: ``prefix,country,region,city,``). A first line ``cidr,...``/``ip,...`` is a header.

A provider list takes ranges only: an AS number or name of a cloud also covers the
machines anyone can rent there. A bad line is reported as ``file:line: why`` and
skipped; it never stops the service. A file missing at start-up is an error; a file
that disappears or grows past the size cap later keeps the entries read before.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import ip_network
from pathlib import Path

from pipeline import DATA_DIR
from pipeline.ingest.geoip import IPAddress
from pipeline.ingest.netmatch import CidrIndex, word_pattern
from schemas.events import NetClass

log = logging.getLogger(__name__)

SHIPPED_DIR = DATA_DIR / "egress"
MAX_LINE_CHARS = 1024
MAX_REPORTED_PROBLEMS = 20  # per file and load; the rest are counted
_ASN = re.compile(r"(?i)AS(\d{1,10})")
_HEADERS = frozenset({"cidr", "ip", "ip_prefix", "prefix", "network", "address"})


class EgressListError(ValueError):
    """An egress list that cannot be used at start-up (missing, unreadable, too large)."""


@dataclass(frozen=True)
class ListSource:
    name: str
    net_class: NetClass
    path: Path


@dataclass(frozen=True)
class ListProblem:
    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass(frozen=True)
class ParsedList:
    """One file's entries: ranges, AS numbers and AS-name words, plus the lines refused."""

    cidrs: tuple[str, ...]
    asns: frozenset[int]
    orgs: tuple[str, ...]
    problems: tuple[ListProblem, ...]


def parse_list(path: Path, lines: Iterable[str], net_class: NetClass, max_entries: int) -> ParsedList:
    """The entries of one list file; every refused line is a problem naming file and line."""
    cidrs: list[str] = []
    asns: set[int] = set()
    orgs: list[str] = []
    problems: list[ListProblem] = []
    count = 0
    for number, raw in enumerate(lines, 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if count >= max_entries:
            problems.append(ListProblem(path, number, f"more than {max_entries} entries; the rest are ignored"))
            break
        if len(line) > MAX_LINE_CHARS:
            problems.append(ListProblem(path, number, f"longer than {MAX_LINE_CHARS} characters"))
            continue
        kind, value, error = _entry(line, net_class, first=count == 0 and not problems)
        if error is not None:
            problems.append(ListProblem(path, number, error))
            continue
        if kind == "cidr":
            cidrs.append(value)
        elif kind == "asn":
            asns.add(int(value))
        elif kind == "org":
            orgs.append(value)
        else:  # a CSV header
            continue
        count += 1
    return ParsedList(tuple(cidrs), frozenset(asns), tuple(orgs), tuple(problems))


def _entry(line: str, net_class: NetClass, first: bool) -> tuple[str, str, str | None]:
    """(kind, value, error) of one non-empty line."""
    lowered = line.casefold()
    if lowered.startswith("org:"):
        words = line[4:].strip()
        if net_class == "provider":
            return "", "", "a provider list takes ranges only (an AS name also covers rented machines)"
        return ("org", words, None) if words else ("", "", "org: needs AS organisation words")
    field = line.split(",", 1)[0].strip()
    if first and "," in line and field.casefold() in _HEADERS:
        return "header", "", None
    match = _ASN.fullmatch(field)
    if match is not None:
        if net_class == "provider":
            return "", "", "a provider list takes ranges only (an AS number also covers rented machines)"
        return "asn", match.group(1), None
    try:
        net = ip_network(field, strict=False)
    except ValueError:
        shown = field if len(field) <= 60 else field[:60] + "…"
        return "", "", f"{shown!r} is not a range, an address, AS<number> or org: <AS name>"
    return "cidr", str(net), None


class _Index:
    """Every list's entries in one lookup; a smaller rank wins (reputation lists first)."""

    def __init__(self, names: Sequence[tuple[str, NetClass]], parsed: Sequence[ParsedList]) -> None:
        self.names = names
        self.cidrs = CidrIndex((c, rank) for rank, p in enumerate(parsed) for c in p.cidrs)
        self.asns: dict[int, int] = {}
        for rank, p in enumerate(parsed):
            for asn in p.asns:
                self.asns.setdefault(asn, rank)
        self.orgs = [word_pattern(p.orgs) for p in parsed]

    def classify(
        self, address: IPAddress | None, asn: int | None, orgs: tuple[str, ...]
    ) -> tuple[NetClass, str] | None:
        best = len(self.names)
        if address is not None and self.cidrs:
            hit = self.cidrs.lookup(address)
            if hit is not None:
                best = hit
        if asn is not None:
            best = min(best, self.asns.get(asn, best))
        if orgs:
            for rank in range(best):
                pattern = self.orgs[rank]
                if pattern is not None and any(pattern.search(o) for o in orgs):
                    best = rank
                    break
        if best == len(self.names):
            return None
        name, net_class = self.names[best]
        return net_class, name


class EgressLists:
    """The loaded lists. ``classify`` is the per-event lookup; ``refresh`` checks the
    files' modification times at most every ``reload_interval_s`` and reloads those
    that changed, returning True when the result of ``classify`` may have changed."""

    def __init__(
        self,
        sources: Sequence[ListSource],
        *,
        reload_interval_s: float = 60.0,
        max_bytes: int = 64 * 1024 * 1024,
        max_entries: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Reads every file now: a missing or oversized one is an ``EgressListError``."""
        # Reputation first: a threat-intel hit must never be masked by a relay or provider list.
        self.sources = tuple(sorted(sources, key=lambda s: s.net_class != "reputation"))
        self._interval = reload_interval_s
        self._max_bytes = max_bytes
        self._max_entries = max_entries
        self._clock = clock
        self._stamps: list[tuple[int, int] | None] = []
        self._parsed: list[ParsedList] = []
        for source in self.sources:
            stamp = _stamp(source.path)
            if stamp is None:
                raise EgressListError(f"egress list {source.name!r}: {str(source.path)!r} does not exist")
            parsed = self._read(source, stamp)
            if parsed is None:
                raise EgressListError(
                    f"egress list {source.name!r}: {str(source.path)!r} is larger than {max_bytes} bytes "
                    "(enrich.egress_list_max_bytes) or unreadable"
                )
            self._stamps.append(stamp)
            self._parsed.append(parsed)
        self._index = _Index([(s.name, s.net_class) for s in self.sources], self._parsed)
        self._next_check = clock() + reload_interval_s

    @property
    def problems(self) -> tuple[ListProblem, ...]:
        """Lines refused in the lists as loaded now."""
        return tuple(p for parsed in self._parsed for p in parsed.problems)

    def entries(self, name: str) -> ParsedList | None:
        for source, parsed in zip(self.sources, self._parsed, strict=True):
            if source.name == name:
                return parsed
        return None

    def classify(
        self, address: IPAddress | None, asn: int | None, orgs: tuple[str, ...]
    ) -> tuple[NetClass, str] | None:
        """(class, list name) of the first list that matches the network, or None."""
        return self._index.classify(address, asn, orgs)

    def refresh(self) -> bool:
        now = self._clock()
        if now < self._next_check:
            return False
        self._next_check = now + self._interval
        changed = False
        for i, source in enumerate(self.sources):
            stamp = _stamp(source.path)
            if stamp == self._stamps[i]:
                continue
            if stamp is None:
                log.error("egress list %r: %s is gone; keeping its %s entries", source.name, source.path,
                          _size(self._parsed[i]))
                self._stamps[i] = None
                continue
            parsed = self._read(source, stamp)
            self._stamps[i] = stamp
            if parsed is None:
                log.error("egress list %r: %s is larger than %d bytes or unreadable; keeping the entries read before",
                          source.name, source.path, self._max_bytes)
                continue
            self._parsed[i] = parsed
            changed = True
            log.info("egress list %r reloaded from %s: %d entries", source.name, source.path, _size(parsed))
        if changed:
            self._index = _Index([(s.name, s.net_class) for s in self.sources], self._parsed)
        return changed

    def _read(self, source: ListSource, stamp: tuple[int, int]) -> ParsedList | None:
        if stamp[1] > self._max_bytes:
            return None
        try:
            with source.path.open(encoding="utf-8", errors="replace") as handle:
                parsed = parse_list(source.path, handle, source.net_class, self._max_entries)
        except OSError:
            return None
        for problem in parsed.problems[:MAX_REPORTED_PROBLEMS]:
            log.warning("egress list %r: %s", source.name, problem)
        if len(parsed.problems) > MAX_REPORTED_PROBLEMS:
            log.warning("egress list %r: %s: %d more lines refused", source.name, source.path,
                        len(parsed.problems) - MAX_REPORTED_PROBLEMS)
        return parsed


def shipped_sources(names: Iterable[NetClass]) -> list[ListSource]:
    """The lists shipped in pipeline/data/egress, one per class, named ``shipped-<class>``."""
    return [ListSource(f"shipped-{name}", name, SHIPPED_DIR / f"{name}.txt") for name in names]


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_mtime_ns, info.st_size


def _size(parsed: ParsedList) -> int:
    return len(parsed.cidrs) + len(parsed.asns) + len(parsed.orgs)
