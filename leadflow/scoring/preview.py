"""What a change of the scoring model would do to every lead's score, computed without writing.

``leadflow plan`` compares two rule sets. When their scoring models differ (one added,
removed, changed, enabled or disabled), each lead's score is computed under both sides in one
SELECT in the database, as the rescoring pass would compute it (fit + engagement + the
lead's adjustment, and the grade); a side without an *enabled* model keeps the stored score,
as leadflow would. The preview reports how many scores move and by how much, and for every
enabled lead rule that reads ``score`` (the MQL rule), which leads would newly match and which
would stop matching: the rule's own WHERE, evaluated against the leads with their ``score``
replaced by each side's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from typing import cast as typed

from sqlalchemy import (
    CTE,
    Connection,
    Engine,
    Integer,
    Select,
    Table,
    and_,
    case,
    cast,
    func,
    literal,
    select,
)
from sqlalchemy.orm import Session

from leadflow.engine.evaluation import reentry_clause
from leadflow.engine.sales_cycle import averages_for
from leadflow.rule_language.conditions import (
    EvaluationContext,
    cycle_conditions,
    referenced_fields,
)
from leadflow.rule_language.fields import Subject
from leadflow.rule_language.model import Rule, RuleSet
from leadflow.rule_language.scoring_model import ScoringModel
from leadflow.rule_language.to_sql import to_where
from leadflow.scoring.sql import engagement_by_lead, fit_expression, grade_expression
from leadflow.store.tables import LEADS

ScoringStatus = Literal["added", "removed", "changed", "enabled", "disabled"]

CHANGE_BANDS: tuple[tuple[str, int | None, int | None], ...] = (
    ("-20 or less", None, -20),
    ("-19 to -10", -19, -10),
    ("-9 to -1", -9, -1),
    ("+1 to +9", 1, 9),
    ("+10 to +19", 10, 19),
    ("+20 or more", 20, None),
)
"""How a changed score's move is counted: (label, lowest, highest), both ends included."""


@dataclass(frozen=True)
class LeadMove:
    """One lead a score rule would treat differently: ``+`` newly matching, ``-`` no longer."""

    external_id: str
    sign: Literal["+", "-"]
    old_score: int
    new_score: int
    grade: str | None
    """The grade under the working side (the stored one when that side has no enabled model)."""


@dataclass(frozen=True)
class RuleCrossing:
    rule_id: str
    newly: int
    no_longer: int
    moves: tuple[LeadMove, ...]
    """Every lead that crosses, by external id."""


@dataclass(frozen=True)
class ScoringPreview:
    status: ScoringStatus
    base_active: bool
    working_active: bool
    leads: int
    changed: int
    """Leads whose score differs between the two sides."""
    bands: tuple[tuple[str, int], ...]
    """(band label, leads) over CHANGE_BANDS, for the changed leads."""
    lowest: int | None
    highest: int | None
    """The largest fall and the largest rise (signed); None when no score falls (rises)."""
    rules: tuple[RuleCrossing, ...]


def scoring_status(base: RuleSet, working: RuleSet) -> ScoringStatus | None:
    """How the scoring model differs between the two sets; None when it does not."""
    old, new = base.scoring, working.scoring
    if old is None and new is None:
        return None
    if old is None:
        return "added"
    if new is None:
        return "removed"
    if old.digest == new.digest:
        return None
    if old.enabled != new.enabled:
        return "enabled" if new.enabled else "disabled"
    return "changed"


def scored_leads(model: ScoringModel | None, now: datetime, dialect: str) -> Select[Any]:
    """(id, score, fit, engagement, grade) for every lead under ``model`` as of ``now``; the
    stored values without one (a side whose model is absent or disabled keeps the CRM's)."""
    if model is None:
        return select(
            LEADS.c.id.label("id"),
            LEADS.c.score.label("score"),
            LEADS.c.score_fit.label("fit"),
            LEADS.c.score_engagement.label("engagement"),
            LEADS.c.score_grade.label("grade"),
        )
    fit = fit_expression(model, now)
    per_lead = engagement_by_lead(model, now, dialect)
    if per_lead is None:
        engagement: Any = cast(literal(0), Integer)
        source: Any = LEADS
    else:
        parts = per_lead.subquery("engagement")
        engagement = func.coalesce(parts.c.engagement, 0)
        source = LEADS.outerjoin(parts, parts.c.lead_id == LEADS.c.id)
    return select(
        LEADS.c.id.label("id"),
        (fit + engagement + LEADS.c.score_adjustment).label("score"),
        fit.label("fit"),
        engagement.label("engagement"),
        grade_expression(model.grades, fit, engagement).label("grade"),
    ).select_from(source)


def preview_scoring(
    engine: Engine, base: RuleSet, working: RuleSet, now: datetime
) -> ScoringPreview | None:
    """Every lead's score under both sides' models, compared; None when the models agree."""
    status = scoring_status(base, working)
    if status is None:
        return None
    old_model, new_model = base.active_scoring, working.active_scoring
    with engine.connect() as connection:
        dialect = connection.dialect.name
        old = scored_leads(old_model, now, dialect).cte("old_scores")
        new = scored_leads(new_model, now, dialect).cte("new_scores")
        both = (
            select(
                old.c.id.label("id"),
                old.c.score.label("old_score"),
                new.c.score.label("new_score"),
                new.c.grade.label("new_grade"),
            )
            .join_from(old, new, new.c.id == old.c.id)
            .cte("both_scores")
        )
        leads, changed, lowest, highest, bands = _distribution(connection, both)
        rules = tuple(
            _crossing(connection, rule, both, now)
            for rule in working.rules
            if rule.enabled and rule.subject is Subject.LEAD and _reads_score(rule)
        )
    return ScoringPreview(
        status=status,
        base_active=old_model is not None,
        working_active=new_model is not None,
        leads=leads,
        changed=changed,
        bands=bands,
        lowest=lowest,
        highest=highest,
        rules=rules,
    )


def _reads_score(rule: Rule) -> bool:
    return any(spec.name == "score" for spec in referenced_fields(rule.condition))


def _distribution(
    connection: Connection, both: CTE
) -> tuple[int, int, int | None, int | None, tuple[tuple[str, int], ...]]:
    delta = both.c.new_score - both.c.old_score
    band = case(
        *(
            (and_(*_within(delta, low, high)), literal(index))
            for index, (_label, low, high) in enumerate(CHANGE_BANDS)
        ),
        else_=literal(-1),
    )
    totals = connection.execute(
        select(
            func.count(),
            func.count().filter(delta != 0),
            func.min(case((delta < 0, delta))),
            func.max(case((delta > 0, delta))),
        ).select_from(both)
    ).one()
    counts: dict[int, int] = dict(
        connection.execute(
            select(band, func.count()).select_from(both).where(delta != 0).group_by(band)
        ).all()
    )
    bands = tuple(
        (label, int(counts.get(index, 0)))
        for index, (label, _low, _high) in enumerate(CHANGE_BANDS)
    )
    return int(totals[0]), int(totals[1]), totals[2], totals[3], bands


def _within(delta: Any, low: int | None, high: int | None) -> list[Any]:
    clauses = []
    if low is not None:
        clauses.append(delta >= low)
    if high is not None:
        clauses.append(delta <= high)
    return clauses


def _crossing(connection: Connection, rule: Rule, both: CTE, now: datetime) -> RuleCrossing:
    """The leads the rule's WHERE matches under one side's scores and not the other's."""
    with Session(bind=connection) as session:
        context = EvaluationContext(
            now, averages_for(session, list(cycle_conditions(rule.condition)), now)
        )
    kept = [column for column in LEADS.c if column.name != "score"]
    matched = {}
    for side in ("old", "new"):
        # The lead table as the rule sees it, with this side's score in place of the stored one.
        # A derived table has the columns a condition reads (``.c``), as the engine's table.
        view = typed(
            Table,
            select(*kept, both.c[f"{side}_score"].label("score"))
            .join_from(LEADS, both, both.c.id == LEADS.c.id)
            .subquery(f"{side}_leads"),
        )
        where = and_(to_where(rule.condition, view, context), reentry_clause(rule, view, now))
        matched[side] = select(view.c.id).where(where)
    old_match = both.c.id.in_(matched["old"])
    new_match = both.c.id.in_(matched["new"])
    rows = connection.execute(
        select(
            LEADS.c.external_id,
            both.c.old_score,
            both.c.new_score,
            both.c.new_grade,
            case((new_match, literal("+")), else_=literal("-")).label("sign"),
        )
        .join_from(both, LEADS, LEADS.c.id == both.c.id)
        .where(old_match != new_match)
        .order_by(LEADS.c.external_id)
    ).all()
    moves = tuple(
        LeadMove(row.external_id, row.sign, row.old_score, row.new_score, row.new_grade)
        for row in rows
    )
    return RuleCrossing(
        rule_id=rule.id,
        newly=sum(1 for move in moves if move.sign == "+"),
        no_longer=sum(1 for move in moves if move.sign == "-"),
        moves=moves,
    )
