"""A lead's timeline on the dashboard, from what the engine really writes: its first score
from the model reads as its first scoring, and its leaving a nurture stream is said with the
reason, though the stage change that ends it writes no audit row of the exit.

Found by testers: the timeline showed the model's first score of a lead as ``score 0 → 10
(model)``, a change with the pass's cause, and never that a lead left nurture on becoming an
MQL.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import Engine, update

from leadflow.clock import SettableClock
from leadflow.dashboard.timeline import lead_header, timeline
from leadflow.engine.runtime import Runtime
from leadflow.store.tables import LEADS
from tests.test_scoring_before_rules import T0, daemon, insert_leads, runtime

__all__ = ["runtime"]  # the fixture


def test_first_score_enrollment_and_exit_on_becoming_an_mql(
    runtime: Runtime, engine: Engine
) -> None:
    """Oakridge (West, a company: fit 10) is scored by the first pass, enrolled in welcome a
    minute later; moved East, the next rule job scores it 75 and makes it an MQL, which ends
    its enrollment (``became mql``)."""
    insert_leads(engine, T0, "Oakridge")
    evaluator = daemon(runtime)
    assert isinstance(runtime.clock, SettableClock)
    asyncio.run(evaluator.funnel_tick())
    runtime.clock.set(T0 + timedelta(minutes=1))
    asyncio.run(evaluator.evaluate("nurture-new-leads"))
    runtime.clock.set(T0 + timedelta(minutes=5))
    with engine.begin() as connection:
        connection.execute(
            update(LEADS).values(
                attributes={"region": "East"}, updated_at=T0 + timedelta(minutes=5)
            )
        )
    asyncio.run(evaluator.evaluate("mql-assignment"))
    version = evaluator.holder.current().version

    lead = lead_header(engine, "Oakridge")
    assert lead is not None
    events, more = timeline(engine, lead)
    assert [(e.at - T0, e.summary) for e in events] == [
        (timedelta(0), "first score 10 (fit 10, engagement 0)"),
        (timedelta(minutes=1), f"enrolled by rule nurture-new-leads ({version})"),
        (timedelta(minutes=5), f"stage_changed by rule mql-assignment ({version})"),
        (timedelta(minutes=5), "score 10 → 75 (fit)"),
        (timedelta(minutes=5), "left nurture stream welcome: became mql"),
    ]
    assert more is False
