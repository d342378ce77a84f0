"""Elasticsearch documents and index templates, shared by the sink, the alert store and the analyst."""
