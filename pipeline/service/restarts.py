"""When the supervisor of `tokenwatch run --workers N` restarts a member that exited, and when
it gives up: a pure rule over one member's history, apart from the processes, so it can be
tested on a simulated clock (an outage of ten minutes in a millisecond).

Three kinds of exit, told apart by exit code: *transient* (the broker is unreachable: it comes
back, so wait for it, as one process waits for its broker; but only for ``start_give_up_s`` until
the member has run healthy once, since a mistyped bootstrap server looks the same), *lasting* (a setting, a taken port:
no restart cures it, stop at once), and anything else (a crash, a signal: retry a few times,
then give up, so a crash loop reaches the host's supervisor instead of spinning).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Literal

from pipeline import exit_codes


@dataclass(frozen=True)
class RestartPolicy:
    backoff_s: float = 1.0
    """Delay before the first restart of a member; doubles with each exit since its last healthy run."""
    backoff_max_s: float = 60.0
    """Cap of that delay: a broker back after an outage is noticed within this long."""
    limit: int = 5
    """Crashes (exits neither transient nor lasting) of one member within ``window_s`` after which
    the supervisor gives up."""
    window_s: float = 300.0
    healthy_s: float = 120.0
    """A member that ran this long before exiting had a healthy run: its back-off and its outage
    start afresh (longer than the ~30 s a start takes to find the broker unreachable)."""
    transient_give_up_s: float | None = None
    """How long a member may keep exiting with a transient code, with no healthy run between,
    before the supervisor gives up with that code; None: wait for ever."""
    start_give_up_s: float | None = 600.0
    """The same limit before the member's first healthy run since the supervisor started (the
    shorter of the two applies): a broker that never answered is more likely a mistyped
    ``kafka.bootstrap_servers`` than an outage, and must reach the host's supervisor."""


@dataclass(frozen=True)
class Restart:
    """Start the member again in ``delay_s``."""

    delay_s: float
    transient: bool
    failures: int
    """Exits since the member's last healthy run, this one included."""
    failing_for_s: float
    """Since the first of those exits."""


@dataclass(frozen=True)
class GiveUp:
    """Stop every member and exit with ``code``."""

    code: int
    why: Literal["lasting", "crash loop", "outage", "never reached"]
    failing_for_s: float


@dataclass
class RestartHistory:
    """One member's exits since its last healthy run, and its crashes within the window."""

    policy: RestartPolicy
    transient_codes: frozenset[int] = frozenset()
    lasting_codes: frozenset[int] = frozenset()
    failures: int = 0
    failing_since: float | None = None
    healthy_once: bool = False
    """The member has had a healthy run since the supervisor started."""
    crashes: deque[float] = field(default_factory=deque)  # times of recent crashes, within window_s

    @classmethod
    def of(cls, policy: RestartPolicy, transient_codes: Collection[int] = (),
           lasting_codes: Collection[int] = ()) -> RestartHistory:
        return cls(policy, frozenset(transient_codes), frozenset(lasting_codes))

    def after_exit(self, code: int, now: float, started_at: float | None) -> Restart | GiveUp:
        """The decision for an exit with ``code`` at ``now`` of a member started at ``started_at``
        (None: unknown, never healthy), recorded in the history."""
        policy = self.policy
        if started_at is not None and now - started_at >= policy.healthy_s:
            self.failures, self.failing_since, self.healthy_once = 0, None, True
        if self.failing_since is None:
            self.failing_since = now
        failing_for = now - self.failing_since
        if code in self.lasting_codes:
            return GiveUp(code, "lasting", failing_for)
        transient = code in self.transient_codes
        if transient:
            if policy.transient_give_up_s is not None and failing_for >= policy.transient_give_up_s:
                return GiveUp(code, "outage", failing_for)
            if not self.healthy_once and policy.start_give_up_s is not None and failing_for >= policy.start_give_up_s:
                return GiveUp(code, "never reached", failing_for)
        else:
            while self.crashes and now - self.crashes[0] > policy.window_s:
                self.crashes.popleft()
            if len(self.crashes) >= policy.limit:
                return GiveUp(code if code > 0 else exit_codes.FAILED, "crash loop", failing_for)
            self.crashes.append(now)
        delay = min(policy.backoff_s * 2 ** min(self.failures, 32), policy.backoff_max_s)
        self.failures += 1
        return Restart(delay, transient, self.failures, failing_for)
