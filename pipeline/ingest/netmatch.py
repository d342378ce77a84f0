"""Network matchers shared by the enricher and the egress lists: a prefix index for
CIDR ranges and a whole-word pattern for AS organisation names."""

from __future__ import annotations

import re
from collections.abc import Iterable
from ipaddress import ip_network

from pipeline.ingest.geoip import IPAddress


def word_pattern(words: Iterable[str]) -> re.Pattern[str] | None:
    """One case-insensitive regex matching any of ``words`` as a whole word; a
    space matches any run of spaces, ``-`` or ``_`` ("Google Fiber" ~ "GOOGLE-FIBER").
    Boundaries are asserted only where the word starts/ends with a letter or digit."""
    parts = []
    for word in words:
        word = word.strip()
        if word:
            head = r"(?<!\w)" if re.match(r"\w", word[0]) else ""
            tail = r"(?!\w)" if re.match(r"\w", word[-1]) else ""
            body = r"[\s_-]+".join(re.escape(part) for part in word.split())
            parts.append(head + body + tail)
    return re.compile("|".join(parts), re.IGNORECASE) if parts else None


class CidrIndex:
    """Longest-to-shortest prefix lookup: one hash probe per prefix length in use,
    so thousands of ranges (a cloud's published list) stay cheap."""

    def __init__(self, ranges: Iterable[tuple[str, int]]) -> None:
        """``ranges``: (cidr, value); lookup returns the smallest value that matches."""
        self._tables: dict[tuple[int, int], dict[int, int]] = {}
        for cidr, value in ranges:
            net = ip_network(cidr.strip(), strict=False)
            table = self._tables.setdefault((net.version, net.prefixlen), {})
            key = int(net.network_address)
            table[key] = min(value, table.get(key, value))
        self._by_version = {
            v: [(plen, self._tables[(ver, plen)]) for ver, plen in sorted(self._tables) if ver == v]
            for v in (4, 6)
        }

    def __bool__(self) -> bool:
        return bool(self._tables)

    def lookup(self, address: IPAddress) -> int | None:
        bits = 32 if address.version == 4 else 128
        value = int(address)
        best: int | None = None
        for plen, table in self._by_version[address.version]:
            hit = table.get(value >> (bits - plen) << (bits - plen))
            if hit is not None and (best is None or hit < best):
                best = hit
        return best
