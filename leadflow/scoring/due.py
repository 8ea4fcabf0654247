"""Which leads a steady rescoring pass must recompute: those whose stored score can differ from
the model's at ``now``; every other lead's stored score is the model's, exactly.

A lead's score is ``fit + engagement + adjustment`` and its grade a function of fit and
engagement. Between two passes of one model with the clock moving forward:

- engagement depends on the lead's activities and ``now`` only. It stays what the last pass
  stored until ``score_next_change_day`` (a little early, never late: ``scoring/sql.py``),
  unless an activity of the lead was written since, and then a trigger has set that column to
  NULL (``store/score_marks.py``). A lead never scored has NULL too;
- fit depends on the lead's row only, and reading every lead's row is cheap beside reading
  their activities: so each steady pass compares every lead's stored fit, total and grade with
  the model's fit and the stored engagement. That finds the leads whose data an import, a rule
  or the API changed (whichever column a criterion reads, whoever wrote it), and a total set
  outside the model, with no column to trust;
- when a criterion reads the clock (an age: ``older_than``, ``within``, a cycle average) no
  stored value says when it changes, and every pass is a full pass.

So the leads due are those with ``score_next_change_day`` NULL or at or before ``now``, with
no stored engagement, or whose stored fit, total or grade differ from the model's fit and the
stored engagement; a full pass would change no other lead.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Connection, Table, or_, select
from sqlalchemy.dialects import sqlite

from leadflow.rule_language.conditions import Condition, EvaluationContext
from leadflow.rule_language.scoring_model import ScoringModel
from leadflow.rule_language.to_sql import to_where
from leadflow.scoring.sql import days_since_epoch, fit_expression, grade_expression
from leadflow.store.tables import ACTIVITIES, LEADS

_PROBES = (datetime(2001, 2, 3, 4, 5, 6, tzinfo=UTC), datetime(2031, 7, 8, 9, 10, 11, tzinfo=UTC))


def reads_clock(model: ScoringModel) -> bool:
    """Whether a criterion's condition depends on ``now``: compiled at two instants, its SQL
    or its parameters differ."""
    conditions: list[tuple[Condition, Table]] = [(item.condition, LEADS) for item in model.fit]
    conditions += [
        (item.condition, ACTIVITIES) for item in model.engagement if item.condition is not None
    ]
    return any(_differs_over_time(condition, table) for condition, table in conditions)


def _differs_over_time(condition: Condition, table: Table) -> bool:
    compiled = [
        to_where(condition, table, EvaluationContext(moment, {})).compile(dialect=sqlite.dialect())
        for moment in _PROBES
    ]
    first, second = compiled
    return str(first) != str(second) or first.params != second.params


def due_leads(connection: Connection, model: ScoringModel, now: datetime) -> list[int]:
    """The ids, in order, of the leads whose stored score a full pass at ``now`` might change
    (and of no lead it would not need to read), given that the last pass ran this model no
    later than ``now`` and no criterion reads the clock."""
    if connection.dialect.name == "postgresql":
        # As in the pass: the scan's CASE expressions cost enough to be JIT-compiled, which
        # takes longer than reading the leads.
        connection.exec_driver_sql("SET LOCAL jit = off")
    lead = (
        select(
            LEADS.c.id,
            LEADS.c.score,
            LEADS.c.score_fit,
            LEADS.c.score_engagement,
            LEADS.c.score_adjustment,
            LEADS.c.score_grade,
            LEADS.c.score_next_change_day,
            fit_expression(model, now).label("fit"),
        )
        .offset(0)
        .subquery("stored")
    )
    grade = grade_expression(model.grades, lead.c.fit, lead.c.score_engagement)
    query = (
        select(lead.c.id)
        .where(
            or_(
                lead.c.score_next_change_day.is_(None),
                lead.c.score_next_change_day <= days_since_epoch(now),
                lead.c.score_engagement.is_(None),
                lead.c.score_fit.is_distinct_from(lead.c.fit),
                lead.c.score != lead.c.fit + lead.c.score_engagement + lead.c.score_adjustment,
                lead.c.score_grade.is_distinct_from(grade),
            )
        )
        .order_by(lead.c.id)
    )
    return [row[0] for row in connection.execute(query)]


def whole_pass_needed(
    model: ScoringModel, last_version: str | None, last_at: datetime | None, now: datetime
) -> bool:
    """A pass must read every lead: no pass yet, another model, the clock moved back, or a
    criterion reads the clock."""
    return last_version != model.version or last_at is None or now < last_at or reads_clock(model)
