"""Frozen pydantic models built from values the fast path has already validated.

pydantic's own ``model_construct`` walks every field in Python and costs more than
validating (15.7 against 6.4 µs for a gateway ``CanonicalEvent``, measured): it does not
pay. ``construct`` fills the instance's ``__dict__`` from a per-class template of the
defaults in one dict copy (1.9 µs), with the same fields-set, field order and defaults a
validated instance has; ``tests/schemas/test_fast_path_build.py`` holds it equal to one.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)

_Template = tuple[dict[str, Any], frozenset[str], int]
"""A class's defaults (in field order), the names of its fields without one, its field count."""

_TEMPLATES: dict[type[BaseModel], _Template] = {}

# The models are frozen (their own __setattr__ refuses): the instance's four slots are filled
# through BaseModel's slot descriptors, and the instance made by object.__new__ (no model
# defines __new__): 0.9 against 2.1 us a Request with object.__setattr__ and cls.__new__ (measured).
_new = object.__new__
_slots = vars(BaseModel)
_set_dict = _slots["__dict__"].__set__
_set_fields_set = _slots["__pydantic_fields_set__"].__set__
_set_extra = _slots["__pydantic_extra__"].__set__
_set_private = _slots["__pydantic_private__"].__set__


def _template(cls: type[BaseModel]) -> _Template:
    found = _TEMPLATES.get(cls)
    if found is None:
        if cls.__new__ is not _new:
            raise TypeError(f"{cls.__name__} defines __new__: construct cannot build it")
        fields = cls.model_fields
        defaults = {name: None if info.is_required() else info.get_default(call_default_factory=True)
                    for name, info in fields.items()}
        required = frozenset(name for name, info in fields.items() if info.is_required())
        found = _TEMPLATES[cls] = (defaults, required, len(fields))
    return found


def construct(cls: type[M], fields_set: Iterable[str], values: dict[str, Any]) -> M:
    """An instance of ``cls`` holding ``values`` (already of the field types, validators'
    work already done; a dict of every field, in the model's order, is kept as the
    instance's own) and the defaults; ``fields_set``: the fields a validated instance
    would count as given (the keys passed to its constructor, or of its input record)."""
    defaults, required, count = _TEMPLATES.get(cls) or _template(cls)
    if len(values) == count:  # every field given (a Struct's ``asdict``): taken as it is
        fields = values
    else:
        fields = dict(defaults)
        fields.update(values)
        if len(fields) != count or not required <= values.keys():
            raise TypeError(f"{cls.__name__}: unknown or missing fields in {sorted(values)}")
    model = _new(cls)
    _set_dict(model, fields)
    _set_fields_set(model, set(fields_set))
    _set_extra(model, None)
    _set_private(model, None)
    return model


def utc(moment: datetime) -> datetime:
    """What the canonical event's time validator makes of an aware time."""
    return moment.astimezone(timezone.utc)
