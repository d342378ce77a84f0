"""Words for a concurrent-use match (``detectors.concurrency.Match``): what an analyst
reads in the alert's summary. Kept apart from the decision so each can change alone."""

from __future__ import annotations

from detectors import describe
from detectors.concurrency import Match, anonymising
from detectors.state import Observation

_DRIFT_NOUN = {"agent": "user agent", "device": "device id", "key": "proven key"}


def concurrency_summary(label: str, token_id: str, match: Match, window: float) -> str:
    """One sentence: the uses of the ``label`` ("Access token") in time order, why one holder
    cannot explain them, and the token's id last."""
    uses = match.uses
    if match.reason == "interleaved":
        a1, b, a2 = uses
        text = (
            f"{label} was accepted from {describe.place(a1)}, {describe.duration(b.time - a1.time)} later from "
            f"{describe.place(b)}, and {describe.duration(a2.time - b.time)} after that from the first network "
            "again; two holders take turns, one device changing network does not come back at once"
        )
    elif match.reason == "networks":
        places = describe.listing(describe.place(use) for use in uses)
        text = (
            f"{label} was accepted from {len(uses)} networks within {describe.duration(window)}: {places}; "
            "one device does not roam that fast"
        )
    else:
        first, second = uses
        text = (
            f"{label} was accepted from {describe.place(second)} {describe.duration(match.gap_s)} after a use "
            f"from {describe.place(first)}; one holder cannot be in both places{_why(match)}"
        )
    return f"{text}{_drift(match)} (token {token_id})."


def _why(match: Match) -> str:
    if match.reason == "anonymising":
        use = next(use for use in match.uses if anonymising(use))
        network = describe.as_name(use.as_org, use.asn) or use.ip or "the network"
        return f" ({network} is a hosting, anonymising or reputation-listed network)"
    if match.reason == "travel" and match.speed_kmh is not None:
        speed = "no time at all" if match.speed_kmh == float("inf") else f"{match.speed_kmh:,.0f} km/h"
        return f" (moving between them needs {speed})"
    if match.reason == "country":
        return " (another country)"
    return ""


def _drift(match: Match) -> str:
    if not match.drift:
        return ""
    first, last = match.uses[0], match.uses[-1]
    changes = ", ".join(
        f"{_DRIFT_NOUN[name]} {_fact(first, name)} then {_fact(last, name)}" for name in match.drift
    )
    lead = "; and the network changed along with the device" if match.reason == "drift" else "; the device changed too"
    return f"{lead}: {changes}"


def _fact(use: Observation, name: str) -> str:
    return str({"agent": use.agent, "device": use.device, "key": use.binding}[name])
