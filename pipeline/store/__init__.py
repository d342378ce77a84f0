"""The alert store: local SQLite by default (``sqlite.SqliteStore``), Elasticsearch when
configured; ``base.open_store`` opens the one the settings name.

Nothing is re-exported here: the settings loader imports ``pipeline.store.config``, which
must not load the stores with it.
"""
