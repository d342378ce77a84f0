"""Who did it, for the audit trail: one line of printable text.

The actor comes from ``--actor``, else ``$TOKENWATCH_ACTOR``, else the OS login name, and is
written into every audit entry. A newline in it forges a second line in anything line-based
that shows the trail, and a control, bidi or zero-width character changes what an auditor
reads. Such a name is refused, not escaped: the trail keeps names exactly as given.
"""

from __future__ import annotations

import getpass
import os

from pipeline.terminal import printable

ENV_ACTOR = "TOKENWATCH_ACTOR"
MAX_ACTOR_CHARS = 256


class ActorError(ValueError):
    """The actor name is unusable; the message names where it came from and what is wrong."""


def check_actor(name: str, source: str) -> str:
    """``name`` unchanged, or ``ActorError`` when it holds a character :func:`printable` would escape."""
    if len(name) > MAX_ACTOR_CHARS:
        raise ActorError(f"{source} is {len(name):,} characters long; at most {MAX_ACTOR_CHARS}")
    shown = printable(name)
    if shown != name:
        raise ActorError(f"{source} must be one line of printable text, without control or format "
                         f"characters: got \"{shown}\"")
    return name


def resolve_actor(given: str | None) -> str:
    """``--actor`` if given, else ``$TOKENWATCH_ACTOR``, else the login name; each checked."""
    if given:
        return check_actor(given, "--actor")
    from_env = os.environ.get(ENV_ACTOR)
    if from_env:
        return check_actor(from_env, f"${ENV_ACTOR}")
    try:
        return check_actor(getpass.getuser(), "the login name")
    except (KeyError, OSError):  # no login name (containers without a passwd entry)
        return "unknown"
