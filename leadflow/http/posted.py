"""A posted body read into records, each held to the request's schema before the import reads it.

A body that is not JSON, or an empty list, is refused at once (``["body"]``). Otherwise each
record is checked on its own: an item that is not an object, or has more keys than its kind can
use (refused by its count alone), is set aside whole; a value the store cannot hold, a nest that
cannot be flattened or a value of a JSON type the OpenAPI document does not give its field is
named at its record and field, and the import reads that field as not given (null). The rest
of every record is still read and checked by the import (bad emails, unknown stages, missing
references), so a 422 names every problem of every record at once: a client fixes a batch in
one go, not one record per request.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from leadflow.errors import FieldError, RecordsRejectedError
from leadflow.http.openapi import type_errors
from leadflow.ingest.json_values import TOO_DEEP, json_value, shown_text, text_problem, unstorable
from leadflow.ingest.nesting import NestingProblem, flattened

Loc = tuple[str | int, ...]


@dataclass(frozen=True)
class Posted:
    """The records of a body, as far as they can be read."""

    items: list[dict[str, Any]]
    """The records the import reads: flat (``NEST.KEY`` columns), without the fields refused."""
    indices: tuple[int, ...]
    """Each item's index in the body (a record set aside whole has none)."""
    batch: bool
    """Whether the body was a list: error locations then carry the record's index."""
    problems: tuple[FieldError, ...]
    """The request-schema problems, record by record; none: every record is read whole."""


def read_body(
    raw: bytes,
    schema: dict[str, Any] | None = None,
    too_many: Callable[[int], str | None] = lambda _count: None,
    nests: tuple[str, ...] = (),
    max_records: int | None = None,
) -> Posted:
    """The posted records and their request-schema problems; RecordsRejectedError for a body
    that holds no records (not JSON, an empty list).

    ``too_many`` says why an object with that many keys is refused by its count alone
    (:func:`~leadflow.ingest.mapping.too_many_columns`): checked before anything else looks
    at its keys one by one, and again once ``nests`` (:func:`~leadflow.ingest.nesting.
    nested_objects`) are flattened to their ``NEST.KEY`` columns, as a JSONL line is.
    ``schema``: the record schema of the OpenAPI document, whose JSON types are held
    (:func:`~leadflow.http.openapi.type_errors`). A list of more than ``max_records``
    (``http.max_records``) is refused whole, before any record is looked at."""
    value = json_body(raw)
    batch = isinstance(value, list)
    values = value if batch else [value]
    if not values:
        reject(("body",), "expected an object or a non-empty list of objects", "too_short")
    if max_records is not None and len(values) > max_records:
        reject(("body",), too_many_records(len(values), max_records), "too_long")
    items: list[dict[str, Any]] = []
    indices: list[int] = []
    problems: list[FieldError] = []
    for index, item in enumerate(values):
        at: Loc = ("body", index) if batch else ("body",)
        record = _record(item, at, schema, too_many, nests, problems)
        if record is not None:
            items.append(record)
            indices.append(index)
    return Posted(items, tuple(indices), batch, tuple(problems))


def too_many_records(count: int, limit: int) -> str:
    """Why a body of ``count`` records is refused: one request is one transaction, which
    other requests wait for."""
    return (
        f"{count:,} records in one request, more than http.max_records ({limit:,}); "
        "send them in requests of at most that many, or load a file with leadflow import"
    )


def _record(
    item: object,
    at: Loc,
    schema: dict[str, Any] | None,
    too_many: Callable[[int], str | None],
    nests: tuple[str, ...],
    problems: list[FieldError],
) -> dict[str, Any] | None:
    """``item`` as the import reads it, its problems added to ``problems``; None: set aside."""
    if not isinstance(item, dict):
        problems.append(FieldError(at, "expected a JSON object", "dict_type"))
        return None
    reason = too_many(len(item))
    if reason is not None:
        problems.append(FieldError(at, reason, "too_long"))
        return None
    record: dict[str, Any] = item
    aside: set[str] = set()
    # Text no store can hold (NUL, lone surrogates) and nesting deeper than the checks, hashes
    # and writes of a value recurse are refused here, where they can be located in the body,
    # rather than failing later; numbers are left to the fields' parsers.
    for place, problem in unstorable(item, numbers=False):
        kind = "value_error" if problem == TOO_DEEP else "string_type"
        problems.append(FieldError((*at, *place), problem, kind))
        record = record if record is not item else dict(item)  # the body's own left as posted
        aside.update(_set_aside(record, place[0]))
    flat = _flat(record, at, nests, problems)
    if flat is not record and (reason := too_many(len(flat))) is not None:
        problems.append(FieldError(at, reason, "too_long"))
        return None
    typed = {key: value for key, value in flat.items() if key not in aside}
    for place, message in type_errors(schema, typed) if schema is not None else ():
        problems.append(FieldError((*at, *place), message, "type_error"))
        flat = flat if flat is not item else dict(item)
        flat[str(place[0])] = None
    return flat


def _set_aside(record: dict[str, Any], step: str | int) -> list[str]:
    """The value of the key shown as ``step`` (surrogates escaped) read as not given; a key
    the store cannot hold itself left out. The keys set aside."""
    found = [key for key in record if shown_text(key) == step]
    for key in found:
        if text_problem(key) is None:
            record[key] = None  # still a column: a mapped key reads as its field, not given
        else:
            del record[key]
    return found


def _flat(
    record: dict[str, Any], at: Loc, nests: tuple[str, ...], problems: list[FieldError]
) -> dict[str, Any]:
    """``record`` with its nests' keys as ``NEST.KEY`` columns (:func:`flattened`); a nest that
    cannot be read so is named at the column its problem names, and left out."""
    # A flat object (most of them) costs one lookup per nest, as a JSONL line does.
    while not record.keys().isdisjoint(nests):
        flat = flattened(record, nests)
        if not isinstance(flat, NestingProblem):
            return flat
        kind = "dict_type" if flat.column in nests else "value_error"
        problems.append(FieldError((*at, flat.column), flat.reason, kind))
        nest = flat.column.partition(".")[0]
        record = {key: value for key, value in record.items() if key != nest}
    return record


def json_body(raw: bytes) -> Any:
    """The body's JSON value, or RecordsRejectedError saying why it is not JSON."""
    try:
        return json_value(raw.decode("utf-8"))
    except UnicodeDecodeError:
        reject(("body",), "not UTF-8 text", "json_invalid")
    except json.JSONDecodeError as exc:
        reject(
            ("body",),
            f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            "json_invalid",
        )
    except (ValueError, RecursionError) as exc:
        reject(("body",), f"invalid JSON: {exc}", "json_invalid")


def reject(loc: Loc, msg: str, kind: str) -> NoReturn:
    raise RecordsRejectedError([FieldError(loc, msg, kind)]) from None
