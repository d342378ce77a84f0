"""Settings of the detection runtime: the ``[engine]`` and ``[alerting]`` tables.

Part of the configuration layer (README "Layout"): models only, importing nothing from the
runtime that reads them, so ``pipeline.config`` can load every section without a cycle.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EngineConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed_lateness_s: float = Field(
        default=5.0, ge=0,
        description="Out-of-order tolerance: the watermark is this far behind the slowest source still "
                    "delivering; an event out of order for its token, family, session or subject waits "
                    "until the watermark passes it (an event in order for them is judged at once)",
    )
    source_idle_s: float = Field(
        default=1800.0, gt=0,
        description="A source (format and tenant) that sent nothing while the stream's event time moved "
                    "this far stops holding the watermark back (measured in event time, so detect and run "
                    "agree); a slower or delayed source holds state expiry back while it delivers",
    )
    late_retention_max_s: float = Field(
        default=86_400.0, ge=0,
        description="Once a source has delivered behind the stream's clock (a connector catching up, the "
                    "next file of a concatenated backfill), lineage state is kept as much longer, so a later "
                    "source as late still finds it (detect and every run partition alike); at most this "
                    "(the memory bound of that extension); the extension ends once the clock has moved on "
                    "by as much",
    )
    dedup_window_s: float = Field(default=900.0, ge=0, description="How long event ids are remembered")
    expire_every_s: float = Field(default=60.0, gt=0, description="Event-time interval of state expiry")
    max_lead_s: float = Field(
        default=3600.0, gt=0,
        description="An event more than this ahead of the stream's clock (plus the wall time since the "
                    "clock last moved) is held apart instead of moving the clock; at most "
                    "state.expired_retention_s, so one line cannot expire a token still valid at the clock",
    )
    jump_confirm_events: int = Field(
        default=100, ge=1,
        description="The clock jumps to held events once at least this many of the last twice this many "
                    "events were held and they outnumber the others",
    )
    max_held_events: int = Field(
        default=10_000, ge=1,
        description="Bound of the held events; an event ahead while it is full is refused as out of range "
                    "(dead-lettered)",
    )


class AlertingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    fold_window_s: float = Field(default=3600.0, gt=0, description="Findings closer than this fold")
    max_evidence: int = Field(default=20, ge=2, description="Evidence items kept per alert")
