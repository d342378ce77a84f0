"""Every adapter module is registered, and format detection never overlaps."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import orjson
import pytest

import schemas.sources as sources
from schemas.sources import FORMATS, UnknownFormat, detect_format

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "formats"
_NOT_ADAPTERS = {
    "base", "common", "entra_shapes", "entra_audit", "k8s_deletions", "cloudtrail_aws", "keycloak_admin",
    "keycloak_flat", "keycloak_text",
}


def test_every_adapter_module_is_registered() -> None:
    modules = {m.name for m in pkgutil.iter_modules(sources.__path__)} - _NOT_ADAPTERS
    registered = {type(adapter).__module__.rsplit(".", 1)[-1] for adapter in FORMATS.values()}
    assert modules == registered


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_adapter_module_exposes_its_name(name: str) -> None:
    module = importlib.import_module(type(FORMATS[name]).__module__)
    assert module is not None and FORMATS[name].name == name


def test_sample_lines_of_registered_formats_match_exactly_one_format() -> None:
    checked = 0
    for sample in sorted(SAMPLES.glob("*.jsonl")):
        for line in sample.read_bytes().splitlines():
            raw = orjson.loads(line)
            matching = [name for name, fmt in FORMATS.items() if fmt.matches(raw)]
            if sample.stem in FORMATS:
                assert matching == [sample.stem], (sample.name, matching)
                checked += 1
            else:
                assert len(matching) <= 1, (sample.name, matching)
    assert checked >= 3


def test_unknown_keys_are_an_unknown_format() -> None:
    with pytest.raises(UnknownFormat, match="no adapter matches keys"):
        detect_format({"hello": "world"})
