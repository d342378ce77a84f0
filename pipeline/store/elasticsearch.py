"""The store on Elasticsearch / OpenSearch, beside the documents the service's sink writes.

Alert documents live in the alert index family (``<prefix>-alerts-YYYY.MM.DD``, ``_id`` =
alert id, the same index the sink picks), actions in the action family. Analyst decisions
are kept apart, in ``<prefix>-triage`` (one document per triaged alert): the sink rewrites
whole alert documents whenever a finding folds into an alert, so a status kept only there
would be lost; the store mirrors ``alert.status`` into the alert document for dashboards
and merges the triage document on every read. The alert's ``response.state`` (which follows
its actions) is kept there too, for the same reason, as ``response_state``. Audit entries, suppressions and flags have
their own small indices. Writes use the configured refresh policy (``wait_for`` by
default) so the next command sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from elasticsearch import ConflictError, Elasticsearch, NotFoundError

from pipeline.es.client import client_kwargs
from pipeline.es.config import ElasticsearchConfig
from pipeline.es.documents import shape
from pipeline.es.security import status_update
from pipeline.es.templates import index_name, index_template, template_name
from pipeline.store import base
from pipeline.store.base import (
    DUE_STATES,
    ActionConflict,
    alert_key,
    apply_assign,
    apply_status,
    apply_transition,
    empty_triage,
    iso,
    latest_state,
    merge_alert,
    parse_time,
    suppress_doc,
    suppressed_entry,
)
from pipeline.store.filters import AlertFilter, IndexHints
from schemas.actions import Action, AuditEntry, Suppression

KW = {"type": "keyword", "ignore_above": 1024}
RECORD = {"type": "text", "index": False}  # the model's JSON, read back verbatim
MAX_IDS = 10_000
PAGE = 500

OWN_INDICES: dict[str, dict[str, Any]] = {
    "triage": {"alert_id": KW, "status": KW, "disposition": KW, "updated": KW, "updated_by": KW,
               "suppressed_by": KW, "response_state": KW, "assignee": KW,
               "notes": {"type": "object", "enabled": False}, "links": {"type": "object", "enabled": False}},
    "audit": {"@timestamp": {"type": "date"}, "time": KW, "actor": KW, "verb": KW, "alert_id": KW,
              "action_id": KW, "target": KW, "result": KW, "why": {"type": "text"}, "record": RECORD},
    "suppressions": {"created": KW, "expires": KW, "actor": KW, "record": RECORD},
    "flags": {"value": RECORD},
}


class ElasticsearchStore:
    """``AlertStore`` on the ``[elasticsearch]`` cluster."""

    def __init__(
        self, config: ElasticsearchConfig, *, refresh: str = "wait_for", client: Elasticsearch | None = None,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.config = config
        self.prefix = config.index_prefix
        self.client = client if client is not None else Elasticsearch(**client_kwargs(config))
        self._refresh = refresh
        self._clock = clock or (lambda: base.utcnow())
        self.ensure_indices()

    def _index(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    @property
    def _alerts(self) -> str:
        return f"{template_name(self.prefix, 'alert')}-*"

    @property
    def _actions(self) -> str:
        return f"{template_name(self.prefix, 'action')}-*"

    def ensure_indices(self) -> None:
        """Templates of the alert/action families and the store's own indices (idempotent)."""
        for kind in ("alert", "action"):
            self.client.indices.put_index_template(**index_template(self.prefix, kind))
        for name, properties in OWN_INDICES.items():
            index = self._index(name)
            if not self.client.indices.exists(index=index):
                try:
                    self.client.indices.create(index=index, mappings={"properties": properties},
                                               settings={"number_of_shards": 1})
                except Exception as exc:  # created meanwhile by another process
                    if "already_exists" not in str(exc):
                        raise

    def _search(self, index: str, query: Mapping[str, Any], size: int,
                sort: list[Any] | None = None, versions: bool = False) -> list[dict[str, Any]]:
        body: dict[str, Any] = {"index": index, "query": query, "size": size, "ignore_unavailable": True,
                                "allow_no_indices": True}
        if versions:
            body["seq_no_primary_term"] = True
        if sort:
            body["sort"] = sort
        return list(self.client.search(**body)["hits"]["hits"])

    # -- alerts ------------------------------------------------------------------------
    def _triage(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        found = self.client.mget(index=self._index("triage"), ids=ids)["docs"]
        return {d["_id"]: d["_source"] for d in found if d.get("found")}

    def _alert_hits(self, ids: list[str]) -> dict[str, dict[str, Any]]:
        """Latest stored document per id (a folded alert may sit in two daily indices)."""
        hits = self._search(self._alerts, {"ids": {"values": ids}}, size=2 * len(ids) + 10)
        best: dict[str, dict[str, Any]] = {}
        for hit in hits:
            current = best.get(hit["_id"])
            if current is None or str(hit["_source"].get("@timestamp")) > str(current["_source"].get("@timestamp")):
                best[hit["_id"]] = hit
        return best

    @staticmethod
    def _merged(source: Mapping[str, Any], triage: Mapping[str, Any] | None) -> dict[str, Any]:
        doc = dict(source)
        fields = {**empty_triage(), **{k: v for k, v in (triage or {}).items() if k in empty_triage()}}
        doc["alert"] = {**doc["alert"], "status": (triage or {}).get("status", "open")}
        doc["triage"] = fields
        if triage and triage.get("response_state"):
            doc["response"] = {**(doc.get("response") or {}), "state": triage["response_state"]}
        return doc

    def _triage_op(self, alert_id: str, fields: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """A partial triage update (keeps fields it does not name); a new document starts ``open``."""
        return [{"update": {"_index": self._index("triage"), "_id": alert_id}},
                {"doc": {"alert_id": alert_id, **fields}, "upsert": {"alert_id": alert_id, "status": "open", **fields}}]

    def put_alerts(self, alerts: Iterable[Mapping[str, Any]]) -> None:
        docs = {alert_key(d): d for d in alerts}
        if not docs:
            return
        now = self._clock()
        ids = list(docs)
        triage = self._triage(ids)
        known = self._alert_hits(ids)
        suppressions = self.active_suppressions(now)
        operations: list[Mapping[str, Any]] = []
        audits: list[AuditEntry] = []
        for alert_id, new in docs.items():
            old = self._merged(known[alert_id]["_source"], triage.get(alert_id)) if alert_id in known else None
            if old is None and alert_id in triage:
                old = {"alert": {"status": triage[alert_id].get("status", "open")}, "triage": triage[alert_id]}
            state = triage.get(alert_id, {}).get("response_state")
            doc, suppressed = merge_alert(new, old, suppressions, now, state)
            source = shape("alert", {k: v for k, v in doc.items() if k != "triage"})
            when = parse_time(source.get("@timestamp")) or now
            operations += [{"index": {"_index": index_name(self.prefix, "alert", when), "_id": alert_id}}, source]
            if suppressed is not None:
                operations += self._triage_op(alert_id, {"status": "closed", **doc["triage"]})
                audits.append(suppressed_entry(doc, suppressed, now))
        self._bulk(operations)
        for entry in audits:
            self.audit(entry)

    def _bulk(self, operations: list[Mapping[str, Any]]) -> None:
        response = self.client.bulk(operations=operations, refresh=self._refresh)
        if response.get("errors"):
            failed = [next(iter(i.values())) for i in response["items"] if next(iter(i.values())).get("error")]
            raise RuntimeError(f"store write failed for {len(failed)} documents: {failed[0].get('error')}")

    def get_alert(self, alert_id: str) -> dict[str, Any] | None:
        hit = self._alert_hits([alert_id]).get(alert_id)
        if hit is None:
            return None
        return self._merged(hit["_source"], self._triage([alert_id]).get(alert_id))

    def list_alerts(
        self, rule: str | None = None, severity: str | None = None, status: str | None = None,
        user: str | None = None, since: datetime | None = None, limit: int = 100,
    ) -> list[dict[str, Any]]:
        return self.find_alerts(AlertFilter.of(rule, severity, status, user, since), limit)

    def find_alerts(self, where: AlertFilter, limit: int = 100) -> list[dict[str, Any]]:
        """Candidates by the indexed fields, page by page (``search_after``) newest first, each
        merged with its triage and kept when ``where.matches``."""
        query = self._candidates(where.index_hints())
        if query is None or limit <= 0:
            return []
        sort = [{"@timestamp": {"order": "desc"}}, {"alert.id": {"order": "desc"}}]
        found: list[dict[str, Any]] = []
        seen: set[str] = set()
        after: list[Any] | None = None
        while len(found) < limit:
            body: dict[str, Any] = {"index": self._alerts, "query": query, "size": PAGE, "sort": sort,
                                    "ignore_unavailable": True, "allow_no_indices": True}
            if after is not None:
                body["search_after"] = after
            hits = list(self.client.search(**body)["hits"]["hits"])
            page: dict[str, dict[str, Any]] = {}
            for hit in hits:  # the newest copy of a folded alert comes first
                if hit["_id"] not in seen:
                    seen.add(hit["_id"])
                    page[hit["_id"]] = hit["_source"]
            triage = self._triage(list(page))
            for alert_id, source in page.items():
                doc = self._merged(source, triage.get(alert_id))
                if where.matches(doc):
                    found.append(doc)
            if len(hits) < PAGE:
                break
            after = hits[-1]["sort"]
        return found[:limit]

    def _candidates(self, hints: IndexHints) -> dict[str, Any] | None:
        """The query narrowing to the hints (None: nothing can match)."""
        filters: list[dict[str, Any]] = []
        must_not: list[dict[str, Any]] = []
        if hints.severities is not None:
            filters.append({"terms": {"alert.severity": list(hints.severities)}})
        if hints.rule_prefixes is not None:
            filters.append({"bool": {"minimum_should_match": 1, "should": [
                q for p in hints.rule_prefixes for q in ({"term": {"rule.id": p}}, {"prefix": {"rule.id": p + "."}})]}})
        span = {k: v.astimezone(timezone.utc).isoformat()
                for k, v in (("gte", hints.since), ("lte", hints.until)) if v is not None}
        if span:
            filters.append({"range": {"@timestamp": span}})
        if hints.statuses is not None:
            # The triage index decides (the alert document's mirror may be stale after a sink rewrite).
            wanted = list(hints.statuses)
            if "open" in wanted:
                other = {"bool": {"must_not": [{"terms": {"status": wanted}}]}}
                excluded = [h["_id"] for h in self._search(self._index("triage"), other, size=MAX_IDS)]
                if excluded:
                    must_not.append({"ids": {"values": excluded}})
            else:
                triaged = [h["_id"] for h in self._search(self._index("triage"), {"terms": {"status": wanted}},
                                                          size=MAX_IDS)]
                if not triaged:
                    return None
                filters.append({"ids": {"values": triaged}})
        return {"bool": {"filter": filters, "must_not": must_not}}

    def alert_ids_with_prefix(self, prefix: str, limit: int = 10) -> list[str]:
        hits = self._search(self._alerts, {"prefix": {"alert.id": prefix}}, size=2 * limit + 10)
        return sorted({h["_id"] for h in hits})[:limit]

    def known_alert_ids(self, ids: Collection[str]) -> set[str]:
        wanted, known = list(ids), set()
        for start in range(0, len(wanted), PAGE):
            chunk = wanted[start:start + PAGE]
            hits = self._search(self._alerts, {"ids": {"values": chunk}}, size=2 * len(chunk) + 10)
            known |= {h["_id"] for h in hits}
        return known

    def set_status(
        self, alert_id: str, status: str, actor: str, disposition: str | None = None, note: str | None = None,
        link: str | None = None, reopen: bool = False,
    ) -> dict[str, Any]:
        hit = self._alert_hits([alert_id]).get(alert_id)
        if hit is None:
            raise KeyError(alert_id)
        current = self._merged(hit["_source"], self._triage([alert_id]).get(alert_id))
        doc, entry = apply_status(current, status, actor, disposition, note, self._clock(), link, reopen)
        self._bulk([
            *self._triage_op(alert_id, {"status": status, **doc["triage"]}),
            {"update": {"_index": hit["_index"], "_id": alert_id}},
            {"doc": status_update(status)},  # mirror for dashboards; the triage index decides
        ])
        self.audit(entry)
        return doc

    def assign(self, alert_id: str, assignee: str | None, actor: str, note: str | None = None) -> dict[str, Any]:
        hit = self._alert_hits([alert_id]).get(alert_id)
        if hit is None:
            raise KeyError(alert_id)
        current = self._merged(hit["_source"], self._triage([alert_id]).get(alert_id))
        doc, entry = apply_assign(current, assignee, actor, note, self._clock())
        self._bulk(self._triage_op(alert_id, {"status": doc["alert"]["status"], **doc["triage"]}))
        self.audit(entry)
        return doc

    # -- suppressions ------------------------------------------------------------------
    def add_suppression(self, s: Suppression) -> None:
        self.client.index(index=self._index("suppressions"), id=s.id, refresh=self._refresh, document={
            "created": iso(s.created), "expires": iso(s.expires), "actor": s.actor, "record": s.model_dump_json(),
        })

    def remove_suppression(self, suppression_id: str) -> Suppression | None:
        try:
            found = self.client.get(index=self._index("suppressions"), id=suppression_id)
            self.client.delete(index=self._index("suppressions"), id=suppression_id, refresh=self._refresh)
        except NotFoundError:
            return None
        return Suppression.model_validate_json(found["_source"]["record"])

    def close_suppressed(self, s: Suppression, limit: int = 10_000) -> list[str]:
        now = self._clock()
        candidates = self.list_alerts(status="open", user=s.user_id, limit=(MAX_IDS - 10) // 2)  # one page
        matching = [d for d in candidates if s.matches(d, now)][:limit]
        operations: list[Mapping[str, Any]] = []
        audits: list[AuditEntry] = []
        hits = self._alert_hits([alert_key(d) for d in matching]) if matching else {}
        for doc in matching:
            alert_id = alert_key(doc)
            closed, entry = suppress_doc(doc, s, now)
            operations += self._triage_op(alert_id, {"status": "closed", **closed["triage"]})
            if alert_id in hits:
                operations += [{"update": {"_index": hits[alert_id]["_index"], "_id": alert_id}},
                               {"doc": status_update("closed")}]
            audits.append(entry)
        if operations:
            self._bulk(operations)
        for entry in audits:
            self.audit(entry)
        return [alert_key(d) for d in matching]

    def active_suppressions(self, now: datetime) -> list[Suppression]:
        query = {"bool": {"filter": [{"range": {"created": {"lte": iso(now)}}},
                                     {"range": {"expires": {"gt": iso(now)}}}]}}
        hits = self._search(self._index("suppressions"), query, size=MAX_IDS,
                            sort=[{"created": {"order": "asc"}}])
        return [Suppression.model_validate_json(h["_source"]["record"]) for h in hits]

    # -- actions -----------------------------------------------------------------------
    def put_action(self, action: Action) -> None:
        self._index_action(action)
        self._follow_actions(action)

    def _index_action(self, action: Action, version: tuple[int, int] | None = None) -> None:
        """Index the action; with ``version`` (seq_no, primary_term) only if nobody changed it meanwhile."""
        self.client.index(
            index=index_name(self.prefix, "action", action.created), id=action.id, refresh=self._refresh,
            if_seq_no=version[0] if version else None, if_primary_term=version[1] if version else None,
            document={
                "@timestamp": iso(action.created),
                "action": {"id": action.id, "type": action.action, "target": action.target.label(),
                           "state": action.state, "mode": action.mode, "attempts": action.attempts,
                           "reason": action.reason, "created": iso(action.created),
                           "next_attempt_at": iso(action.next_attempt_at) if action.next_attempt_at else None},
                "alert": {"id": action.alert_id},
                "rule": {"id": action.rule_id},
                "user": {"id": action.target.user_id},
                "actor": action.actor,
                "record": action.model_dump_json(),
            },
        )

    def _follow_actions(self, action: Action) -> None:
        """The alert's response state from its actions: into the triage document (read back on
        every read, the sink cannot overwrite it) and mirrored into the alert document."""
        others = [a for a in self.list_actions(alert_id=action.alert_id, limit=1000) if a.id != action.id]
        state = latest_state([action, *others])
        operations = self._triage_op(action.alert_id, {"response_state": state})
        hit = self._alert_hits([action.alert_id]).get(action.alert_id)
        if hit is not None:
            operations += [{"update": {"_index": hit["_index"], "_id": action.alert_id}},
                           {"doc": {"response": {"state": state}}}]
        self._bulk(operations)

    def transition_action(
        self, action_id: str, verb: str, actor: str, note: str | None = None, responder: str | None = None
    ) -> Action:
        hits = self._search(self._actions, {"ids": {"values": [action_id]}}, 1, versions=True)
        if not hits:
            raise KeyError(action_id)
        current = Action.model_validate_json(hits[0]["_source"]["record"])
        changed, entry = apply_transition(current, verb, actor, note, self._clock(), responder)
        try:  # compare-and-set: a concurrent approve/deny/executor claim makes this one fail
            self._index_action(changed, (hits[0]["_seq_no"], hits[0]["_primary_term"]))
        except ConflictError:
            latest = self.get_action(action_id) or current
            raise ActionConflict(latest, verb, (current.state,)) from None
        self._follow_actions(changed)
        self.audit(entry)
        return changed

    def swap_action(self, action: Action, expected: Collection[str]) -> bool:
        hits = self._search(self._actions, {"ids": {"values": [action.id]}}, 1, versions=True)
        if not hits or Action.model_validate_json(hits[0]["_source"]["record"]).state not in expected:
            return False
        try:  # compare-and-set on the version read: a concurrent cancel or claim makes this fail
            self._index_action(action, (hits[0]["_seq_no"], hits[0]["_primary_term"]))
        except ConflictError:
            return False
        self._follow_actions(action)
        return True

    def _actions_where(self, query: Mapping[str, Any], size: int, sort: list[Any]) -> list[Action]:
        hits = self._search(self._actions, query, size=size, sort=sort)
        return [Action.model_validate_json(h["_source"]["record"]) for h in hits]

    def get_action(self, action_id: str) -> Action | None:
        found = self._actions_where({"ids": {"values": [action_id]}}, 1, [])
        return found[0] if found else None

    def list_actions(self, alert_id: str | None = None, state: str | None = None, limit: int = 100) -> list[Action]:
        filters = [{"term": {f: v}} for f, v in (("alert.id", alert_id), ("action.state", state)) if v is not None]
        return self._actions_where({"bool": {"filter": filters}}, limit,
                                   [{"action.created": {"order": "desc"}}, {"action.id": {"order": "desc"}}])

    def due_actions(self, now: datetime) -> list[Action]:
        due = {"bool": {"should": [
            {"range": {"action.next_attempt_at": {"lte": iso(now)}}},
            {"bool": {"must_not": [{"exists": {"field": "action.next_attempt_at"}}]}},
        ], "minimum_should_match": 1}}
        query = {"bool": {"filter": [{"terms": {"action.state": list(DUE_STATES)}}, due]}}
        found = self._actions_where(query, MAX_IDS, [])
        return sorted(found, key=lambda a: (a.next_attempt_at or a.created, a.created, a.id))

    # -- audit -------------------------------------------------------------------------
    def audit(self, entry: AuditEntry) -> None:
        self.client.index(index=self._index("audit"), id=entry.id, refresh=self._refresh, document={
            "@timestamp": entry.time.isoformat(), "time": iso(entry.time), "actor": entry.actor,
            "verb": entry.verb, "alert_id": entry.alert_id, "action_id": entry.action_id, "target": entry.target,
            "result": entry.result, "why": entry.why, "record": entry.model_dump_json(),
        })

    def audit_trail(self, alert_id: str | None = None, action_id: str | None = None) -> list[AuditEntry]:
        should = [{"term": {f: v}} for f, v in (("alert_id", alert_id), ("action_id", action_id)) if v is not None]
        query = {"bool": {"should": should, "minimum_should_match": 1}} if should else {"match_all": {}}
        hits = self._search(self._index("audit"), query, size=MAX_IDS, sort=[{"time": {"order": "asc"}}])
        entries = [AuditEntry.model_validate_json(h["_source"]["record"]) for h in hits]
        return sorted(entries, key=lambda e: e.time)  # stable: equal times keep the index order

    # -- flags -------------------------------------------------------------------------
    def get_flag(self, name: str) -> str | None:
        try:
            found = self.client.get(index=self._index("flags"), id=name)
        except NotFoundError:
            return None
        value: str | None = found["_source"]["value"]
        return value

    def set_flag(self, name: str, value: str | None) -> None:
        if value is None:
            try:
                self.client.delete(index=self._index("flags"), id=name, refresh=self._refresh)
            except NotFoundError:
                pass
            return
        self.client.index(index=self._index("flags"), id=name, document={"value": value}, refresh=self._refresh)

    def close(self) -> None:
        self.client.close()
