"""The configuration layer (README "Layout"): the settings load without the code that reads
them, and the names they accept agree with the registries that code keeps.

``tests/test_layering.py`` checks the imports as written; this runs them, and checks the
two name lists the layer keeps because it may not import the registries themselves."""

from __future__ import annotations

import subprocess
import sys
import typing
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.response.config import ResponderSettings, ResponseConfig
from pipeline.response.responders import RESPONDERS
from pipeline.service.config import SINK_NAMES, ServiceConfig
from pipeline.sinks import SINKS
from tests.test_layering import CONFIG, unit

ROOT = Path(__file__).resolve().parents[2]
ROOT_LEAVES = {"pipeline.url_credentials", "pipeline.secrets"}


def _loaded_by(module: str) -> tuple[list[str], list[str]]:
    """The pipeline modules and the client libraries a fresh interpreter holds after importing ``module``."""
    code = (
        f"import sys, {module}\n"
        "print(' '.join(sorted(m for m in sys.modules if m.split('.')[0] == 'pipeline')))\n"
        "print(' '.join(m for m in ('elasticsearch', 'httpx', 'kafka', 'joserfc', 'apscheduler') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    pipeline_modules, libraries = (out.split("\n") + [""])[:2]
    return pipeline_modules.split(), libraries.split()


def test_loading_the_settings_runs_no_pipeline_package_code() -> None:
    modules, libraries = _loaded_by("pipeline.config")
    packages = {f"pipeline.{path.parent.name}" for path in (ROOT / "pipeline").glob("*/__init__.py")}
    outside = [m for m in modules if unit(m) != CONFIG and m != "pipeline" and m not in packages | ROOT_LEAVES]
    assert outside == []  # a package __init__ that re-exported its code would show here
    assert {"pipeline.runtime.config", "pipeline.es.config", "pipeline.response.config"} <= set(modules)
    assert libraries == []  # no Elasticsearch, HTTP or Kafka client to read a TOML file


def test_service_sink_names_are_the_registered_sinks() -> None:
    assert sorted(SINK_NAMES) == sorted(SINKS)
    assert all(ServiceConfig(sinks=(name,)).sinks == (name,) for name in SINKS)


def test_responder_settings_are_one_model_per_registered_responder() -> None:
    models = typing.get_args(typing.get_args(ResponderSettings)[0])
    assert sorted(model.model_fields["type"].default for model in models) == sorted(RESPONDERS)


def test_an_unregistered_responder_type_is_refused_when_the_settings_load() -> None:
    with pytest.raises(ValidationError, match="does not match any of the expected tags: 'rfc7009', 'keycloak'"):
        ResponseConfig.model_validate({"responders": {"idp": {"type": "ldap", "base_url": "https://x"}}})
