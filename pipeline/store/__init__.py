"""The alert store: local SQLite by default, Elasticsearch when configured."""
