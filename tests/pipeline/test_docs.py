"""The README's set-up commands and walk-throughs run as written (its generated rule table is
checked by tests/test_regen.py)."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_shows_the_two_setup_commands_first() -> None:
    text = README.read_text()
    assert text.index("make demo") < text.index("## ") and text.index("make test") < text.index("## ")


def test_the_automated_response_walk_through_runs_as_written(tmp_path: Path, monkeypatch, capsys) -> None:
    """Steps 1, 3 and 4 of "Turn on automated response": its keys, its configuration (checked
    with its secrets in the environment) and a handle sealed and opened by hand."""
    import io
    import re

    from pipeline.cli.main import main

    section = README.read_text().split("### Turn on automated response", 1)[1].split("\n## ", 1)[0]
    [toml_block] = re.findall(r"```toml\n(.*?)```", section, re.S)
    keys = tmp_path / "keys"
    assert main(["handles", "keygen", "--out-dir", str(keys)]) == 0
    config = tmp_path / "tokenwatch.toml"
    body = "\n".join(line[3:] if line.startswith("   ") else line for line in toml_block.splitlines())
    config.write_text(body.replace("/etc/tokenwatch/keys", str(keys)), encoding="utf-8")
    for name in ("TW_PORTAL_SECRET", "TW_MOBILE_SECRET", "TW_KC_ADMIN_SECRET"):
        monkeypatch.setenv(name, f"secret-of-{name}")
    monkeypatch.setenv("TOKENWATCH_NOTIFY_URL", "https://hooks.slack.com/services/T0/B0/hook-secret")
    capsys.readouterr()
    assert main(["config", "check", "--show", str(config)]) == 0
    checked = capsys.readouterr().out
    assert '"kc-admin"' in checked and "secret-of-" not in checked and "hook-secret" not in checked
    monkeypatch.setattr("sys.stdin", io.StringIO("a-refresh-token-of-portal"))
    assert main(["handles", "seal", "--public-key", str(keys / "handle-key.pub.pem"), "--token", "-",
                 "--token-type", "refresh_token", "--client-id", "portal"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO(capsys.readouterr().out))
    assert main(["handles", "open", "--key", str(keys / "handle-key.pem")]) == 0
    assert "client_id=portal" in capsys.readouterr().out
