"""Where alerts, analyst decisions, actions and the audit trail are kept."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class StoreConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Literal["sqlite", "elasticsearch"] = Field(
        default="sqlite",
        description="'sqlite': a local file (embedded default); 'elasticsearch': the [elasticsearch] cluster",
    )
    path: Path = Field(default=Path("tokenwatch.db"), description="SQLite file (backend 'sqlite')")
    busy_timeout_s: float = Field(
        default=10.0, gt=0, description="SQLite: how long a writer waits for another process's lock"
    )
    max_suppression_days: int = Field(
        default=90, ge=1, le=3650,
        description="Longest an analyst's suppression may last (`alerts suppress --for/--expires`)",
    )
    refresh: Literal["wait_for", "true", "false"] = Field(
        default="wait_for",
        description="Elasticsearch: refresh policy of store writes ('wait_for': visible to the next read)",
    )
