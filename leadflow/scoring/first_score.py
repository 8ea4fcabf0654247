"""A lead's first score from the model, told apart from a change of its score.

The pass that scores a lead for the first time writes a ``score_changes`` row with the pass's
cause (``model`` on a model's first pass, ``fit`` for a lead imported since the last one),
which read as a change of the lead's data. The row is a first scoring when a model wrote it
and the lead had no fit and no engagement before: a rule's adjustment keeps the parts as they
were and names no model. The dashboard's timeline, ``leadflow score explain`` and the HTTP
lead view say it the same way.
"""

from __future__ import annotations

from typing import Any


def is_first_score(row: Any) -> bool:
    """Whether the ``score_changes`` ``row`` (``model_version``, ``old_fit``,
    ``old_engagement``) is the model's first score of its lead."""
    return row.model_version is not None and row.old_fit is None and row.old_engagement is None


def first_score_text(row: Any) -> str:
    """``first score 12 (fit 10, engagement 2)``, with ``; 30 before, set outside the model``
    when the CRM had set a score."""
    parts = f"fit {_shown(row.new_fit)}, engagement {_shown(row.new_engagement)}"
    before = f"; {row.old_score} before, set outside the model" if row.old_score else ""
    return f"first score {_shown(row.new_score)} ({parts}{before})"


def change_reason(row: Any) -> str:
    """Why the ``score_changes`` ``row`` moved its lead's score: the model's first score as
    :func:`first_score_text` says it, else the cause with its detail (``activity:
    page_view``)."""
    if is_first_score(row):
        return first_score_text(row)
    return str(row.cause) + (f": {row.detail}" if row.detail else "")


def _shown(value: object) -> str:
    """``-`` for a part there was none of, never Python's ``None``."""
    return "-" if value is None else str(value)
