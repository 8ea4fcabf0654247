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
from rich.console import Console
from sqlalchemy import Engine, text
from test_scoring import T0, add_activities, add_leads, model_of

from leadflow import metrics
from leadflow.cli.status_command import RulesView, render_operations, status_document
from leadflow.scoring.explain import explain_score
from leadflow.scoring.rescoring import ScoringFailedError, rescore
from leadflow.store.status import ScoringFailure, StoreStatus, collect_status

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


@pytest.mark.parametrize(
    "store_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_a_pass_failing_at_every_tick_shows_in_status_until_one_succeeds(
    engine: Engine, tmp_path: Path
) -> None:
    """While the pass fails, ``leadflow status`` (text and JSON ``scoring.last_failure``) says
    so and ``leadflow_scoring_passes{result="failed"}`` counts it; the daemon's log alone said
    it before. A pass that succeeds ends it."""
    model = model_of(tmp_path, HUGE)
    add_leads(engine, {}, {})
    add_activities(engine, (2, "page_view", T0 - timedelta(hours=1), {}, False))
    with engine.begin() as connection:
        connection.execute(text("UPDATE leads SET score_adjustment = 9223372036854775000"))

    def passes(result: str) -> float:
        found = metrics.REGISTRY.get_sample_value(
            "leadflow_scoring_passes_total", {"result": result}
        )
        return found or 0.0

    failed_before, ok_before = passes("failed"), passes("ok")
    error = (
        "the scoring pass failed for the leads with ids 1 to 2: "
        "NumericValueOutOfRange: bigint out of range; no score of them changed"
    )
    for minutes in (0, 5):
        with pytest.raises(ScoringFailedError):
            rescore(engine, model, T0 + timedelta(minutes=minutes))
    # A posted lead's rescore failing is the API's answer, not the pass's state.
    with pytest.raises(ScoringFailedError):
        rescore(engine, model, T0 + timedelta(minutes=7), lead_ids=[2])
    later = T0 + timedelta(minutes=5)
    status = collect_status(engine)
    assert status.scoring is None  # no pass ever succeeded
    assert status.scoring_failure == ScoringFailure(model.version, later, error, 2)
    assert status_document(status, rules_view_of(status))["scoring"] == {
        "model": None,
        "last_pass": None,
        "last_failure": {
            "model_version": model.version,
            "failed_at": later,
            "error": error,
            "failures": 2,
        },
    }
    console = Console(width=400, record=True)
    render_operations(status, console)
    assert console.export_text().splitlines()[-1] == (
        f"scoring FAILING: 2 pass(es) in a row, the last at 2026-03-02 09:05 UTC "
        f"(model {model.version}): {error}"
    )
    assert (passes("failed") - failed_before, passes("ok") - ok_before) == (2, 0)

    with engine.begin() as connection:
        connection.execute(text("UPDATE leads SET score_adjustment = 0"))
    rescore(engine, model, T0 + timedelta(minutes=10))
    status = collect_status(engine)
    assert status.scoring_failure is None
    assert status.scoring is not None
    assert (status.scoring.model_version, status.scoring.last_run_at) == (
        model.version,
        T0 + timedelta(minutes=10),
    )
    assert status_document(status, rules_view_of(status))["scoring"]["last_failure"] is None
    console = Console(width=400, record=True)
    render_operations(status, console)
    assert "FAILING" not in console.export_text()
    assert (passes("failed") - failed_before, passes("ok") - ok_before) == (2, 1)


def rules_view_of(status: StoreStatus) -> RulesView:
    """No rules folder: the scoring section of the document is the store's alone."""
    return RulesView(None, 0, [], [])
