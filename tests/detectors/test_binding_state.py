"""The binding check's typed state: learned pod addresses travel exactly through the
changelog codec, bad records are refused, and a checkpoint writes only the pods that
changed (an evicted pod as a tombstone)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from detectors.binding import POD_ADDRESS, BindingCheck, PodAddress
from detectors.replay import BINDING_MISMATCH, ReplayConfig
from detectors.state import StateStore
from detectors.state_codec import dirty_records, restore, snapshot_records
from schemas.events import Binding, CanonicalEvent, Network
from tests.factories import T0, event

START = T0.timestamp()
POD_IP, OTHER_IP = "10.20.3.41", "10.99.0.5"
LEARNED = PodAddress(POD_IP, START, "ev-first", "sa-tok-1", "k8s_audit", START + 30)


def test_pod_address_round_trip() -> None:
    back = POD_ADDRESS.decode(orjson.loads(orjson.dumps(POD_ADDRESS.encode(LEARNED))))
    assert back == LEARNED and type(back.first_use_time) is float
    whole = POD_ADDRESS.decode(orjson.loads(orjson.dumps(POD_ADDRESS.encode(PodAddress("a", 1, "e", "t", "s", 2)))))
    assert type(whole.last_use_time) is float


@pytest.mark.parametrize("bad", [
    None, "10.0.0.1", [], [POD_IP, START, "ev", "tok", "src"], [POD_IP, START, "ev", "tok", "src", START, 1],
    [None, START, "ev", "tok", "src", START], [POD_IP, "0", "ev", "tok", "src", START],
    [POD_IP, START, 7, "tok", "src", START], [POD_IP, START, "ev", "tok", "src", None], {"address": POD_IP},
])
def test_pod_address_refuses_bad_records(bad: Any) -> None:
    with pytest.raises((ValueError, TypeError, KeyError, IndexError)):
        POD_ADDRESS.decode(bad)


def check(settings: ReplayConfig | None = None) -> BindingCheck:
    return BindingCheck(settings or ReplayConfig(), BINDING_MISMATCH, "replay")


def pod_use(t: float, ip: str, pod: str, event_id: str | None = None) -> CanonicalEvent:
    ev = event("used", t, token=f"sa-{pod}", token_type="service_account", place=None, source="k8s_audit",
               bound=Binding(method="pod", value=pod), event_id=event_id)
    return ev.model_copy(update={"network": Network(ip=ip)})


def judge(binding: BindingCheck, ev: CanonicalEvent, store: StateStore) -> Any:
    assert ev.token is not None and ev.token.binding is not None
    bound = f"{ev.token.binding.method}:{ev.token.binding.value}"
    return binding.check(ev, ev.token, None, bound, None, store)


def test_a_checkpoint_writes_only_the_changed_pod() -> None:
    binding, store = check(), StateStore(track_changes=True)
    pods = store.table("replay", "pods", POD_ADDRESS)
    for i in range(10_000):
        pods.put(f"pod-{i}", PodAddress(f"10.20.{i // 250}.{i % 250}", START, f"ev-{i}", f"sa-{i}", "k8s_audit", START))
    assert len(dirty_records(store)) == 10_000
    assert judge(binding, pod_use(60, "10.20.0.42", "pod-42"), store) is None  # its own address: last use moves
    [(key, value)] = dirty_records(store)
    assert b"pods" in key and b"pod-42" in key and value is not None
    assert pods.get("pod-42") == PodAddress("10.20.0.42", START, "ev-42", "sa-42", "k8s_audit", START + 60)
    assert list(pods)[-1] == "pod-42"  # last-use order: expiry scans from the quietest pod
    assert judge(binding, pod_use(30, "10.20.0.42", "pod-42"), store) is None  # older use: nothing to write
    assert dirty_records(store) == []


def test_a_pod_over_the_cap_evicts_the_quietest_as_a_tombstone() -> None:
    binding, store = check(ReplayConfig(max_tracked_pods=2)), StateStore(track_changes=True)
    for i in range(2):
        judge(binding, pod_use(i, f"10.20.0.{i}", f"pod-{i}"), store)
    dirty_records(store)
    judge(binding, pod_use(5, "10.20.0.5", "pod-5"), store)
    written = {pod: value is None for key, value in dirty_records(store) for pod in ("pod-0", "pod-5")
               if pod.encode() in key}
    assert written == {"pod-0": True, "pod-5": False}  # pod-0 gone (a tombstone), pod-5 learned
    assert list(store.table("replay", "pods", POD_ADDRESS)) == ["pod-1", "pod-5"]


def test_a_restored_store_still_knows_the_pods_address() -> None:
    binding, store = check(), StateStore()
    """The first use, checkpointed and restored, still decides the pod's address and is cited
    from the pod row alone (no token state was kept)."""
    judge(binding, pod_use(0, POD_IP, "pod-a", event_id="ev-first"), store)
    restored = restore(StateStore(), snapshot_records(store))
    finding = judge(binding, pod_use(60, OTHER_IP, "pod-a", event_id="ev-stolen"), restored)
    assert finding is not None and finding.details["pod_address"] == POD_IP
    assert [(e.event_id, e.ip, e.source, e.token_id) for e in finding.evidence] == [
        ("ev-first", POD_IP, "k8s_audit", "sa-pod-a"), ("ev-stolen", OTHER_IP, "k8s_audit", "sa-pod-a"),
    ]
