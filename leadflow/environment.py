"""Settings from ``LEADFLOW_...`` environment variables, each read by its setting's type.

``database.url`` is ``LEADFLOW_DATABASE__URL`` (sections joined by a double underscore). How a
variable's text becomes a value depends on the type of the setting it names, taken from the
field's annotation in :mod:`leadflow.settings`:

- text (a URL, an address, a name, a path, one of a few words): the variable's text verbatim.
  Read as YAML, ``Acme Sales #1 <sales@acme.example>`` lost everything from `` #`` on (a
  comment), ``Acme: Sales <...>`` became a mapping and ``0123`` a number. An optional text
  setting is unset by an empty variable or ``null``;
- a list of plain values (``calendar.weekdays``): ``mon,tue`` (split at the commas, spaces
  around each item dropped) or YAML's ``[mon, tue]``;
- anything else (numbers, booleans, durations, mappings): YAML, as in ``config.yaml``.

Secrets are the variable's text too, or the content of the file ``LEADFLOW_..._FILE`` names.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

from leadflow.settings import SECRET_KEYS, Settings
from leadflow.suggestions import did_you_mean

ENV_PREFIX = "LEADFLOW_"
_NOT_KEYS = frozenset({"LEADFLOW_CONFIG"})
_NO_VALUE = frozenset({"", "null", "~"})
"""What unsets an optional text setting from the environment."""


class Reading(Enum):
    """How a variable's text is read, by the type of its setting."""

    TEXT = "text"
    OPTIONAL_TEXT = "optional text"
    LIST = "list"
    YAML = "yaml"


def env_name(key: str) -> str:
    """``LEADFLOW_DATABASE__URL`` for ``database.url``."""
    return ENV_PREFIX + "__".join(part.upper() for part in key.split("."))


def read_environment(
    env: Mapping[str, str],
) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """The settings the ``LEADFLOW_...`` variables give (nested by key), the source of each
    dotted key (``environment NAME``) and the problems of variables that could not be read."""
    data: dict[str, Any] = {}
    sources: dict[str, str] = {}
    problems: list[str] = []
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or name in _NOT_KEYS or name.startswith("LEADFLOW_TEST"):
            continue
        key = name[len(ENV_PREFIX) :].lower().replace("__", ".")
        if _unrelated(key):
            continue
        value: Any = raw
        if key.endswith("_file") and key[: -len("_file")] in SECRET_KEYS:
            key = key[: -len("_file")]
            try:
                value = Path(raw).read_text(encoding="utf-8").strip()
            except OSError as exc:
                problems.append(f"{name}: cannot read the secret file {raw!r}: {exc.strerror}")
                continue
            if not value:  # a secret that matches nothing, or everything: a provisioning slip
                problems.append(f"{name}: the secret file {raw!r} is empty")
                continue
        elif key in SECRET_KEYS and not raw.strip():
            problems.append(f"{name} is empty: give the secret, or unset the variable")
            continue
        elif key not in SECRET_KEYS:
            value = env_value(raw, reading(key.split(".")))
        merge(data, nest(key.split("."), value))
        sources[key] = f"environment {name}"
    return data, sources, problems


def env_value(raw: str, how: Reading) -> Any:
    """The value of a variable's text ``raw`` for a setting read ``how``."""
    if how is Reading.TEXT:
        return raw
    if how is Reading.OPTIONAL_TEXT:
        return None if raw.strip() in _NO_VALUE else raw
    if how is Reading.LIST and not raw.lstrip().startswith(("[", "-")):
        return [item.strip() for item in raw.split(",")] if raw.strip() else []
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        return raw
    if isinstance(value, int | float) and ":" in raw:  # base 60 in YAML 1.1: 17:00
        return raw
    return value


def reading(parts: list[str]) -> Reading:
    """How the variable of the setting at ``parts`` (``["mail", "from"]``) is read."""
    annotation = setting_type(parts)
    if annotation is None:
        return Reading.YAML  # an unknown key: the validation names it
    members = _members(annotation)
    optional = type(None) in members
    members = [member for member in members if member is not type(None)]
    if len(members) != 1:
        return Reading.YAML  # text or a list (import columns), a duration or forever
    member = _plain(members[0])
    if _is_text(member):
        return Reading.OPTIONAL_TEXT if optional else Reading.TEXT
    if get_origin(member) in (tuple, list):
        items = [_plain(item) for item in get_args(member) if item is not Ellipsis]
        if items and all(_is_scalar(item) for item in items):
            return Reading.LIST
    return Reading.YAML


def setting_type(parts: list[str]) -> object | None:
    """The annotation of the setting at ``parts``, through sections and mappings (the value
    type of ``calendars:`` for ``calendars.night.start``); None for no such setting."""
    annotation: object = Settings
    for part in parts:
        current = _plain(_single(annotation))
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = next(
                (
                    info
                    for field, info in current.model_fields.items()
                    if part in (field, info.alias)
                ),
                None,
            )
            if info is None:
                return None
            annotation = info.annotation
        elif get_origin(current) is dict:
            annotation = get_args(current)[1]
        else:
            return None
    return annotation


def _members(annotation: object) -> list[object]:
    annotation = _plain(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        return list(get_args(annotation))
    return [annotation]


def _single(annotation: object) -> object:
    """``X`` of ``X | None``; the annotation itself otherwise."""
    members = [member for member in _members(annotation) if member is not type(None)]
    return members[0] if len(members) == 1 else annotation


def _plain(annotation: object) -> object:
    """``X`` of ``Annotated[X, ...]``."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _is_text(annotation: object) -> bool:
    if annotation in (str, Path):
        return True
    return get_origin(annotation) is Literal and all(
        isinstance(value, str) for value in get_args(annotation)
    )


def _is_scalar(annotation: object) -> bool:
    if _is_text(annotation):
        return True
    return isinstance(annotation, type) and not issubclass(annotation, BaseModel | dict | list)


def _unrelated(key: str) -> bool:
    """A ``LEADFLOW_...`` variable that names no section and resembles none (``LEADFLOW_VENV``
    of a wrapper script, say) belongs to someone else and is left alone; one that looks like a
    misspelt section (``LEADFLOW_DATABSE__URL``) still fails with a suggestion."""
    section = key.split(".", 1)[0]
    sections = {info.alias or name for name, info in Settings.model_fields.items()} - {"root"}
    if section in sections or section.removesuffix("_file") in sections:
        return False
    return not did_you_mean(section, sorted(sections), cutoff=0.75)


def nest(parts: list[str], value: Any) -> dict[str, Any]:
    nested: Any = value
    for part in reversed(parts):
        nested = {part: nested}
    result: dict[str, Any] = nested
    return result


def merge(into: dict[str, Any], other: Mapping[str, Any]) -> None:
    for key, value in other.items():
        if isinstance(value, Mapping) and isinstance(into.get(key), dict):
            merge(into[key], value)
        else:
            into[key] = dict(value) if isinstance(value, Mapping) else value
