"""Command lines for CLI tests: ``--actor`` goes only to commands that change something
(read-only commands such as `alerts list` refuse it)."""

from __future__ import annotations

READ_ONLY = frozenset({
    ("alerts", "list"), ("alerts", "show"), ("alerts", "suppressions"), ("actions", "list"),
    ("breaker", "status"),
})


def with_actor(argv: tuple[str, ...] | list[str], actor: str | None) -> list[str]:
    """``argv`` plus ``--actor actor`` unless ``actor`` is None or the command only reads."""
    if actor is None or tuple(argv[:2]) in READ_ONLY:
        return list(argv)
    return [*argv, "--actor", actor]
