"""Which leads a steady rescoring pass must recompute: those whose stored score can differ from
the model's at ``now``; every other lead's stored score is the model's, exactly.

A lead's score is ``fit + engagement + adjustment`` and its grade a function of fit and
engagement. Between two passes of one model with the clock moving forward, the score can move
only if the lead's row or its activities were written, or time faded or ended some points:

- engagement depends on the lead's activities and ``now``. It stays what the last pass stored
  until ``score_next_change_day`` (a little early, never late: ``scoring/sql.py``);
- fit, the adjustment and a total set outside the model are the lead's row;
- a write to the lead (by anything but the pass) or to one of its activities marks the lead
  (``score_next_change_day`` NULL or negative) in the writer's transaction, by triggers
  (``store/score_marks.py``); a lead never scored is NULL too;
- when a criterion reads the clock (an age: ``older_than``, ``within``, a cycle average) no
  stored value says when it changes, and every pass is a full pass.

So the leads due are those with ``score_next_change_day`` NULL or at or before ``now``, which
an index finds; a full pass would change no other lead.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import ColumnElement, Connection, Table, or_, text
from sqlalchemy.dialects import sqlite

from leadflow.rule_language.conditions import Condition, EvaluationContext
from leadflow.rule_language.scoring_model import ScoringModel
from leadflow.rule_language.to_sql import to_where
from leadflow.scoring.sql import days_since_epoch
from leadflow.store.tables import ACTIVITIES, LEADS

DUE_INDEX = "ix_leads_score_next_change"
_PROBES = (datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC), datetime(2031, 7, 8, 9, 10, 11, tzinfo=UTC))


def reads_clock(model: ScoringModel) -> bool:
    """Whether a criterion's condition depends on ``now``: compiled at two instants, its SQL
    or its parameters differ."""
    conditions: list[tuple[Condition, Table]] = [(item.condition, LEADS) for item in model.fit]
    return _any_differs_over_time(conditions) or engagement_reads_clock(model)


def engagement_reads_clock(model: ScoringModel) -> bool:
    """Whether an engagement criterion's activity condition depends on ``now`` (an age); its
    window and half-life do not count: the stored next change covers them."""
    return _any_differs_over_time(
        [(item.condition, ACTIVITIES) for item in model.engagement if item.condition is not None]
    )


def _any_differs_over_time(conditions: list[tuple[Condition, Table]]) -> bool:
    return any(_differs_over_time(condition, table) for condition, table in conditions)


def _differs_over_time(condition: Condition, table: Table) -> bool:
    compiled = [
        to_where(condition, table, EvaluationContext(moment, {})).compile(dialect=sqlite.dialect())
        for moment in _PROBES
    ]
    first, second = compiled
    return str(first) != str(second) or first.params != second.params


def due_leads(connection: Connection, now: datetime) -> list[int]:
    """The ids, in order, of the leads whose stored score a full pass at ``now`` might change,
    given that the last pass ran the same model no later than ``now`` and no criterion of it
    reads the clock.

    Read from the index whatever the statistics say: taken while every lead was new (NULL),
    they lead either store to scan every lead for the few due."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL enable_seqscan = off")
        hint = ""
    else:
        hint = f"INDEXED BY {DUE_INDEX}"
    query = text(
        f"SELECT id FROM leads {hint} WHERE score_next_change_day IS NULL UNION ALL "
        f"SELECT id FROM leads {hint} WHERE score_next_change_day <= :now ORDER BY 1"
    ).bindparams(now=days_since_epoch(now))
    return [row[0] for row in connection.execute(query)]


def whole_pass_needed(
    model: ScoringModel, last_version: str | None, last_at: datetime | None, now: datetime
) -> bool:
    """A pass must read every lead: no pass yet, another model, the clock moved back, or a
    criterion reads the clock."""
    return last_version != model.version or last_at is None or now < last_at or reads_clock(model)


def engagement_stored(
    model: ScoringModel,
    last_engagement_version: str | None,
    last_at: datetime | None,
    now: datetime,
) -> bool:
    """Whether the engagement and next change stored on every lead not due are still the
    model's at ``now``: the last pass ran the same engagement criteria (its fit criteria and
    grades may differ: neither enters the engagement or its next change), the clock not moved
    back, and no engagement criterion reads the clock. Then a pass that must read every lead
    (another model, a fit criterion reading the clock, too many leads due to list) recomputes
    the fit of every lead but the engagement of the leads due only, and stores what a full
    pass would."""
    return (
        last_engagement_version == model.engagement_version
        and last_at is not None
        and now >= last_at
        and not engagement_reads_clock(model)
    )


def due_clause(now: datetime) -> ColumnElement[bool]:
    """The leads due at ``now``, as :func:`due_leads` lists them: marked (NULL or, on
    PostgreSQL, negative) or their next change come. Both terms are answered by the index on
    ``score_next_change_day``."""
    return or_(
        LEADS.c.score_next_change_day.is_(None),
        LEADS.c.score_next_change_day <= days_since_epoch(now),
    )
