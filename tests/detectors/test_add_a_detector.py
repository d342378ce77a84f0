"""README "Add a detector", followed as written (issue 15): the example module is taken from
the README into a temporary package, registered with ``detectors.register`` and run through
the whole ``detect`` path; no file of ours changes, and the generated rule table, default
configuration and Kibana export pick it up. Added to ``BUILTIN`` (step 2 as a built-in takes
it), the registry's tests still hold, ``make regen`` rewrites only generated files, and a rule
that ships off changes no alert of the default configuration: so no other test moves.

Where the recipe has been followed in a checkout (``detectors/first_use.py`` built in), the
same tests run on that module."""

from __future__ import annotations

import importlib
import importlib.util
import re
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import detectors
from detectors import BUILTIN, DETECTORS, build_detectors, register
from detectors.state import StateStore
from detectors.state_codec import restore, snapshot_records
from detectors.tables import EPOCH_SECONDS
from pipeline import regen
from pipeline.config import defaults_toml, rules_markdown
from tests.detect_helpers import detect_lines
from tests.detectors import test_detector_config as config_tests
from tests.detectors import test_registry as registry_tests
from tests.factories import FRANKFURT_HOSTING, event, rule_hits, run

ROOT = Path(__file__).resolve().parents[2]
SECTION = (ROOT / "README.md").read_text(encoding="utf-8").split("\n## Add a detector\n", 1)[1].split("\n## ", 1)[0]
RULE = "first_use.from_hosting"
ON = {"first_use": {"enabled": True}}  # the example ships off, as the recipe says a new rule does
ONLY_THE_EXAMPLE = {**{cls.name: {"enabled": False} for cls in BUILTIN}, **ON}
T = datetime(2026, 11, 24, 9, 0, tzinfo=timezone.utc)


def readme_example() -> str:
    """The one Python block of the section, as a reader would copy it."""
    [block] = re.findall(r"```python\n(.*?)```", SECTION, re.S)
    return textwrap.dedent(block)


@pytest.fixture
def example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """Step 1 (the module, in a package of its own) and step 2 (``register``), undone after."""
    if importlib.util.find_spec("detectors.first_use") is not None:  # the recipe followed in this checkout
        module = importlib.import_module("detectors.first_use")
        assert DETECTORS["first_use"] is module.FirstUseDetector
        yield module
        return
    package = tmp_path / "recipe_detectors"
    package.mkdir()
    (package / "__init__.py").write_text("", encoding="utf-8")
    (package / "first_use.py").write_text(readme_example(), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("recipe_detectors.first_use")
    register(module.FirstUseDetector)
    try:
        yield module
    finally:
        DETECTORS.pop("first_use", None)
        for name in ("recipe_detectors.first_use", "recipe_detectors"):
            sys.modules.pop(name, None)


def gateway(ip: str, seconds: int, request_id: str, token: str = "at-recipe-1") -> dict[str, Any]:
    """A line of README "Gateway layout" (tokenwatch's documented resource-server layout)."""
    when = T + timedelta(seconds=seconds)
    iat = int(T.timestamp())
    return {
        "timestamp": when.isoformat().replace("+00:00", "Z"), "request_id": request_id, "client_ip": ip,
        "method": "GET", "path": "/orders/42", "status": 200, "user_agent": "curl/8.5",
        "required_scope": "orders:read",
        "jwt": {"jti": token, "sub": "alice", "client_id": "portal", "scope": "openid orders:read",
                "iss": "https://sso.example.org/realms/main", "aud": "orders-api", "iat": iat, "exp": iat + 3600},
    }


def test_the_example_is_registered_under_its_name_and_ships_off(example: ModuleType) -> None:
    assert DETECTORS["first_use"] is example.FirstUseDetector
    [built] = build_detectors({**ONLY_THE_EXAMPLE, "first_use": {"enabled": True, "retention_s": 60}})
    assert (type(built), built.config.retention_s) == (example.FirstUseDetector, 60.0)
    assert example.FirstUseDetector not in [type(d) for d in build_detectors()]


def test_attack_through_detect_raises_exactly_the_example_alert(example: ModuleType) -> None:
    found = detect_lines([gateway("88.198.10.10", 5, "gw-1"), gateway("88.198.10.10", 65, "gw-2")],
                         {"detectors": ON})
    assert found.hits == [(RULE, "at-recipe-1")]
    [alert] = found.alerts
    assert alert["rule"] == {"id": RULE, "name": "Token first used from a hosting network", "category": "first_use"}
    assert (alert["alert"]["severity"], alert["alert"]["risk_score"], alert["response"]["action"]) == ("medium", 50, "none")
    assert alert["alert"]["summary"] == (
        "Token first used from 88.198.10.10 (DE, Hetzner Online GmbH), a hosting network (token at-recipe-1, subject alice)."
    )
    assert (alert["user"]["id"], alert["client"]["id"], alert["source"]["ip"], alert["source"]["hosting"]) == (
        "alice", "portal", "88.198.10.10", True,
    )
    assert [(e["kind"], e["ip"], e["request_id"]) for e in alert["evidence"]] == [("used", "88.198.10.10", "gw-1")]
    assert alert["@timestamp"] == "2026-11-24T09:00:05Z"


def test_benign_twin_through_detect_raises_nothing(example: ModuleType) -> None:
    """The same two uses from the user's home network."""
    found = detect_lines([gateway("79.200.1.10", 5, "gw-1"), gateway("79.200.1.10", 65, "gw-2")],
                         {"detectors": ON})
    assert found.alerts == [] and found.dead_letters == []


def test_only_a_first_use_counts_until_it_is_forgotten(example: ModuleType) -> None:
    home_first = [event("used", 0, token="at-1"), event("used", 600, token="at-1", place=FRANKFURT_HOSTING)]
    assert rule_hits(run(home_first, ONLY_THE_EXAMPLE)) == []
    [detector] = build_detectors({**ONLY_THE_EXAMPLE, "first_use": {"enabled": True, "retention_s": 60}})
    state = StateStore()
    assert detector.process(home_first[0], state) == []
    detector.expire(home_first[0].time.timestamp() + 61, state)
    assert [f.rule.id for f in detector.process(home_first[1], state)] == [RULE]


def test_its_table_survives_a_changelog_round_trip(example: ModuleType) -> None:
    """A table of event times: the changelog writes and restores it with no codec of its own."""
    [detector] = build_detectors(ONLY_THE_EXAMPLE)
    state = StateStore()
    detector.process(event("used", 0, token="at-1"), state)
    restored = restore(StateStore(), snapshot_records(state))
    assert list(restored.table("first_use", "first_use", EPOCH_SECONDS).items()) == [
        ("at-1", event("used", 0).time.timestamp()),
    ]


def test_generated_rule_table_and_defaults_pick_it_up(example: ModuleType) -> None:
    assert rules_markdown().endswith(
        "| `first_use.from_hosting` | medium (50) | none | T1550.001 "
        "| A token's first accepted use came from a hosting network. |\n"
    )
    assert defaults_toml().endswith(
        "\n[detectors.first_use]\n"
        "# first_use.from_hosting: A token's first accepted use came from a hosting network.\n"
        "# Off until tuned on your traffic (a new rule ships off)\n"
        "enabled = false\n"
        "# Forget a token's first use after this long\n"
        "retention_s = 86400.0\n"
    )


# -- step 2 as a built-in takes it: BUILTIN extended, then `make regen` ----------------------
@pytest.fixture
def built_in(example: ModuleType, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The example in ``BUILTIN`` too, as the registry line adds it (undone after)."""
    if example.FirstUseDetector not in detectors.BUILTIN:
        monkeypatch.setattr(detectors, "BUILTIN", (*detectors.BUILTIN, example.FirstUseDetector))
    return example


def test_built_in_the_registry_tests_hold_without_an_edit(built_in: ModuleType) -> None:
    """What test_registry.py and test_detector_config.py check, derived from ``BUILTIN``."""
    modules = [*(m for m in registry_tests.detector_modules() if m is not built_in), built_in]
    assert registry_tests.registry_faults(detectors.BUILTIN, DETECTORS, modules) == []
    without_the_line = tuple(cls for cls in detectors.BUILTIN if cls is not built_in.FirstUseDetector)
    assert registry_tests.registry_faults(without_the_line, DETECTORS, modules) == [
        f"{built_in.__name__}.FirstUseDetector is not in BUILTIN", "FirstUseDetector is registered but not in BUILTIN",
        f"registry order {list(DETECTORS)} is not BUILTIN's",
    ]
    config = config_tests.declared_config(built_in.FirstUseDetector)
    assert config is built_in.FirstUseConfig
    config_tests.test_config_is_the_type_parameter_and_declared_nowhere_else(built_in.FirstUseDetector, config)
    registry_tests.test_rule_prefix_is_the_detector_name_and_its_config_section("first_use")


def test_built_in_make_regen_renders_it_into_the_table_the_defaults_and_the_kibana_export(
    built_in: ModuleType,
) -> None:
    """Step 4 writes it there; the Security rule lists its technique already (another rule's),
    the country positions do not depend on rules."""
    naming = [g.path for g in regen.GENERATED if RULE in g.render((ROOT / g.path).read_text(encoding="utf-8"))]
    assert naming == ["README.md", "pipeline/data/tokenwatch.toml", "pipeline/data/kibana/tokenwatch.ndjson"]


def test_built_in_it_ships_off_so_the_default_configuration_alerts_as_before(built_in: ModuleType) -> None:
    """The other detectors' exact-hit tests and the demo run the defaults: the example is not
    built there, while turned on it does fire on the same vendor lines."""
    assert [type(d) for d in build_detectors()] == [cls for cls in detectors.BUILTIN if cls is not built_in.FirstUseDetector]
    lines = (ROOT / "tests" / "data" / "formats" / "cloudtrail.jsonl").read_bytes().splitlines()
    default, on = detect_lines(lines), detect_lines(lines, {"detectors": ON})
    assert [hit for hit in on.hits if hit[0] != RULE] == default.hits
    assert [hit[0] for hit in on.hits].count(RULE) == 1 and RULE not in [hit[0] for hit in default.hits]


def test_the_recipe_cites_only_files_that_exist() -> None:
    cited = set(re.findall(r"`((?:detectors|tests|pipeline|notebooks)/[\w./]+)`", SECTION))
    assert {"detectors/__init__.py", "tests/detectors/test_registry.py", "tests/factories.py"} <= cited
    assert sorted(path for path in cited if not (ROOT / path).exists()) == []
    assert Path(__file__).relative_to(ROOT).as_posix() in SECTION
