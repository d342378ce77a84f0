"""Times as the fast path reads them: only the plain RFC 3339 shape, everything else is
left to pydantic.

pydantic's datetime parser accepts more (spaces, unix times in strings, seven fraction
digits) and may read an odd string differently from the standard library; on the one
shape below both give the same instant and offset (the differential test checks), so an
odd string costs the fast path, never a difference in events.
"""

from __future__ import annotations

import re
from datetime import datetime

_RFC3339 = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-9]{2})")


def rfc3339(text: str) -> datetime | None:
    """The aware time ``text`` names, or None when it is not the plain RFC 3339 shape
    (or names no real time): the record then goes the pydantic way."""
    if not _RFC3339.fullmatch(text):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None
