"""The alert store: local SQLite by default, Elasticsearch when configured."""

from pipeline.store.base import AlertStore, open_store
from pipeline.store.sqlite import SqliteStore

__all__ = ["AlertStore", "SqliteStore", "open_store"]
