"""A batch's leads and reps as plain rows hold exactly what the ORM objects hold.

Pins, on SQLite and PostgreSQL: every column of a lead and of a rep (times, JSON attributes and
pools, flags, NULLs) read by :mod:`leadflow.engine.plain_rows` equals the model's attribute of
the same name, and a lead's record for rule fields is its columns.
"""

from __future__ import annotations

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from test_firing_batches import seed

from leadflow.engine.plain_rows import all_reps, leads_by_id, record_of
from leadflow.store.models import Lead, Rep


class TestPlainRows:
    """Plain rows and ORM objects of the same stored rows agree column by column."""

    def test_leads_and_reps_equal_their_models(self, engine: Engine) -> None:
        seed(engine, [{}, {"attributes": {"region": "East", "employees": 12}}])
        with Session(engine) as session:
            models = {lead.id: lead for lead in session.scalars(select(Lead))}
            plain = {lead.id: lead for lead in leads_by_id(session, list(models))}
            reps = {rep.id: rep for rep in session.scalars(select(Rep))}
            plain_reps = {rep.id: rep for rep in all_reps(session)}
            assert sorted(plain) == sorted(models)
            for lead_id, model in models.items():
                values = {name: getattr(model, name) for name in Lead.model_fields}
                assert vars(plain[lead_id]) == values
                assert dict(record_of(plain[lead_id])) == values
            assert list(plain_reps) == sorted(reps)
            for rep_id, rep in reps.items():
                values = {name: getattr(rep, name) for name in Rep.model_fields}
                assert vars(plain_reps[rep_id]) == values
