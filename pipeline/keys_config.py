"""Unknown configuration keys, named with the nearest known one.

Pydantic says ``store.paht: Extra inputs are not permitted``; the operator needs
``store.paht: unknown setting; did you mean store.path?``, and, when the key came from the
environment, the variable to rename (``TOKENWATCH_STORE__PAHT``). The known names at a key's
level come from the settings models themselves, so a new field is suggested without a list
to keep. Part of the configuration layer (a ``*_config`` module): it imports only pydantic.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

ENV_PREFIX = "TOKENWATCH_"
ENV_NESTING = "__"
_LIST_AT_MOST = 12  # name every known key when a level has no more than this many


@dataclass(frozen=True)
class Place:
    """Where a key sits: its path as the operator writes it, and the names valid beside it."""

    keys: tuple[str, ...]
    known: tuple[str, ...]


def place_of(model: type[BaseModel], loc: Sequence[str | int]) -> Place | None:
    """The key at pydantic's error location ``loc`` in ``model``, or None when its level is
    free-form (a ``dict[str, Any]``) or the location cannot be followed."""
    keys: list[str] = []
    annotation: Any = model
    for part in loc[:-1]:
        annotation = _unwrapped(annotation)
        member = _tagged_member(annotation, part)
        if member is not None:  # a tagged union's tag: in pydantic's location, not in the file
            annotation = member
            continue
        annotation = _single_model(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            field = _field(annotation, str(part))
            if field is None:
                return None
            annotation = field
        elif typing.get_origin(annotation) in (dict, Mapping):
            annotation = typing.get_args(annotation)[1]
        elif typing.get_origin(annotation) in (list, tuple, set, frozenset, Sequence):
            annotation = typing.get_args(annotation)[0]
        else:
            return None
        keys.append(str(part))
    annotation = _single_model(_unwrapped(annotation))
    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        return None
    return Place((*keys, str(loc[-1])), known_names(annotation))


def known_names(model: type[BaseModel]) -> tuple[str, ...]:
    """The keys ``model`` accepts: field names and their aliases (``class`` for ``net_class``)."""
    names: list[str] = []
    for name, info in model.model_fields.items():
        names.append(info.alias or name)
        if info.alias and model.model_config.get("populate_by_name"):
            names.append(name)
    return tuple(names)


def unknown_key_message(place: Place, kind: str = "setting", environ: Mapping[str, str] | None = None) -> str:
    """``<key>: unknown <kind>; did you mean <nearest>?``, in the environment's spelling
    (``TOKENWATCH_STORE__PAHT``) when a variable set it, else as a dotted key."""
    environ = os.environ if environ is None else environ
    nearest = nearest_name(place.keys[-1], place.known)
    found = _env_variable(place.keys, environ)
    if found is not None:
        variable, below = found
        said = f"{variable}: unknown {kind}"
        meant = None if nearest is None else env_name((*place.keys[:-1], nearest)) + below
    else:
        said = f"{'.'.join(place.keys)}: unknown {kind}"
        meant = None if nearest is None else ".".join((*place.keys[:-1], nearest))
    if meant is not None:
        return f"{said}; did you mean {meant}?"
    section = ".".join(place.keys[:-1])
    if len(place.known) <= _LIST_AT_MOST:
        return f"{said}; known {'in [' + section + ']' if section else 'at the top level'}: {', '.join(place.known)}"
    return f"{said}; `tokenwatch config defaults` lists every key"


def nearest_name(bad: str, known: Sequence[str]) -> str | None:
    """The known name closest to ``bad`` (case aside), or None when none is close."""
    folded = {name.lower(): name for name in known}
    found = difflib.get_close_matches(bad.lower(), list(folded), n=1, cutoff=0.6)
    return folded[found[0]] if found else None


def env_name(keys: Sequence[str]) -> str:
    """``("store", "path")`` -> ``TOKENWATCH_STORE__PATH``."""
    return ENV_PREFIX + ENV_NESTING.join(keys).upper()


def unknown_env_sections(known: Sequence[str], environ: Mapping[str, str] | None = None) -> list[Place]:
    """``TOKENWATCH_<SECTION>__…`` variables whose section does not exist: the settings loader
    ignores them, so a misspelt section would silently leave its keys at their defaults.
    (Variables without ``__`` are other tools' settings: ``TOKENWATCH_ACTOR``…)"""
    environ = os.environ if environ is None else environ
    sections = {name.lower() for name in known}
    found = []
    for variable in sorted(environ):
        upper = variable.upper()
        if not upper.startswith(ENV_PREFIX) or ENV_NESTING not in upper[len(ENV_PREFIX):]:
            continue
        section = upper[len(ENV_PREFIX):].split(ENV_NESTING, 1)[0].lower()
        if section not in sections:
            found.append(Place((section,), tuple(known)))
    return found


def single_underscore_settings(model: type[BaseModel], environ: Mapping[str, str] | None = None,
                               ) -> list[tuple[str, str]]:
    """``TOKENWATCH_<SECTION>_<KEY>`` variables (one underscore where the loader reads two)
    that name a key of a section of ``model``, each with the spelling the loader reads: the
    loader takes them for other tools' settings and ignores them, so the key would silently
    keep its default. A variable naming no section key (``TOKENWATCH_STATE_DIR``) is left
    alone."""
    environ = os.environ if environ is None else environ
    found = []
    for variable in sorted(environ):
        upper = variable.upper()
        rest = upper[len(ENV_PREFIX):]
        if not upper.startswith(ENV_PREFIX) or ENV_NESTING in rest:
            continue
        for section, info in model.model_fields.items():
            prefix = section.upper() + "_"
            if rest.startswith(prefix) and rest[len(prefix):].lower() in _section_keys(info.annotation):
                found.append((variable, f"{ENV_PREFIX}{section.upper()}{ENV_NESTING}{rest[len(prefix):]}"))
    return found


def _section_keys(annotation: Any) -> tuple[str, ...]:
    """The keys a settings section accepts (``known_names``); none for a free-form section."""
    model = _single_model(_unwrapped(annotation))
    return known_names(model) if isinstance(model, type) and issubclass(model, BaseModel) else ()


def _env_variable(keys: Sequence[str], environ: Mapping[str, str]) -> tuple[str, str] | None:
    """The variable that set ``keys`` (case-insensitive, as the settings loader reads it), with
    the part of its name below them (``__WINDOW_S`` when the unknown key is a section);
    None when the key came from a file."""
    wanted = env_name(keys)
    for variable in sorted(environ):
        upper = variable.upper()
        if upper == wanted or upper.startswith(wanted + ENV_NESTING):
            return variable, upper[len(wanted):]
    return None


def _unwrapped(annotation: Any) -> Any:
    """``Annotated[X, …]`` -> ``X``."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _union_members(annotation: Any) -> tuple[Any, ...]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(_unwrapped(arg) for arg in typing.get_args(annotation))
    return ()


def _tagged_member(annotation: Any, part: str | int) -> type[BaseModel] | None:
    """The member of a tagged union that ``part`` names by its tag (``type = "rfc7009"``)."""
    for member in _union_members(annotation):
        if not (isinstance(member, type) and issubclass(member, BaseModel)):
            continue
        for info in member.model_fields.values():
            if typing.get_origin(info.annotation) is typing.Literal and part in typing.get_args(info.annotation):
                return member
    return None


def _single_model(annotation: Any) -> Any:
    """``Model | None`` -> ``Model``; any other annotation unchanged."""
    members = [m for m in _union_members(annotation) if m is not type(None)]
    return members[0] if len(members) == 1 else annotation


def _field(model: type[BaseModel], name: str) -> Any:
    """The annotation of ``model``'s field ``name`` (or alias), None if it has none."""
    for field_name, info in model.model_fields.items():
        if name in (field_name, info.alias):
            return info.annotation
    return None
