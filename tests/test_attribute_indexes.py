"""Declared attributes listed in ``attributes.indexed`` get expression indexes rules use."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select, text

from leadflow.rule_language.conditions import Comparison, EvaluationContext
from leadflow.rule_language.fields import Subject, field_catalog
from leadflow.rule_language.operators import OPERATORS
from leadflow.rule_language.to_sql import to_where
from leadflow.store.database import ensure_attribute_indexes
from leadflow.store.tables import LEADS
from tests.conftest import T0


def test_attribute_condition_uses_its_expression_index(engine: Engine, make_settings: Any) -> None:
    """The compiled condition matches the index expression exactly, on both databases."""
    settings = make_settings(
        **{
            "attributes.leads": {"industry": "string", "employees": "integer"},
            "attributes.indexed": ["industry", "employees"],
        }
    )
    created = ensure_attribute_indexes(
        engine, LEADS, settings.attributes.leads, settings.attributes.indexed
    )
    assert created == ["ix_leads_attr_industry", "ix_leads_attr_employees"]
    assert (
        ensure_attribute_indexes(
            engine, LEADS, settings.attributes.leads, settings.attributes.indexed
        )
        == created
    )

    catalog = field_catalog(Subject.LEAD, settings)
    industry = catalog.get("attributes.industry")
    assert industry is not None
    where = to_where(
        Comparison(industry, OPERATORS["equals"], "aerospace"), LEADS, EvaluationContext(T0, {})
    )
    query = select(LEADS.c.id).where(where)
    compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
    with engine.connect() as connection:
        if engine.dialect.name == "sqlite":
            plan = " ".join(
                str(row[-1]) for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")
            )
        else:
            connection.execute(text("SET enable_seqscan = off"))
            plan = " ".join(
                str(row[0]) for row in connection.exec_driver_sql(f"EXPLAIN {compiled}")
            )
    assert "ix_leads_attr_industry" in plan
