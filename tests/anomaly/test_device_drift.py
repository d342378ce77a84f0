"""Device drift and roaming inside a token or session: parsed cheaply, counted exactly,
scored by the model and named in the alert; a browser update or one handover is not drift.

The device context compared is what Okta's session protection re-evaluates a session on
(help.okta.com, Identity Threat Protection "Post auth session evaluation": a change of IP
or device context after sign-in): browser family/OS, device id, and here also the key a
DPoP (RFC 9449) or mTLS (RFC 8705) caller proved.
"""

from __future__ import annotations

from typing import Any

import pytest

from detectors.anomaly import AnomalyConfig, AnomalyDetector
from detectors.anomaly.features import FEATURES
from detectors.device import MAX_AGENT_CHARS, DeviceContext, agent_family, drift
from detectors.state import StateStore
from schemas.alerts import Alert
from schemas.events import Binding
from tests.factories import BERLIN_HOME, MUNICH_OTHER_ISP, Place, engine, event, rule_hits

DAY = 86_400.0
FIREFOX_WIN = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:120.0) Gecko/20100101 Firefox/120.0"
FIREFOX_WIN_UPDATED = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:121.0) Gecko/20100101 Firefox/121.0"
CHROME_LINUX = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
KEY_A = Binding(method="dpop", value="0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
KEY_B = Binding(method="dpop", value="NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs")
ROUTINE = ["/orders", "/orders/1", "/invoices", "/calendar"]


@pytest.mark.parametrize(("agent", "family"), [
    (FIREFOX_WIN, "Firefox on Windows"),
    (FIREFOX_WIN_UPDATED, "Firefox on Windows"),  # an update is the same context
    (CHROME_LINUX, "Chrome on Linux"),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
     "Safari/537.36 Edg/120.0.0.0", "Edge on Windows"),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.1 Mobile/15E148 Safari/604.1", "Safari on iOS"),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile "
     "Safari/537.36", "Chrome on Android"),
    ("ExampleApp/5.2 (iOS 17)", "exampleapp on iOS"),
    ("python-requests/2.31.0", "python-requests"),
    ("", None),
    (None, None),
])
def test_agent_family(agent: str | None, family: str | None) -> None:
    assert agent_family(agent) == family


def test_agent_family_is_bounded_whatever_the_agent_says() -> None:
    assert agent_family("x" * 1_000_000) == "x" * 32  # the product name is cut, never the whole agent
    assert agent_family("Firefox/" + "9" * 100_000) == "Firefox"
    hidden = "a" * MAX_AGENT_CHARS + " Windows Chrome/1"  # beyond what is read: not seen
    assert agent_family(hidden) == "a" * 32


def test_device_context_and_drift() -> None:
    use = event("used", 0, token="t", user_agent=CHROME_LINUX, proof=KEY_B)
    with_device = use.model_copy(update={"network": use.network.model_copy(update={"device_id": "d" * 500})})
    context = DeviceContext.of(with_device)
    assert context == DeviceContext("Chrome on Linux", "d" * 128, f"dpop:{KEY_B.value}")
    before = DeviceContext("Firefox on Windows", "d" * 128, f"dpop:{KEY_A.value}")
    assert drift(before, context) == ["agent", "key"]
    assert drift(DeviceContext(None, None, None), context) == []  # stated on one side only: no change
    assert drift(["Chrome on Linux", "other", None], context) == ["device"]  # as restored from a checkpoint


def use(t: float, token: str, path: str = "/orders", place: Place = BERLIN_HOME, ua: str = FIREFOX_WIN,
        proof: Binding | None = None, session: str | None = None, subject: str = "alice") -> Any:
    ev = event("used", t, token=token, place=place, user_agent=ua, scopes=("orders:read",), proof=proof,
               required=("orders:read",), expires_in=None, session=session, subject=subject)
    return ev.model_copy(update={"request": ev.request.model_copy(update={"id": f"{token}-{t}", "resource": path})})


def features(events: list) -> list[dict[str, float]]:
    """Feature rows of every window after the first (which has no profile to compare with)."""
    det = AnomalyDetector(AnomalyConfig(min_profile_windows=1, learning_period_s=0), collect=True)
    state = StateStore()
    for ev in events:
        det.expire(ev.epoch, state)
        det.process(ev, state)
        state.apply(ev)
    det.finish(state)
    return [dict(zip(FEATURES, row.tolist(), strict=True)) for row in det.baseline()[0]]


def drift_row(x: dict[str, float]) -> tuple[float, ...]:
    return tuple(x[f] for f in ("agent_changes", "device_changes", "key_changes", "network_switches",
                                "network_returns"))


def test_drift_inside_a_token_is_counted_per_change() -> None:
    first = [use(0, "t0")]
    stolen = [use(3600, "t1", proof=KEY_A), use(3660, "t1", proof=KEY_A),
              use(3720, "t1", ua=CHROME_LINUX, proof=KEY_B), use(3780, "t1", ua=CHROME_LINUX, proof=KEY_B)]
    assert drift_row(features(first + stolen)[0]) == (1, 0, 1, 0, 0)
    updated = [use(3600, "t1"), use(3660, "t1"), use(3720, "t1", ua=FIREFOX_WIN_UPDATED)]
    assert drift_row(features(first + updated)[0]) == (0, 0, 0, 0, 0)


def test_roaming_one_way_handover_versus_interleaving() -> None:
    first = [use(0, "t0")]
    handover = [use(3600 + 30 * k, "t1", place=BERLIN_HOME if k < 2 else MUNICH_OTHER_ISP) for k in range(4)]
    x = features(first + handover)[0]
    assert drift_row(x) == (0, 0, 0, 1, 0) and x["distinct_networks"] == 2
    interleaved = [use(3600 + 30 * k, "t1", place=(BERLIN_HOME, MUNICH_OTHER_ISP)[k % 2]) for k in range(4)]
    assert drift_row(features(first + interleaved)[0]) == (0, 0, 0, 3, 2)  # A B A B: back to A, back to B


def test_drift_across_tokens_of_one_session() -> None:
    """A refreshed token used by another browser: the change is between tokens, inside the session."""
    events = [use(0, "t0", session="s1"), use(60, "t0", session="s1"),
              use(3600, "t1", session="s1", ua=CHROME_LINUX), use(3660, "t1", session="s1", ua=CHROME_LINUX)]
    assert drift_row(features(events)[0]) == (1, 0, 0, 0, 0)
    other_session = [*events[:2], *(e.model_copy(update={"session_id": "s2"}) for e in events[2:])]
    assert drift_row(features(other_session)[0]) == (0, 0, 0, 0, 0)


def routine(days: int = 8) -> list:
    """alice: every working day at 09:00 and 14:00 UTC, 6 requests from home with Firefox on Windows."""
    out = []
    for d in range(days):
        for hour in (0, 5):  # factories' T0 is 09:00 UTC
            token = f"at-{d}-{hour}"
            t0 = d * DAY + hour * 3600
            out.append(event("issued", t0 - 5, token=token, scopes=("orders:read",), expires_in=12 * 3600))
            out += [use(t0 + 60 * k, token, ROUTINE[k % 4]) for k in range(6)]
    return out


def day8(second_half_ua: str, second_key: Binding) -> list:
    """A working-day token at 11:00 on day 8: three uses with Firefox on Windows proving key A, then three
    more from the same address to the same pages with ``second_half_ua`` proving ``second_key``."""
    t0 = 8 * DAY + 2 * 3600
    head = [event("issued", t0 - 5, token="at-day8", scopes=("orders:read",), expires_in=12 * 3600)]
    return head + [use(t0 + 60 * k, "at-day8", ROUTINE[k % 4], proof=KEY_A) for k in range(3)] + \
        [use(t0 + 60 * k, "at-day8", ROUTINE[k % 4], ua=second_half_ua, proof=second_key) for k in range(3, 6)]


def detect(events: list, path) -> tuple[list[Alert], dict[str, float]]:
    """Alerts of every detector, and the anomaly score of each token's last window."""
    eng = engine({"anomaly": {"model_path": str(path)}})
    anomaly = next(d for d in eng.detectors if isinstance(d, AnomalyDetector))
    anomaly.recorder = []
    alerts: list[Alert] = []
    for ev in events:
        alerts.extend(eng.submit(ev))
    alerts.extend(eng.flush())
    return alerts, {token: score for token, _, _, score in anomaly.recorder}


def test_browser_and_key_change_mid_token_alerts_and_says_so(trained) -> None:
    model, path = trained
    alerts, scores = detect(routine() + day8(CHROME_LINUX, KEY_B), path)
    assert rule_hits(alerts) == [("anomaly.behaviour", "at-day8")]
    summary = alerts[0].alert.summary
    assert "browser/OS changed inside the session: Firefox on Windows → Chrome on Linux" in summary
    assert "DPoP/mTLS key changed inside the session: dpop:0ZcOCOR… → dpop:NzbLsXh…" in summary
    assert alerts[0].details["agent_changes"] == 1 and alerts[0].details["key_changes"] == 1
    assert "contribution.device" in alerts[0].details
    assert scores["at-day8"] > model.threshold

    same, same_scores = detect(routine() + day8(FIREFOX_WIN, KEY_A), path)  # one device throughout
    upgraded, upgraded_scores = detect(routine() + day8(FIREFOX_WIN_UPDATED, KEY_A), path)  # browser update
    assert same == [] and upgraded == []
    assert scores["at-day8"] > upgraded_scores["at-day8"] >= same_scores["at-day8"]
    assert upgraded_scores["at-day8"] <= model.threshold


def test_an_old_model_file_is_refused_naming_the_new_features(trained, tmp_path) -> None:
    import skops.io as sio

    from detectors.anomaly.model import ModelError, load

    _, path = trained
    document = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    document["features"] = list(FEATURES[:19])  # what the version before drift and roaming wrote
    old = tmp_path / "old.skops"
    sio.dump(document, old)
    with pytest.raises(ModelError, match=r"trained on 19 features, this version computes 24: this version adds "
                                         r"features agent_changes, device_changes, key_changes, network_switches, "
                                         r"network_returns; retrain with `tokenwatch model train`"):
        load(old)
    detector = AnomalyDetector(AnomalyConfig(model_path=old))
    assert detector.model is None and detector.counters["model_errors"] == 1  # the rules keep running
