"""Response policy and responder settings."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ResponseConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
