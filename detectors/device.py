"""Device context of a use: user-agent family and OS, device id, proven key.

Okta's session protection (Identity Threat Protection, "Post auth session
evaluation": help.okta.com/oie/en-us/content/topics/itp/continuous-access-evaluation.htm)
re-evaluates a session when its IP or *device context* changes after sign-in, and
its Behavior Detection counts a browser never used before as a new device
(help.okta.com, "About behavior types"). tokenwatch compares the same three facts
between consecutive uses of one session or token: a change of browser family or
OS, of device id, or of the DPoP/mTLS key the caller proved. A browser update
(Firefox 120 -> 121) is no change: the version is not part of the context.

The user agent is written by whoever holds the token: only its first
``MAX_AGENT_CHARS`` are read, and the family falls back to the product name
(letters, digits, ``._-``, at most 32 characters), so no input grows the result.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

from schemas.events import CanonicalEvent

MAX_AGENT_CHARS = 512
MAX_ID_CHARS = 128

# (marker in the lower-cased agent, family); the first match wins, so browsers whose
# agents also name another engine (Edge and Opera say "Chrome", Chrome says "Safari")
# come before the one they mimic.
_FAMILIES: tuple[tuple[str, str], ...] = (
    ("edg/", "Edge"), ("edga/", "Edge"), ("edgios/", "Edge"),
    ("opr/", "Opera"), ("opera", "Opera"),
    ("samsungbrowser/", "Samsung Internet"),
    ("firefox/", "Firefox"), ("fxios/", "Firefox"),
    ("crios/", "Chrome"), ("chrome/", "Chrome"), ("chromium/", "Chrome"),
    ("safari/", "Safari"),
)
_OS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"windows"), "Windows"),
    (re.compile(r"android"), "Android"),
    (re.compile(r"\b(?:iphone|ipad|ipod|ios)\b"), "iOS"),
    (re.compile(r"mac ?os|macintosh|darwin"), "macOS"),
    (re.compile(r"\bcros\b"), "ChromeOS"),
    (re.compile(r"linux|x11"), "Linux"),
)
_PRODUCT = re.compile(r"[a-z0-9._-]{1,32}")


@lru_cache(maxsize=8_192)
def _agent_family(agent: str) -> str | None:
    text = agent.lower()
    family = next((name for marker, name in _FAMILIES if marker in text), None)
    if family is None:
        product = _PRODUCT.match(text.lstrip())
        family = product.group(0) if product else None
    system = next((name for pattern, name in _OS if pattern.search(text)), None)
    if family is None:
        return system
    return f"{family} on {system}" if system else family


def agent_family(agent: str | None) -> str | None:
    """"Firefox on Windows", "python-requests", "exampleapp on iOS"; None for no agent."""
    if not agent:
        return None
    return _agent_family(agent[:MAX_AGENT_CHARS])


class DeviceContext(NamedTuple):
    """What one use says about the device behind it; None = not stated."""

    agent: str | None
    device: str | None
    key: str | None  # "dpop:<jkt>" / "mtls:<x5t#S256>" of the proof, not the token's binding

    @classmethod
    def of(cls, event: CanonicalEvent) -> DeviceContext:
        proof = event.request.proof if event.request is not None else None
        device = event.network.device_id
        return cls(
            agent_family(event.network.user_agent),
            device[:MAX_ID_CHARS] if device else None,
            f"{proof.method}:{proof.value[:MAX_ID_CHARS]}" if proof is not None else None,
        )


DRIFT_FIELDS = ("agent", "device", "key")


def drift(before: DeviceContext | list[str | None], after: DeviceContext) -> list[str]:
    """The fields that changed between two uses: each stated on both sides and different.
    A field stated on one side only is no change (sources differ in what they log)."""
    # strict=False: ``before`` may be a list read back from detector state; a field it lacks is not stated
    return [name for name, old, new in zip(DRIFT_FIELDS, before, after, strict=False)
            if old is not None and new is not None and old != new]
