"""Pydantic's validation errors in the rule language's words, at the right YAML position."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from difflib import get_close_matches
from typing import Any

from pydantic import BaseModel, ValidationError

from leadflow.rule_language.yaml_source import Path as NodePath
from leadflow.suggestions import did_you_mean

Report = Callable[[NodePath, str, bool], None]
"""Takes one problem: where it is, the message, and whether it is about a key."""


def validated(
    model: type[BaseModel], data: Any, path: NodePath, owner: str, report: Report
) -> BaseModel | None:
    """``data`` as ``model``, or None after reporting each problem at its place."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        for message, where, is_key in explain_validation(model, exc, path):
            report(where, f"{owner}{message}", is_key)
        return None


def explain_validation(
    model: type[BaseModel], exc: ValidationError, base: NodePath
) -> Iterable[tuple[str, NodePath, bool]]:
    """(message, path, is_key) for each pydantic error, in the rule language's words."""
    reported: set[NodePath] = set()
    errors = exc.errors()
    misspelt = _misspelt_keys(model, errors)
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == "missing" and loc in misspelt:
            continue  # the unknown key beside it is the same key misspelt: said there once
        if loc and loc[0] == "reentry":
            if ("reentry",) not in reported:
                reported.add(("reentry",))
                yield (
                    "reentry: expected once, every_time or {once_per: 30d}",
                    (*base, "reentry"),
                    False,
                )
            continue
        path: NodePath = (*base, *(part for part in loc if isinstance(part, str | int)))
        kind = error["type"]
        message = _plain_message(error)
        if kind == "extra_forbidden":
            fields = sorted(_field_names(model, loc[:-1]))
            hint = did_you_mean(
                str(loc[-1]), fields, otherwise=f"expected one of {', '.join(fields)}"
            )
            yield f"unknown key {loc[-1]!r}; {hint}", path, True
        elif kind == "missing":
            yield f"missing required key {loc[-1]!r}", path[:-1], False
        else:
            name = ".".join(str(part) for part in loc)
            yield (f"{name}: {message}" if name else message), path, False


def _misspelt_keys(model: type[BaseModel], errors: list[Any]) -> set[tuple[Any, ...]]:
    """The locations of missing keys that an unknown key beside them is a misspelling of
    (``templat:`` for ``template:``)."""
    found: set[tuple[Any, ...]] = set()
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] != "extra_forbidden" or not loc:
            continue
        fields = sorted(_field_names(model, loc[:-1]))
        found.update((*loc[:-1], name) for name in get_close_matches(str(loc[-1]), fields, n=1))
    return found


_EXPECTED = {
    "string_type": "expected text",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "list_type": "expected a list (- item)",
    "tuple_type": "expected a list (- item)",
    "dict_type": "expected a mapping (key: value)",
    "model_type": "expected a mapping (key: value)",
    "model_attributes_type": "expected a mapping (key: value)",
}
_PATTERNS = {
    "id": "expected an id of lowercase letters, digits, '_', '.' and '-', starting with a letter or digit",
    "template": "expected a template name of letters, digits, '_', '.' and '-'",
}


def _plain_message(error: Any) -> str:
    """Pydantic's message in the words of someone writing a rule file, with what was found."""
    kind = error["type"]
    found = error.get("input")
    shown = f", found {found!r}" if isinstance(found, str | int | float | list | dict) else ""
    if kind in _EXPECTED:
        return _EXPECTED[kind] + (shown if len(shown) < 80 else "")
    if kind == "string_pattern_mismatch":
        last = next((p for p in reversed(error["loc"]) if isinstance(p, str)), "")
        return _PATTERNS.get(last, "expected letters, digits, '_', '.' and '-'") + shown
    if kind == "too_short" and isinstance(found, list | tuple | dict):
        return "expected at least one item"
    message = str(error["msg"]).removeprefix("Value error, ")
    return message.replace("Input should be", "expected").replace(
        "String should", "expected text to"
    )


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> set[str]:
    current: type[BaseModel] = model
    for part in loc:
        if isinstance(part, int):
            continue
        info = current.model_fields.get(str(part))
        annotation = getattr(info, "annotation", None)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            current = annotation
        else:
            args = getattr(annotation, "__args__", ())
            nested = [arg for arg in args if isinstance(arg, type) and issubclass(arg, BaseModel)]
            if not nested:
                break
            current = nested[0]
    return set(current.model_fields)
