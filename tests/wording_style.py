"""The house style of alert summaries (``detectors.describe``), as one check that any test
can run over the summaries it sees: ``faults(summary)`` lists what breaks the style."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable

# A number followed by a unit spelled out or abbreviated otherwise than "s", "min", "h", "d".
_OTHER_UNITS = re.compile(r"\b\d+(?:\.\d+)? ?(?:seconds?|minutes?|hours?|days?|secs?|mins|hrs?)\b")
_COMPACT_UNITS = re.compile(r"\b\d+ (?:s|min|h|d)\b")
_ISSUED_IN = re.compile(r"\bissued(?: by a refresh)? in [^;:—]*?\b([A-Z]{2})\b")
_USED_FROM = re.compile(r"\bused\b[^;:—]*?\bfrom [^;:—]*?\b([A-Z]{2})\b")
_FIRST_WORD = re.compile(r"[A-Z][a-z]+(?:-[a-z]+)?:?")


def faults(summary: str) -> list[str]:
    """What in ``summary`` breaks the house style: empty when nothing does."""
    found = []
    if not summary.endswith("."):
        found.append("no full stop at the end")
    if "(s)" in summary:
        found.append('"(s)" instead of a singular or plural')
    if _OTHER_UNITS.search(summary):
        found.append(f"a duration not in the compact style: {_OTHER_UNITS.search(summary)}")
    words = summary.split()
    if not words or not _FIRST_WORD.fullmatch(words[0]):
        found.append("does not start with a word")
    if any(char.isdigit() for word in words[:3] for char in word):
        found.append("an id, number or hash among the first three words")
    issued = _ISSUED_IN.search(summary)
    used = _USED_FROM.search(summary, issued.end()) if issued else None
    if issued and used and issued.group(1) == used.group(1):
        found.append(f"issued in {issued.group(1)} and used from the same {used.group(1)}")
    if "  " in summary or " ." in summary or " ," in summary:
        found.append("stray spaces")
    return found


def as_name_spellings(summaries: Iterable[str], as_names: Iterable[str]) -> dict[str, set[str]]:
    """Each AS name (case-insensitively) -> every spelling of it found in ``summaries``."""
    spellings: dict[str, set[str]] = defaultdict(set)
    patterns = {name.casefold(): re.compile(re.escape(name), re.IGNORECASE) for name in as_names if name}
    for summary in summaries:
        for key, pattern in patterns.items():
            spellings[key].update(match.group(0) for match in pattern.finditer(summary))
    return {key: found for key, found in spellings.items() if found}


def compact_durations(summary: str) -> list[str]:
    """The durations in ``summary``: "15 min", "9 s"."""
    return _COMPACT_UNITS.findall(summary)
