"""tokenwatch's own canonical events, serialised: we must read our own output."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from pydantic import ValidationError

from schemas.events import CanonicalEvent
from schemas.sources.base import AdapterContext
from schemas.sources.common import invalid


class CanonicalFormat:
    name: ClassVar[str] = "canonical"
    match_keys: ClassVar[frozenset[str]] = frozenset({"canonical_version"})

    def matches(self, raw: Mapping[str, Any]) -> bool:
        return "canonical_version" in raw

    def to_events(self, raw: Mapping[str, Any], ctx: AdapterContext) -> list[CanonicalEvent]:
        try:
            return [CanonicalEvent.model_validate(raw)]
        except ValidationError as exc:
            raise invalid("canonical: ", exc) from None
