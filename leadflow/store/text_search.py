"""Finding text inside text, case-sensitive, with the same answer on SQLite and PostgreSQL.

SQLite's ``LIKE`` ignores ASCII case and PostgreSQL's does not, so ``contains`` uses each
dialect's position function instead: ``instr`` and ``strpos`` both count characters from 1
and answer 0 when the part is not there.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Integer, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement


class TextPosition(FunctionElement[int]):
    """The 1-based position of ``part`` in ``text``, 0 if absent."""

    inherit_cache = True
    name = "text_position"
    type = Integer()

    def __init__(self, text: Any, part: str) -> None:
        super().__init__(text, literal(part))


@compiles(TextPosition, "sqlite")
def _sqlite(element: TextPosition, compiler: SQLCompiler, **kw: Any) -> str:
    text, part = list(element.clauses)
    return f"instr({compiler.process(text, **kw)}, {compiler.process(part, **kw)})"


@compiles(TextPosition, "postgresql")
def _postgresql(element: TextPosition, compiler: SQLCompiler, **kw: Any) -> str:
    text, part = list(element.clauses)
    return f"strpos({compiler.process(text, **kw)}, {compiler.process(part, **kw)})"
