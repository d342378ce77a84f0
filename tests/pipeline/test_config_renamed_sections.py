"""A detector section renamed by issue 15 ("one concept, one name"): a configuration still
naming the old section is told the new one, from a file and from the environment alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, load_settings

RENAMED = "detectors.post_revocation was renamed to detectors.post_revocation_use"


def test_a_file_naming_the_old_section_is_told_the_new_one(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[detectors.post_revocation]\npropagation_lag_s = 90\n")
    with pytest.raises(ConfigError, match=RENAMED) as raised:
        load_settings(path)
    assert "[detectors.post_revocation] section" in str(raised.value)


def test_an_environment_override_naming_the_old_section_is_told_the_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TOKENWATCH_DETECTORS__POST_REVOCATION__PROPAGATION_LAG_S", "90")
    path = tmp_path / "c.toml"
    path.write_text("")
    with pytest.raises(ConfigError, match=RENAMED):
        load_settings(path)


def test_the_new_section_applies(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[detectors.post_revocation_use]\npropagation_lag_s = 90\n")
    [detector] = [d for d in load_settings(path).build_detectors() if d.name == "post_revocation_use"]
    assert detector.config.propagation_lag_s == 90
