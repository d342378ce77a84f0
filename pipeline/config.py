"""Typed configuration: one TOML file, overridable from the environment.

Every key can be set as ``TOKENWATCH_<SECTION>__<KEY>`` (``__`` nests), e.g.
``TOKENWATCH_ENGINE__ALLOWED_LATENESS_S=10``. Settings are built once and
handed down as sub-settings; detector sections are validated against each
detector's own ``Config`` when the detectors are built, so a typo fails at
start, not silently. ``tokenwatch config defaults`` prints every key with its
default and description (``pipeline/data/tokenwatch.toml`` is that output).

The bottom layer of ``pipeline`` (README "Layout"): this module and each package's
``config`` module (``pipeline.runtime.config``, ``pipeline.kafka.config``, …, and
``pipeline.ingest.enrich_config``) import only pydantic, ``schemas``, ``detectors``, each
other and root leaf modules, never the code that reads the settings, which imports them;
``tests/test_layering.py`` checks it.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from detectors import DETECTORS, build_detectors
from detectors.base import Detector
from detectors.state import StateLimits
from pipeline.es.config import ElasticsearchConfig
from pipeline.ingest.config import InputConfig, TrustConfig
from pipeline.ingest.enrich_config import EnrichConfig
from pipeline.kafka.config import KafkaConfig
from pipeline.keys_config import Place, place_of, single_underscore_settings, unknown_env_sections, unknown_key_message
from pipeline.response.config import ResponseConfig
from pipeline.runtime.config import AlertingConfig, EngineConfig
from pipeline.service.config import ServiceConfig
from pipeline.store.config import StoreConfig
from pipeline.url_credentials import masked_url, urls_with_userinfo

# Keys that hold secrets: refused in a config file (backups, repositories); set them
# from the environment (TOKENWATCH_<SECTION>__<KEY>) or point the *_file key at a file.
SECRET_KEYS_BY_SECTION = {
    "kafka": ("sasl_password", "ssl_password"),
    "elasticsearch": ("api_key", "password"),
    "response": ("client_secret", "api_token"),
}


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key and the problem."""


# Detector sections renamed since a release (old -> new): a file still naming the old one is
# told the new name, rather than "unknown detector" (issue 15: a rule's id prefix, module,
# detector name and section are one word).
RENAMED_DETECTORS = {"post_revocation": "post_revocation_use"}


class StateConfig(BaseModel):
    model_config = {"extra": "forbid", "frozen": True}

    recent_uses: int = 4
    recent_failures: int = 2
    max_unseen_failing_tokens: int = 10_000
    idle_ttl_s: float = 86_400.0
    expired_retention_s: float = 3_600.0
    revocation_retention_s: float = 30 * 86_400.0
    max_linked_tokens: int = 64

    def limits(self) -> StateLimits:
        return StateLimits(**self.model_dump())


_STATE_DOCS = {
    "recent_uses": "Recent accepted uses remembered per token (for concurrent-use, travel and late-revocation "
    "checks); failed uses are kept apart and cannot push them out",
    "recent_failures": "Recent failed (rejected) uses remembered per token, apart from accepted ones (travel "
    "points when geo_divergence.count_failed_uses is on)",
    "max_unseen_failing_tokens": "Tokens known only from failed uses (never issued or accepted) remembered, least "
    "recently failed forgotten first; each costs about 1 KB (10,000 = ~10 MB), so a flood of made-up tokens "
    "cannot grow the state",
    "idle_ttl_s": "Forget a token not seen for this long (event time)",
    "expired_retention_s": "Keep a token this long after its expiry (post-expiry use detection)",
    "revocation_retention_s": "Keep family/session/subject revocations this long after last activity",
    "max_linked_tokens": "Token ids remembered per family/session/subject for late-revocation checks",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TOKENWATCH_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    input: InputConfig = InputConfig()
    engine: EngineConfig = EngineConfig()
    state: StateConfig = StateConfig()
    alerting: AlertingConfig = AlertingConfig()
    enrich: EnrichConfig = EnrichConfig()
    kafka: KafkaConfig = KafkaConfig()
    elasticsearch: ElasticsearchConfig = ElasticsearchConfig()
    service: ServiceConfig = ServiceConfig()
    store: StoreConfig = StoreConfig()
    response: ResponseConfig = ResponseConfig()
    trust: TrustConfig = TrustConfig()
    detectors: dict[str, dict[str, Any]] = {}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [env_settings, init_settings]
        toml_file = settings_cls.model_config.get("toml_file")
        if toml_file:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml_file))
        return tuple(sources)

    def build_detectors(self) -> list[Detector]:
        for old, new in RENAMED_DETECTORS.items():
            if old in self.detectors:
                raise ConfigError(
                    f"detectors.{old} was renamed to detectors.{new}: "
                    f"rename the [detectors.{old}] section (its keys are unchanged)"
                )
        for name, section in self.detectors.items():  # each section checked here, so errors name it
            if name not in DETECTORS:
                raise ConfigError(unknown_key_message(Place(("detectors", name), tuple(DETECTORS)), "detector"))
            try:
                DETECTORS[name].Config.model_validate(section)
            except ValidationError as exc:
                raise ConfigError(_first_error(exc, DETECTORS[name].Config, ("detectors", name))) from None
        try:
            return build_detectors(self.detectors)
        except ValidationError as exc:
            raise ConfigError(f"detectors: {_first_error(exc)}") from None
        except ValueError as exc:
            raise ConfigError(str(exc)) from None


def load_settings(path: Path | None = None) -> Settings:
    """Read ``path`` (TOML) with environment overrides; raise ``ConfigError`` with the key."""
    settings: Settings  # a FileSettings below: a subclass built at run time
    misspelt = unknown_env_sections(tuple(Settings.model_fields))  # the loader would ignore them
    if misspelt:
        raise ConfigError(unknown_key_message(misspelt[0], "section"))
    unread = single_underscore_settings(Settings)  # the loader would ignore them too
    if unread:
        variable, meant = unread[0]
        raise ConfigError(f"{variable} is not read: a setting's variable puts two underscores between "
                          f"section and key; rename it {meant}")
    try:
        if path is None:
            settings = Settings()
        elif not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        else:
            try:
                document = tomllib.loads(path.read_text(encoding="utf-8"))
            except tomllib.TOMLDecodeError as exc:
                raise ConfigError(f"{path}: invalid TOML: {exc}") from None
            _reject_secrets(document, path)
            bound = type("FileSettings", (Settings,), {"model_config": {**Settings.model_config, "toml_file": path}})
            settings = bound()
    except ValidationError as exc:
        raise ConfigError(_first_error(exc, Settings)) from None
    except SettingsError as exc:  # an environment override that does not parse
        cause = f": {exc.__cause__}" if exc.__cause__ else ""
        raise ConfigError(f"{exc}{cause}") from None
    _reject_credential_urls(settings)
    settings.build_detectors()  # validate detector sections now (environment-only settings too)
    return settings


def _reject_secrets(document: dict[str, Any], path: Path) -> None:
    for section, keys in SECRET_KEYS_BY_SECTION.items():
        table = document.get(section)
        found = [key for key in keys if isinstance(table, dict) and key in table]
        if found:
            env = f"TOKENWATCH_{section.upper()}__{found[0].upper()}"
            raise ConfigError(
                f"{path}: {section}.{found[0]} is a secret and must not be in a config file: "
                f"set {env} (or a {section}.*_file key)"
            )


def _reject_credential_urls(settings: Settings) -> None:
    """Any URL-valued key anywhere (responders, notifiers, detector tables, a future section),
    from the file or the environment: its secret belongs in a *_env/*_file key or the environment."""
    for key in urls_with_userinfo(settings.model_dump(mode="json")):  # SecretStr dumps masked
        section = key.split(".", 1)[0]
        raise ConfigError(
            f"{key}: a URL must not carry a user name or password: put the secret in the environment "
            f"(TOKENWATCH_{section.upper()}__<KEY>) or the section's *_env/*_file key"
        )


_MASK = "**********"  # what pydantic shows for a SecretStr
# Plain-text keys that hold a secret by name (a SecretStr field masks itself); *_env and
# *_file keys only say where a secret is and stay visible.
_SECRET_NAME = re.compile(r"(^|_)(password|passwd|passphrase|secret|token|api_key|apikey|private_key)$", re.I)


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The effective settings as JSON data with every secret masked: SecretStr fields, keys
    named like a secret, and the userinfo of any URL (refused at load; masked here as well)."""
    masked: dict[str, Any] = _masked(settings.model_dump(mode="json"))
    return masked


def changed_settings(settings: Settings) -> list[str]:
    """The dotted keys whose effective value is not the default, from the file or the
    environment alike (a detector key set to its default value does not count)."""
    effective, default = _leaves(_comparable(settings)), _leaves(_comparable(Settings.model_construct()))
    return sorted(key for key in effective.keys() | default.keys() if effective.get(key) != default.get(key))


def _comparable(settings: Settings) -> dict[str, Any]:
    """``settings`` as JSON data, each detector's section with its defaults filled in."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    data["detectors"] = {name: cls.Config.model_validate(settings.detectors.get(name, {})).model_dump(mode="json")
                         for name, cls in DETECTORS.items()}
    return data


def _leaves(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(_leaves(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _masked(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v, key) for v in value]
    if isinstance(value, str):
        return _MASK if value and _SECRET_NAME.search(key) else masked_url(value)
    return value


def _first_error(exc: ValidationError, model: type[BaseModel] | None = None, prefix: tuple[str, ...] = ()) -> str:
    """The first error as ``key: problem``; an unknown key names the nearest known one
    (``model``'s fields at that level), in the spelling it was given in (file or environment).
    An unknown key goes first: a required key reported missing beside it is usually its typo."""
    errors = exc.errors()
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    more = f" (+{exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    place = place_of(model, err["loc"]) if model is not None and err["type"] == "extra_forbidden" else None
    if place is not None:
        return unknown_key_message(Place((*prefix, *place.keys), place.known)) + more
    where = ".".join(str(p) for p in (*prefix, *err["loc"]))
    return f"{where}: {err['msg']}{more}"


# -- documented defaults --------------------------------------------------------

def rules_markdown() -> str:
    """The rule table of README "Detection rules", from the detectors' metadata."""
    rows = [
        "| rule | severity (risk) | response | MITRE ATT&CK | what it means |",
        "| --- | --- | --- | --- | --- |",
    ]
    for cls in DETECTORS.values():
        for rule in cls.rules:
            techniques = ", ".join(tid for tid, _ in rule.techniques)
            rows.append(
                f"| `{rule.id}` | {rule.severity} ({rule.risk_score}) | {rule.response} "
                f"| {techniques} | {rule.description} |"
            )
    return "\n".join(rows) + "\n"


def defaults_toml() -> str:
    """Every configuration key with its default and description, as TOML."""
    lines = [
        "# tokenwatch configuration: every key with its default.",
        "# Generated by `make regen` (pipeline/regen.py); override any key from the environment",
        "# as TOKENWATCH_<SECTION>__<KEY> (e.g. TOKENWATCH_ENGINE__ALLOWED_LATENESS_S=10).",
        "# Secrets never go here: see README 'Secrets'.",
    ]
    for section, model in (
        ("input", InputConfig),
        ("engine", EngineConfig),
        ("state", StateConfig),
        ("alerting", AlertingConfig),
        ("enrich", EnrichConfig),
        ("kafka", KafkaConfig),
        ("elasticsearch", ElasticsearchConfig),
        ("service", ServiceConfig),
        ("store", StoreConfig),
        ("response", ResponseConfig),
        ("trust", TrustConfig),
    ):
        lines += _section_lines(section, model, _STATE_DOCS if model is StateConfig else {})
    for name, cls in DETECTORS.items():
        lines += ["", f"[detectors.{name}]"]
        lines += [f"# {rule.id}: {rule.description}" for rule in cls.rules]
        lines += _model_lines(cls.Config, {})
    return "\n".join(lines) + "\n"


def _section_lines(section: str, model: type[BaseModel], docs: dict[str, str]) -> list[str]:
    """``[section]`` with its keys, then a ``[section.sub]`` table per nested model."""
    out = ["", f"[{section}]", *_model_lines(model, docs)]
    for name, info in model.model_fields.items():
        default = info.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            out += _section_lines(f"{section}.{name}", type(default), {})
    return out


def _model_lines(model: type[BaseModel], docs: dict[str, str]) -> list[str]:
    out: list[str] = []
    for name, info in model.model_fields.items():
        default = info.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            continue  # its own [section.name] table
        doc = info.description or docs.get(name)
        if doc:
            out.append(f"# {doc}")
        if default is None:
            out.append(f"# {name} =")
        elif isinstance(default, list) and default and isinstance(default[0], BaseModel):
            out.append(f"# {name}: see README")
        else:
            out.append(f"{name} = {_toml_value(default)}")
    return out


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else _toml_value(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, Path):
        return _toml_value(str(value))
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return "[" + ", ".join(_toml_value(v) for v in items) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    if type(value).__module__.startswith("pydantic"):  # URLs and the like render as their text
        return _toml_value(str(value))
    raise TypeError(f"cannot render {value!r} as TOML")
