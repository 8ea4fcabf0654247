"""Streaming the rows of a CSV or JSONL export, with the physical line each row starts on.

A file is checked before any row is read, so a file that cannot be read at all (not text, not
in the declared encoding, empty, without a usable header) fails before the store is touched.
Rows are then streamed: memory does not grow with the file.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Literal, NoReturn, cast

from leadflow.errors import ImportFileError, Problem, ProblemsError
from leadflow.ingest.json_values import json_value, text_problem
from leadflow.ingest.names import long_name_problem, quoted
from leadflow.ingest.nesting import NestingProblem, flattened

FileFormat = Literal["csv", "jsonl"]
_CHUNK = 1 << 20

Row = tuple[int, list[object], str | None]
"""(physical line the row starts on, cell values aligned with the header, problem or None)."""


class FooterNote(str):
    """The problem of a row that stands for a skipped footer (``footer: after_blank_line``):
    noted once, not rejected. Being a problem, every pass that reads only good rows skips it."""

    __slots__ = ()


_BLANK = "blank line"
"""The problem :meth:`RowSource._csv_cells` gives a blank line when a footer is looked for."""

csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def format_of(path: Path, explicit: str | None) -> FileFormat:
    """``--format`` if given, else from the extension (``.jsonl``/``.ndjson`` or ``.csv``).

    A folder or a missing path is said as such first: a folder's "extension ''" told the user
    to pass --format, which then failed on the folder.
    """
    if path.is_dir():
        raise ImportFileError(_folder(path))
    if not path.exists():
        msg = f"{path}: no such file"
        raise ImportFileError(msg)
    chosen = (explicit or path.suffix.lstrip(".")).lower()
    if chosen in {"jsonl", "ndjson"}:
        return "jsonl"
    if chosen in {"csv", "txt"}:
        return "csv"
    msg = (
        f"{path}: cannot tell the format from the extension {path.suffix!r}; "
        "pass --format csv or --format jsonl"
    )
    raise ImportFileError(msg)


def _folder(path: Path) -> str:
    return (
        f"{path}: is a folder, not a file; give the CSV or JSONL file to import (one file "
        "per command: reps, leads, deals, activities in that order)"
    )


def check_text_file(path: Path, encoding: str, setting: str) -> None:
    """Fail with FILE:LINE if ``path`` is not text in ``encoding`` (NUL bytes, bad bytes)."""
    decoder = codecs.getincrementaldecoder(_reading_encoding(encoding))()
    # A NUL byte means a binary file, but in UTF-16 and UTF-32 text every other byte is one:
    # there a NUL is looked for in the decoded text. (A NUL an escaping encoding decodes from
    # ``\x00`` is a cell's problem, reported on its row, not the file's.)
    wide = codecs.lookup(encoding).name.startswith(("utf-16", "utf-32"))
    lines_before = 0
    try:
        with path.open("rb") as stream:
            while chunk := stream.read(_CHUNK):
                if lines_before == 0 and chunk.startswith(_UTF16_MARKS) and not wide:
                    msg = (
                        f"{path}:1: is UTF-16 text (it starts with a UTF-16 byte-order mark); "
                        f"save the file as UTF-8, or set {setting}.encoding: utf-16"
                    )
                    raise ImportFileError(msg)
                if not wide and (nul := chunk.find(b"\x00")) >= 0:
                    _binary(path, lines_before + chunk.count(b"\n", 0, nul) + 1)
                try:
                    text = decoder.decode(chunk)
                    if wide and (nul := text.find("\x00")) >= 0:
                        _binary(path, lines_before + text.count("\n", 0, nul) + 1)
                except UnicodeDecodeError as exc:
                    line = lines_before + chunk.count(b"\n", 0, max(exc.start, 0)) + 1
                    bad = chunk[exc.start : exc.start + 1].hex()
                    msg = (
                        f"{path}:{line}: not valid {encoding} (byte 0x{bad}); save the file as "
                        f"UTF-8, or set {setting}.encoding (e.g. latin-1 or cp1252)"
                    )
                    raise ImportFileError(msg) from None
                lines_before += text.count("\n")
            decoder.decode(b"", final=True)
    except FileNotFoundError:
        msg = f"{path}: no such file"
        raise ImportFileError(msg) from None
    except IsADirectoryError:
        raise ImportFileError(_folder(path)) from None
    except UnicodeDecodeError:
        msg = f"{path}: ends in the middle of a {encoding} character; the file is truncated"
        raise ImportFileError(msg) from None
    except UnicodeError as exc:
        # Python's utf-16 and utf-32 codecs want a byte-order mark to tell the byte order.
        msg = (
            f"{path}: cannot be read as {encoding} ({exc}); set {setting}.encoding to the "
            "file's own (without a byte-order mark: utf-16-le, utf-16-be, utf-32-le, utf-32-be)"
        )
        raise ImportFileError(msg) from None
    except OSError as exc:
        msg = f"{path}: cannot read: {exc.strerror}"
        raise ImportFileError(msg) from None


def _binary(path: Path, line: int) -> NoReturn:
    msg = f"{path}:{line}: contains NUL bytes: this is not a CSV or JSONL text file"
    raise ImportFileError(msg)


def _reading_encoding(encoding: str) -> str:
    # A UTF-8 byte-order mark (Excel writes one) is not part of the first column's name.
    return "utf-8-sig" if codecs.lookup(encoding).name == "utf-8" else encoding


_BOM = "\ufeff"
"""Left at the start of the text by a byte-order mark written twice (one tool adding its own
to a file that had one): ``utf-8-sig`` takes off one, the rest would start the first name."""
_UTF16_MARKS = (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_SEPARATOR_NAMES = {",": "commas", ";": "semicolons", "\t": "tabs", "|": "vertical bars"}


class RowSource:
    """The header and rows of one file; ``bytes_read`` tells how far the stream has got."""

    def __init__(
        self,
        path: Path,
        file_format: FileFormat,
        encoding: str,
        delimiter: str = ",",
        kind: str = "KIND",
        nests: tuple[str, ...] = (),
        footer: bool = False,
    ) -> None:
        """``nests``: JSONL keys whose objects' keys are columns ``NEST.KEY`` (nesting.py).
        ``footer``: a CSV file's trailing one-field lines after a blank line are a report's
        footer, skipped (:meth:`_csv_rows`)."""
        self.path = path
        self.footer = footer
        self.nests = nests
        self.format = file_format
        self.delimiter = delimiter
        self.kind = kind
        self.total_bytes = path.stat().st_size
        self._binary = path.open("rb")
        self._text: IO[str] = io.TextIOWrapper(
            self._binary, encoding=_reading_encoding(encoding), newline=""
        )
        self.header: tuple[str, ...] = ()
        self.ignored_columns = 0
        """Unnamed columns after the last named one (a trailing separator on every line)."""
        self.notes: list[Problem] = []
        """What was read differently from the file as written, said once per file."""
        self.key_lines: dict[str, int] = {}
        """JSONL: the line each key is first seen on (a header column's is 1)."""
        self.first_object_line = 1
        self.refused_keys: dict[str, str] = {}
        try:
            self.header = self._read_header()
        except BaseException:
            self.close()
            raise

    @property
    def bytes_read(self) -> int:
        return self._binary.tell()

    def fileno(self) -> int:
        return self._binary.fileno()

    def close(self) -> None:
        self._text.close()

    def __enter__(self) -> RowSource:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def rows(self) -> Iterator[Row]:
        if self.format == "csv":
            return self._csv_rows()
        return self._jsonl_rows()

    def _read_header(self) -> tuple[str, ...]:
        if self.format == "jsonl":
            return self._jsonl_keys()
        line = self._text.readline().lstrip(_BOM)
        if not line.strip():
            msg = f"{self.path}: is empty; expected a header line naming the columns"
            raise ImportFileError(msg)
        try:
            names = next(csv.reader([line], delimiter=self.delimiter))
        except csv.Error as exc:
            msg = f"{self.path}:1: cannot read the header: {exc}"
            raise ImportFileError(msg) from None
        stripped = [name.strip() for name in names]
        if len(stripped) == 1:
            # Spreadsheets in many locales save "CSV" with semicolons (or tabs): one column
            # named 'a;b;c' would be reported as unknown, with a misleading "did you mean".
            for separator in (";", "\t", ","):
                if separator != self.delimiter and separator in stripped[0]:
                    msg = (
                        f"{self.path}:1: the header is one column separated by "
                        f"{_SEPARATOR_NAMES[separator]} "
                        f"({stripped[0][:60]!r}); set import.mappings.{self.kind}.delimiter: "
                        f"{separator!r}, or save the file with {_SEPARATOR_NAMES[self.delimiter]}"
                        " as separators"
                    )
                    raise ImportFileError(msg)
        while stripped and not stripped[-1]:
            stripped.pop()
            self.ignored_columns += 1
        if self.ignored_columns and stripped:
            first = len(stripped) + 1
            # The file's own separator: a semicolon file's trailing ";;" is no comma.
            trailing = _SEPARATOR_NAMES.get(self.delimiter, repr(self.delimiter)).removesuffix("s")
            which = (
                f"column {first} has"
                if self.ignored_columns == 1
                else f"columns {first}-{first + self.ignored_columns - 1} have"
            )
            self.notes.append(
                Problem(str(self.path), 1, 0, f"{which} no name (a trailing {trailing}); ignored")
            )
        return _checked_header(self.path, stripped)

    def _csv_rows(self) -> Iterator[Row]:
        if not (self.footer and len(self.header) > 1):
            return self._csv_cells()
        return self._without_footer(self._csv_cells())

    def _without_footer(self, rows: Iterator[Row]) -> Iterator[Row]:
        """The rows without the footer a CRM's report export ends with (Salesforce: a blank
        line, then ``"Copyright (c) ..."``, ``"Generated By: ..."``, one quoted text a line).

        Only a block that runs to the end of the file, starts at a blank line and holds only
        one-field (or blank) rows is the footer: such rows are held until the file ends or a
        row of several fields shows they were not, which are then rejected as always.
        """
        held: list[Row] = []
        blank: int | None = None  # the line of the blank line that may start a footer
        for row in rows:
            line, cells, problem = row
            if problem is _BLANK:
                blank = blank or line
                continue
            if blank is not None and problem is not None and len(cells) == 1:
                held.append((line, [], problem))
                continue
            yield from held
            held, blank = [], None
            yield row if problem is None else (line, [], problem)
        if held and blank is not None:
            first, last = held[0][0], held[-1][0]
            lines = f"line {first}" if first == last else f"lines {first}-{last}"
            yield (
                first,
                [],
                FooterNote(
                    f"{lines} after the blank line {blank}: the export's footer of "
                    f"{len(held)} one-field lines, skipped (import.mappings.{self.kind}.footer)"
                ),
            )

    def _csv_cells(self) -> Iterator[Row]:
        reader = csv.reader(self._text, strict=True, delimiter=self.delimiter)
        width = len(self.header)
        widths = {width, width + self.ignored_columns}
        # The header was read by readline(), so the reader's line 1 is physical line 2.
        last = 1
        while True:
            start = last + 1
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                last = reader.line_num + 1
                if str(exc) == "unexpected end of data":
                    # A quote never closed swallows every line after it: say how many, as
                    # "one rejected row" would hide that the rest of the file is lost.
                    swallowed = (
                        f": lines {start}-{last} (the rest of the file) were read as this one "
                        "row and none of them is imported"
                        if last > start
                        else ""
                    )
                    yield (
                        start,
                        [],
                        (
                            f"a quoted field opened on this line is never closed{swallowed}; close "
                            'the quote, or double the quote characters inside the field ("")'
                        ),
                    )
                else:
                    yield start, [], f"cannot read the row: {exc}"
                continue
            last = reader.line_num + 1
            if len(cells) == width:  # the common case: the cells as they are
                yield start, cast("list[object]", cells), None
            elif len(cells) in widths:
                yield start, *self._named_cells(cells)
            elif cells and any(cell.strip() for cell in cells):
                # The cells ride along (unused by the import) so a footer can be told apart.
                problem = f"row has {len(cells)} fields, the header has {width}"
                yield start, cast("list[object]", cells) if self.footer else [], problem
            elif self.footer:
                yield start, [], _BLANK

    def _named_cells(self, cells: list[str]) -> tuple[list[object], str | None]:
        """The cells under named columns; a value under an unnamed one rejects the row, since
        ignoring it would lose data nobody chose to drop."""
        width = len(self.header)
        for position, cell in enumerate(cells[width:], start=width + 1):
            if cell.strip():
                return [], (
                    f"column {position} has no name but holds {cell.strip()[:40]!r}; "
                    "name the column in the header or empty it"
                )
        return list(cells[:width]), None

    def _jsonl_keys(self) -> tuple[str, ...]:
        """The union of the objects' keys in first-seen order (JSONL has no header line).

        A line with a key no store can hold adds none: :meth:`_jsonl_rows` rejects that line.
        """
        keys = self.key_lines
        seen_object = False
        first_refused: tuple[int, str] | None = None
        for number, line in self._numbered_lines():
            try:
                value = json_value(line) if line.strip() else None
            except (ValueError, RecursionError):
                continue
            if isinstance(value, dict):
                if not seen_object:
                    self.first_object_line = number
                seen_object = True
                if self.nests and not value.keys().isdisjoint(self.nests):
                    value = flattened(value, self.nests)
                    if isinstance(value, NestingProblem):
                        first_refused = first_refused or (number, str(value))
                        continue  # rejected at its line by _jsonl_rows
                # Keys already known were checked on their first line; most lines add none.
                if not value.keys() <= keys.keys():
                    refused = _bad_key(value)
                    if refused is not None:
                        first_refused = first_refused or (number, refused)
                        continue
                    for key in value:
                        keys.setdefault(key, number)
        if not seen_object:
            msg = f"{self.path}: has no JSON object lines; expected one object per line"
            raise ImportFileError(msg)
        if not keys and first_refused is not None:
            # Every object line was refused for its keys: "missing required column
            # external_id" blamed the file for what its lines hold.
            at, problem = first_refused
            msg = f"{self.path}:{at}: {problem} (no line of the file can be read)"
            raise ImportFileError(msg)
        self._text.seek(0)
        return _checked_header(self.path, list(keys))

    def refuse_keys(self, reasons: dict[str, str]) -> None:
        """JSONL: leave these keys out of the header; a line holding one is rejected at its
        own line with the key's reason (a key first seen on line 5 is not a header problem)."""
        self.refused_keys.update(reasons)
        self.header = tuple(key for key in self.header if key not in self.refused_keys)

    def _jsonl_rows(self) -> Iterator[Row]:
        header = self.header
        known = frozenset(header)
        nests = self.nests
        for number, line in self._numbered_lines():
            if not line.strip():
                continue
            try:
                value = json_value(line.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                yield number, [], f"invalid JSON: {exc.msg} at column {exc.colno}"
                continue
            except (ValueError, RecursionError) as exc:  # NaN, too many digits, too deep
                yield number, [], f"invalid JSON: {exc}"
                continue
            if not isinstance(value, dict):
                yield number, [], f"expected a JSON object, got {type(value).__name__}"
                continue
            # A flat line (every line of most files) costs one lookup per nest.
            if nests and not value.keys().isdisjoint(nests):
                value = flattened(value, nests)
                if isinstance(value, NestingProblem):
                    yield number, [], str(value)
                    continue
            if not known.issuperset(value):
                yield number, [], _bad_key(value) or self._refused_key(value, known)
                continue
            yield number, [value.get(key) for key in header], None

    def _numbered_lines(self) -> Iterator[tuple[int, str]]:
        """The text's lines from 1, the first without any byte-order mark left on it."""
        for number, line in enumerate(self._text, start=1):
            yield number, line.lstrip(_BOM) if number == 1 else line

    def _refused_key(self, value: dict[str, object], known: frozenset[str]) -> str:
        key = next(key for key in value if key not in known)
        return f"key {key!r}: {self.refused_keys.get(key, 'unexpected key')}"


def _bad_key(value: dict[str, object]) -> str | None:
    """The first key of ``value`` no store can hold, as ``key '...': reason``."""
    for key in value:
        problem = long_name_problem(key, "a key")
        if problem is not None:  # first: a huge key is not looked at, nor printed, whole
            return f"key {quoted(key)}: {problem}"
        problem = text_problem(key)
        if problem is not None:
            return f"key {key!r}: {problem}"
    return None


def _checked_header(path: Path, names: list[str]) -> tuple[str, ...]:
    problems = []
    seen: set[str] = set()
    for position, name in enumerate(names, start=1):
        too_long = long_name_problem(name)
        if too_long is not None:  # first: a huge name is not looked at, nor printed, whole
            problems.append(
                Problem(str(path), 1, 0, f"column {position} {quoted(name)}: {too_long}")
            )
            continue
        problem = text_problem(name)
        if problem is not None:
            problems.append(Problem(str(path), 1, 0, f"column {position} {name!r}: {problem}"))
        elif not name:
            problems.append(Problem(str(path), 1, 0, f"column {position} has no name"))
        elif name in seen:
            problems.append(Problem(str(path), 1, 0, f"column {name!r} appears twice"))
        seen.add(name)
    if problems:
        raise ProblemsError(problems)
    return tuple(names)
