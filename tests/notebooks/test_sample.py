"""Replaying a share of the users (notebook 03's USER_SHARE): the same attacks caught, fewer
events, the same users on every run, and nothing of a kept user's tokens left out."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.analyst import explore, sample
from tests.factories import event

USERS = [f"user-{i}" for i in range(200)]


def test_the_share_is_deterministic_and_about_right() -> None:
    picked = [u for u in USERS if sample.kept(u, 0.25)]
    assert picked == [u for u in USERS if sample.kept(u, 0.25)]
    assert 30 <= len(picked) <= 70
    assert picked != [u for u in USERS if sample.kept(u, 0.25, seed=1)]
    assert all(sample.kept(u, 1.0) for u in USERS)


def test_a_kept_users_tokens_come_with_events_that_name_no_user() -> None:
    mine = next(u for u in USERS if sample.kept(u, 0.25))
    other = next(u for u in USERS if not sample.kept(u, 0.25))
    stream = [
        event("issued", 0, token="t1", family="f1", subject=mine),
        event("revoked", 10, token="t1", family="f1", subject=None, revoke="family"),  # the IdP names no user
        event("used", 20, token="t2", subject=other),
        event("revoked", 30, token="t2", subject=None, revoke="token"),
        event("used", 40, token="stolen", subject="ci-role"),  # a labelled key used by a workload identity
        event("issued", 50, token="other-of-ci", subject="ci-role"),
    ]
    kept = sample.by_users(stream, 0.25, keep={"stolen"})
    assert [e.token.id for e in kept if e.token] == ["t1", "t1", "stolen", "other-of-ci"]
    assert sample.by_users(stream, 1.0) == stream
    with pytest.raises(ValueError):
        sample.by_users(stream, 0.0)


def test_a_quarter_of_the_demo_catches_every_attack_the_whole_stream_does(demo_dir: Path) -> None:
    settings = explore.settings_from_env(demo_dir / "tokenwatch.toml")
    events = explore.read_events(explore.read_lines(demo_dir / "events"), settings)
    labels = explore.labels_frame(demo_dir / "labels.json")
    attacked = set(labels["user"].dropna()) | {key for keys in labels["keys"] for key in keys}
    quarter = sample.by_users(events, 0.25, keep=attacked)
    assert len(quarter) < 0.6 * len(events)
    whole = explore.score(explore.replay(events, {}, settings), labels)
    part = explore.score(explore.replay(quarter, {}, settings), labels)
    assert whole["caught"].sum() == len(labels)  # the demo's own promise: every injected attack caught
    assert part["caught"].tolist() == whole["caught"].tolist()
