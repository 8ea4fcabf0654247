"""Reading one cell of a CRM export into a typed value.

Every parser takes the raw cell (a string from CSV, a JSON scalar from JSONL) and returns the
typed value or ``None`` for an empty cell; a value it cannot read raises :class:`ValueError`
whose message is the reason shown to the user (``FILE:LINE: field: reason``).

Text, ids, yes/no, timezones, lists and email addresses are read here; numbers in
``number_cells``, dates and times in ``date_cells``; what a JSON value may hold in
``json_values``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from zoneinfo import ZoneInfo

from leadflow.ingest.json_values import identifier_problem, json_shown, text_problem
from leadflow.ingest.names import briefly_shown, quoted
from leadflow.store.email_addresses import address_problem, sending_problem

Parser = Callable[[object], object]
"""Raw cell -> typed value (or None when empty); raises ValueError with the reason."""


def cell_text(raw: object) -> str | None:
    """A cell as text, blanks around it removed; empty is None (a JSON number as its digits)."""
    if raw is None:
        return None
    text = raw.strip() if isinstance(raw, str) else str(raw)
    return text or None


def parse_text(raw: object) -> str | None:
    """A string with surrounding blanks removed; empty is None.

    A JSON value of another type is refused, named as the JSON wrote it (``a number (5)``,
    ``true``, ``["east"]``), as the HTTP API refuses it: a JSONL ``"email": 5`` was read as
    the text ``5``, no address, and the lead landed unmailed without a word.
    """
    if raw.__class__ is str:  # the hot path: every CSV cell
        return raw.strip() or None
    if raw is None:
        return None
    msg = f"expected text, got {json_shown(raw)}"
    raise ValueError(msg)


def longer_than(length: int, text: str) -> str | None:
    """Why ``text`` is refused for a field of at most ``length`` characters; None when it fits.
    The one wording for an id, a name and an attribute, in a file and in a posted record."""
    if len(text) <= length:
        return None
    return f"longer than {length} characters ({len(text)}); shorten it"


def scalar_text(raw: object) -> str | None:
    """An activity's ``properties.KEY`` column: free-form, so a JSON number is taken as its
    digits (as the ``properties`` object's ``5`` and ``"5"`` agree); true, false, a list or an
    object are refused as :func:`parse_text` refuses them."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return cell_text(raw)
    return parse_text(raw)


EXCEL_NUMBER = re.compile(r"[+-]?[0-9]+(?:[.,][0-9]+)?[eE][+-][0-9]+")
"""A number as Excel shows one too long for its cell (``1.01235E+11``, ``1,2E+05``): digits,
maybe a decimal part, ``E``, a sign and the exponent. The sign sets it apart from an id that
merely holds an E (``E123``, ``LEAD-1E5X``) or a hex digest (``12e45``)."""
_EXCEL_LINE = re.compile(rf"^{EXCEL_NUMBER.pattern}$", re.MULTILINE)


def excel_number_problem(text: str) -> str | None:
    """Why ``text`` (stripped) is refused as an id, or None: a long numeric id a spreadsheet
    saved as scientific notation has lost its last digits, and two ids may now read the same
    (``101234567890`` and ``101234999999`` are both ``1.01235E+11``): taken, one would
    overwrite the other, or attach its deals and activities to the wrong lead."""
    if EXCEL_NUMBER.fullmatch(text) is None:
        return None
    return (
        f"{quoted(text)} looks like Excel's scientific notation (a long number Excel shortened, "
        "so other ids may read the same); export the column as text and import again"
    )


def excel_numbers_in(texts: Sequence[str]) -> bool:
    """Whether any of ``texts`` (stripped cells) has :data:`EXCEL_NUMBER`'s shape: one search
    of the column, for the import's hot path."""
    return _EXCEL_LINE.search("\n".join(texts)) is not None


def parse_identifier(raw: object) -> str | None:
    """A record's external id: text, as :func:`parse_text` reads it, and nothing else. A JSON
    number is refused, not written out: ``1.5e3`` became the id ``"1500.0"``, ``1e20``
    ``"1e+20"``, neither the id the CRM shows (a CSV cell is text already). Text in Excel's
    scientific notation is refused too (:func:`excel_number_problem`)."""
    if raw.__class__ is str:
        return _id_text(raw.strip())
    if raw is None:
        return None
    if isinstance(raw, bool):
        shown = "true" if raw else "false"  # as the JSON wrote it
    elif isinstance(raw, int | float):
        shown = f"a number ({raw!r})"
    else:
        shown = briefly_shown(raw)
    msg = f"expected text, got {shown}; write the id as a JSON string"
    raise ValueError(msg)


def parse_reference(raw: object) -> str | None:
    """Another record's id (a deal's ``lead``, an activity's ``deal``, an ``owner``): text, as
    :func:`parse_text` reads it, refusing Excel's scientific notation as an id is refused."""
    text = parse_text(raw)
    if text is None:
        return None
    problem = identifier_problem(text)
    if problem is not None:
        raise ValueError(problem)
    return _id_text(text)


def _id_text(text: str) -> str | None:
    """A stripped id's text, or None when empty; ValueError in Excel's scientific notation."""
    if not text:
        return None
    # Excel's shape has a sign after its E: most ids have neither sign, nor a regex to pay.
    if "+" in text or "-" in text:
        problem = excel_number_problem(text)
        if problem is not None:
            raise ValueError(problem)
    return text


def boolean_parser(true_values: Iterable[str], false_values: Iterable[str]) -> Parser:
    """A parser accepting the mapping's true/false spellings, case-insensitively."""
    truthy = {v.strip().lower() for v in true_values}
    falsy = {v.strip().lower() for v in false_values}
    spelled = ", ".join(sorted(v for v in truthy | falsy if v))

    def parse(raw: object) -> bool | None:
        if isinstance(raw, bool):
            return raw
        if raw is not None and not isinstance(raw, str):
            # A JSON 1 is not true: the HTTP API refuses it too (a boolean, or text).
            msg = f"expected true or false (or text: {spelled}), got {json_shown(raw)}"
            raise ValueError(msg)
        text = "" if raw is None else raw.strip().lower()
        if text in truthy:
            return True
        if text in falsy:
            return False
        if not text:
            return None
        msg = f"expected yes or no ({spelled}), got {briefly_shown(raw)}"
        raise ValueError(msg)

    return parse


def timezone_name(raw: object) -> str | None:
    """An IANA timezone name such as ``Europe/Berlin``."""
    text = parse_text(raw)
    if text is None:
        return None
    try:
        ZoneInfo(text)
    except (ValueError, KeyError, OSError):  # OSError: a name too long for a file name
        msg = f"unknown timezone {quoted(text)}; use an IANA name such as Europe/Berlin"
        raise ValueError(msg) from None
    return text


def text_list(raw: object) -> list[str] | None:
    """``Central`` or ``Central; East`` (``;`` or ``,`` separated); a JSON list as is."""
    if isinstance(raw, list):
        # Each item text, as the OpenAPI document says: ``str()`` of anything else stored its
        # Python form as a pool (``['east']``, ``None``, ``True``). Every bad item is named,
        # in one message, as the HTTP API names each: one round of fixes makes the line import.
        bad = [
            f"item {index}: {problem}"
            for index, item in enumerate(raw)
            if (problem := _item_problem(item)) is not None
        ]
        if bad:
            raise ValueError("; ".join(bad))
        return [item.strip() for item in raw if item.strip()]
    if raw is not None and not isinstance(raw, str):
        # A number was stored as the pool "5": the HTTP API refuses it, a file's line too.
        msg = f"expected text or a list of text, got {json_shown(raw)}"
        raise ValueError(msg)
    text = parse_text(raw)
    if text is None:
        return None
    return [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]


def _item_problem(item: object) -> str | None:
    """Why a list's item is no pool name: not text, or text no store can hold."""
    if not isinstance(item, str):
        return f"expected text, got {json_shown(item)}"
    return text_problem(item)


def email_address(raw: object) -> str | None:
    """Exactly one plain address such as ``ann@example.com``, kept as written; empty is None.

    Not a list, not ``Ann <ann@example.com>``: what is stored is what the envelope will hold.
    """
    return _one_address(parse_text(raw))


def lead_email(raw: object) -> str | None:
    """As :func:`email_address`, but a CRM's placeholder without an @ (``n/a``) is no address.

    Exports write ``n/a`` or ``-`` where a lead has no email; such a lead still moves through
    the funnel, unmailed, as one with an empty cell does. Text with an @ is meant as an address
    and must be one.
    """
    text = parse_text(raw)
    return _one_address(text) if text is not None and "@" in text else None


def _one_address(text: str | None) -> str | None:
    if text is None:
        return None
    problem = address_problem(text)
    if problem is not None:
        msg = (
            f"{briefly_shown(text)} is not one plain email address ({problem}); write exactly one "
            "address such as ann@example.com, without a name, a second address or a comment"
        )
        raise ValueError(msg)
    unsendable = sending_problem(text)
    if unsendable is not None:
        msg = (
            f"{unsendable}; the sender would fail every email to it: give an address it can send to"
        )
        raise ValueError(msg)
    return text
