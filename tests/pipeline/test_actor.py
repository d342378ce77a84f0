"""The actor of the audit trail is one line of printable text, from --actor or $TOKENWATCH_ACTOR.

The attack: ``--actor $'ana\\nalert.close by admin'`` forged a second line wherever the trail is
shown line by line. Refused with the escaped value; ordinary names (accents, a backslash,
spaces, emoji) pass unchanged.
"""

from __future__ import annotations

import pytest

from pipeline.actor import ENV_ACTOR, ActorError, check_actor, resolve_actor


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("ana\nalert.close by admin", r"ana\nalert.close by admin"),
        ("ana\r", r"ana\r"),
        ("ana\x1b[2J", r"ana\x1b[2J"),
        ("ana\u202enimda", r"ana\u202enimda"),
        ("ana\u2028admin", r"ana\u2028admin"),
        ("an\u200ba", r"an\u200ba"),
        ("ana\x7f", r"ana\x7f"),
    ],
)
def test_control_and_format_characters_are_refused(name: str, shown: str, monkeypatch) -> None:
    with pytest.raises(ActorError, match="--actor must be one line of printable text") as refused:
        resolve_actor(name)
    assert f'got "{shown}"' in str(refused.value)
    monkeypatch.setenv(ENV_ACTOR, name)
    with pytest.raises(ActorError, match=r"\$TOKENWATCH_ACTOR must be one line"):
        resolve_actor(None)


@pytest.mark.parametrize("name", ["ana", "Ana Müller", "CORP\\alice", "ops-bot@example.com", "👩\u200d💻 ana"])
def test_ordinary_names_pass_unchanged(name: str, monkeypatch) -> None:
    assert resolve_actor(name) == name
    monkeypatch.setenv(ENV_ACTOR, name)
    assert resolve_actor(None) == name


def test_a_very_long_name_is_refused() -> None:
    with pytest.raises(ActorError, match="is 1,000 characters long; at most 256"):
        check_actor("a" * 1000, "--actor")


def test_without_flag_or_environment_the_login_name_is_used(monkeypatch) -> None:
    monkeypatch.delenv(ENV_ACTOR, raising=False)
    monkeypatch.setattr("getpass.getuser", lambda: "ana")
    assert resolve_actor(None) == "ana"
    monkeypatch.setattr("getpass.getuser", lambda: (_ for _ in ()).throw(KeyError("uid")))
    assert resolve_actor(None) == "unknown"
