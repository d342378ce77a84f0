"""Where alerts, analyst decisions, actions and the audit trail are kept."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class StoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
