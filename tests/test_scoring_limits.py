"""Scores past 32 bits, and a pass the database refuses.

Pins, on SQLite and PostgreSQL: four criteria of 1,000,000 points (the documented limit) over
773 page views give 3,092,000,000, past 2^31: the pass stores it, its history row says it, and
the explanation adds up to it. On PostgreSQL, a pass the database refuses for a value out of
range says so in one message naming the leads (not "current transaction is aborted"), changes
no score, and the next statements on the store run.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from import_support import rows
from sqlalchemy import Engine, text
from test_scoring import T0, add_activities, add_leads, model_of

from leadflow.scoring.explain import explain_score
from leadflow.scoring.rescoring import ScoringFailedError, rescore

HUGE = "scoring:\n  engagement:\n" + "".join(
    f"    - id: pv-huge-{n}\n      activity: page_view\n      points: 1000000\n"
    for n in range(1, 5)
)
VIEWS = 773


def test_four_criteria_of_a_million_points_store_3_092_000_000(
    engine: Engine, tmp_path: Path
) -> None:
    model = model_of(tmp_path, HUGE)
    add_leads(engine, {})
    add_activities(
        engine,
        *((1, "page_view", T0 - timedelta(minutes=n + 1), {}, False) for n in range(VIEWS)),
    )
    outcome = rescore(engine, model, T0)
    assert outcome.changed == 1
    expected = 4 * VIEWS * 1_000_000
    assert expected > 2**31
    assert rows(engine, "leads", "external_id", "score", "score_fit", "score_engagement") == [
        ("L1", expected, 0, expected)
    ]
    assert rows(engine, "score_changes", "old_score", "new_score", "new_engagement", "cause") == [
        (0, expected, expected, "model")
    ]
    explanation = explain_score(engine, model, "L1", T0, as_stored=True)
    assert explanation is not None
    assert [item.points for item in explanation.contributions] == [VIEWS * 1_000_000] * 4
    assert explanation.total == expected
    assert explanation.matches_stored


@pytest.mark.parametrize(
    "store_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_refused_pass_says_why_in_one_message_and_changes_nothing(
    engine: Engine, tmp_path: Path
) -> None:
    model = model_of(tmp_path, HUGE)
    add_leads(engine, {}, {})
    add_activities(engine, (2, "page_view", T0 - timedelta(hours=1), {}, False))
    # An adjustment no rule can reach (set_score is at most 1,000,000), so that the lead's
    # new total is past 2^63: a value the database refuses.
    with engine.begin() as connection:
        connection.execute(text("UPDATE leads SET score_adjustment = 9223372036854775000"))
    with pytest.raises(ScoringFailedError) as raised:
        rescore(engine, model, T0)
    assert str(raised.value) == (
        "the scoring pass failed for the leads with ids 1 to 2: "
        "NumericValueOutOfRange: bigint out of range; no score of them changed"
    )
    assert rows(engine, "leads", "external_id", "score", "score_engagement") == [
        ("L1", 0, None),
        ("L2", 0, None),
    ]
    assert rows(engine, "score_changes", "lead_id") == []
