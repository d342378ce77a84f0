"""Sinks: where alerts, events, dead letters and actions go at a checkpoint.

A sink implements :class:`pipeline.sinks.base.Sink` and is registered here by
name; the service builds the ones its configuration names.
"""

from __future__ import annotations

from pipeline.sinks.base import (
    DOC_KINDS,
    BackpressureError,
    DocKind,
    FlushResult,
    MemorySink,
    Rejected,
    Sink,
    SinkUnavailable,
)
from pipeline.sinks.elasticsearch import ElasticsearchConfig, ElasticsearchSink
from pipeline.sinks.kafka import KafkaSink

SINKS: dict[str, type] = {
    "elasticsearch": ElasticsearchSink,
    "kafka": KafkaSink,
    "memory": MemorySink,
}

__all__ = [
    "DOC_KINDS",
    "SINKS",
    "BackpressureError",
    "DocKind",
    "ElasticsearchConfig",
    "ElasticsearchSink",
    "FlushResult",
    "KafkaSink",
    "MemorySink",
    "Rejected",
    "Sink",
    "SinkUnavailable",
]
