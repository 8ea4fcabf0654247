"""Re-running a rule never queues an email twice: the key is rule, subject and firing occasion."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from leadflow.clock import SettableClock
from leadflow.engine.runtime import Runtime
from leadflow.engine.tick import run_due_rules
from leadflow.store.tables import LEADS, OUTBOX
from tests.test_funnel_scenario import REPO, T0, seed

ALERT = """\
rules:
  - id: hot-lead-alert
    description: Tell the owner about a hot lead; the rule's own action does not end the match.
    every: 1h
    reentry: {reentry}
    when:
      all:
        - field: score
          at_least: 60
        - field: owner_id
          is_set: true
    actions:
      - notify: {{to: owner, template: mql_assigned}}
"""


def runtime_with(engine: Engine, make_settings: Any, tmp_path: Path, reentry: str) -> Runtime:
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "alert.yaml").write_text(ALERT.format(reentry=reentry), encoding="utf-8")
    settings = make_settings(
        **{
            "paths.rules": str(rules),
            "paths.templates": str(REPO / "templates"),
            "calendar.timezone": "UTC",
        }
    )
    return Runtime.build(engine, settings, SettableClock(T0))


def keys(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return list(
            connection.execute(select(OUTBOX.c.idempotency_key).order_by(OUTBOX.c.id)).scalars()
        )


@pytest.mark.parametrize(
    ("reentry", "expected"),
    [
        (
            "every_time",
            [
                "rule:hot-lead-alert/lead:L1/20260302T090000.000000Z/notify0:owner:mql_assigned",
                "rule:hot-lead-alert/lead:L1/20260302T100000.000000Z/notify0:owner:mql_assigned",
            ],
        ),
        ("once", ["rule:hot-lead-alert/lead:L1/once/notify0:owner:mql_assigned"]),
        ("{once_per: 1d}", ["rule:hot-lead-alert/lead:L1/period20514/notify0:owner:mql_assigned"]),
    ],
)
def test_the_same_instant_twice_is_one_email(
    engine: Engine, make_settings: Any, tmp_path: Path, reentry: str, expected: list[str]
) -> None:
    """Twice at 09:00 gives one message; at 10:00 only every_time fires again."""
    seed(engine)
    with engine.begin() as connection:
        connection.execute(LEADS.update().where(LEADS.c.external_id == "L1").values(owner_id=2))
    runtime = runtime_with(engine, make_settings, tmp_path, reentry)
    rule_set = runtime.load_rules()
    for now in (T0, T0, T0 + timedelta(hours=1)):
        run_due_rules(runtime, rule_set, now, force=True)
    assert keys(engine) == expected
