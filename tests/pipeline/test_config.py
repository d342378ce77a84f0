"""Configuration: documented defaults, environment overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import ConfigError, Settings, defaults_toml, load_settings

SHIPPED = Path(__file__).resolve().parents[2] / "pipeline" / "data" / "tokenwatch.toml"


def test_shipped_defaults_load_to_the_built_in_defaults() -> None:
    loaded, default = load_settings(SHIPPED), Settings()
    assert loaded.model_dump(exclude={"detectors"}) == default.model_dump(exclude={"detectors"})
    assert [d.config for d in loaded.build_detectors()] == [d.config for d in default.build_detectors()]


def test_every_detector_threshold_is_documented() -> None:
    text = defaults_toml()
    for section in ("[detectors.replay]", "[detectors.geo_divergence]", "[detectors.scope_escalation]",
                    "[detectors.post_revocation_use]"):
        assert section in text
    assert "refresh_grace_s = 30" in text and "propagation_lag_s = 60" in text


def test_file_values_apply_and_environment_overrides_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[engine]\nallowed_lateness_s = 20\ndedup_window_s = 60\n[detectors.replay]\nrefresh_grace_s = 10\n")
    monkeypatch.setenv("TOKENWATCH_ENGINE__ALLOWED_LATENESS_S", "7")
    settings = load_settings(path)
    assert settings.engine.allowed_lateness_s == 7
    assert settings.engine.dedup_window_s == 60
    replay = next(d for d in settings.build_detectors() if d.name == "replay")
    assert replay.config.refresh_grace_s == 10


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[engine]\nallowed_lateness = 3\n", "engine.allowed_lateness"),
        ("[engine]\nallowed_lateness_s = -1\n", "engine.allowed_lateness_s"),
        ("[detectors.replay]\nrefresh_grace = 5\n", "refresh_grace"),
        ("[detectors.nonsense]\n", "unknown detector"),
        ('[[enrich.allowlist]]\nname = "corp"\ncidrs = ["10.0.0.0/33"]\n', "10.0.0.0/33"),
        ("[engine\n", "invalid TOML"),
    ],
)
def test_bad_configuration_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace(".", r"\.")):
        load_settings(path)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "absent.toml")


def test_disabled_detector_is_not_built(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[detectors.geo_divergence]\nenabled = false\n")
    names = [d.name for d in load_settings(path).build_detectors()]
    assert "geo_divergence" not in names and "replay" in names
