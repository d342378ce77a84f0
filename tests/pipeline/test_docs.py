"""The README's rule table is the detectors' own metadata (docs cannot drift)."""

from __future__ import annotations

from pathlib import Path

from pipeline.config import rules_markdown

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_rule_table_matches_the_registered_rules() -> None:
    assert rules_markdown() in README.read_text(), "run: tokenwatch rules, paste into README"


def test_readme_shows_the_two_setup_commands_first() -> None:
    text = README.read_text()
    assert text.index("make demo") < text.index("## ") and text.index("make test") < text.index("## ")
