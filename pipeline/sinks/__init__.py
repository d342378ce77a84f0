"""Sinks: where alerts, events, dead letters and actions go at a checkpoint.

A sink implements :class:`pipeline.sinks.base.Sink` and is registered here by
name; the service builds the ones ``service.sinks`` names (``build_sinks``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from pipeline.sinks.background import BackgroundSink
from pipeline.sinks.base import (
    DOC_KINDS,
    BackpressureError,
    DocKind,
    FlushResult,
    MemorySink,
    RegisteredSink,
    Rejected,
    Sink,
    SinkUnavailable,
)
from pipeline.sinks.elasticsearch import ElasticsearchSink
from pipeline.sinks.fanout import Fanout
from pipeline.sinks.kafka import KafkaSink

if TYPE_CHECKING:
    from pipeline.config import Settings

SINKS: dict[str, type[RegisteredSink]] = {
    "elasticsearch": ElasticsearchSink,
    "kafka": KafkaSink,
    "memory": MemorySink,
}


def build_sinks(names: Iterable[str], settings: Settings) -> Fanout:
    """The sinks ``names`` registers, in that order, built from ``settings``. A sink flushed
    only at checkpoints (a slow bulk API) flushes on a worker thread, off the service loop."""
    built: list[Sink] = []
    for name in names:
        sink = SINKS[name].from_settings(settings)
        built.append(sink if sink.flush_early else BackgroundSink(sink))
    return Fanout(built)


__all__ = [
    "DOC_KINDS",
    "SINKS",
    "BackpressureError",
    "DocKind",
    "ElasticsearchSink",
    "Fanout",
    "FlushResult",
    "KafkaSink",
    "MemorySink",
    "Rejected",
    "Sink",
    "SinkUnavailable",
    "build_sinks",
]
