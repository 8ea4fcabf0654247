"""the funnel tables

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import leadflow.store.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "import_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("file", sa.String(length=2000), nullable=False),
        sa.Column("started_at", leadflow.store.types.UTCDateTime(), nullable=False),
        sa.Column("finished_at", leadflow.store.types.UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("inserted", sa.Integer(), nullable=False),
        sa.Column("updated", sa.Integer(), nullable=False),
        sa.Column("unchanged", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "reps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("manager_id", sa.Integer(), nullable=True),
        sa.Column(
            "pools",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("out_of_office_until", leadflow.store.types.UTCDateTime(), nullable=True),
        sa.Column("source_hash", sa.String(length=32), nullable=True),
        sa.Column("created_at", leadflow.store.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", leadflow.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["manager_id"],
            ["reps.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("external_id"),
    )
    op.create_table(
        "rule_firings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rule_id", sa.String(length=200), nullable=False),
        sa.Column("rule_version", sa.String(length=80), nullable=False),
        sa.Column("subject_kind", sa.String(length=10), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("fired_at", leadflow.store.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("rule_firings", schema=None) as batch_op:
        batch_op.create_index(
            "ix_firings_rule_subject",
            ["rule_id", "subject_kind", "subject_id", "fired_at"],
            unique=False,
        )

    op.create_table(
        "rule_runs",
        sa.Column("rule_id", sa.String(length=200), nullable=False),
        sa.Column("rule_version", sa.String(length=80), nullable=False),
        sa.Column("last_started_at", leadflow.store.types.UTCDateTime(), nullable=True),
        sa.Column("last_finished_at", leadflow.store.types.UTCDateTime(), nullable=True),
        sa.Column("last_status", sa.String(length=20), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("matched", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("rule_id"),
    )
    op.create_table(
        "assignment_rotations",
        sa.Column("pool", sa.String(length=100), nullable=False),
        sa.Column("last_rep_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", leadflow.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["last_rep_id"],
            ["reps.id"],
        ),
        sa.PrimaryKeyConstraint("pool"),
    )
    op.create_table(
        "leads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("name", sa.String(length=300), nullable=True),
        sa.Column("company", sa.String(length=300), nullable=True),
        sa.Column(
            "attributes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("score", sa.Integer(), nullable=False),
        sa.Column("stage", sa.String(length=40), nullable=False),
        sa.Column("stage_entered_at", leadflow.store.types.UTCDateTime(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("previous_owner_id", sa.Integer(), nullable=True),
        sa.Column("last_activity_at", leadflow.store.types.UTCDateTime(), nullable=True),
        sa.Column("unsubscribed", sa.Boolean(), nullable=False),
        sa.Column("do_not_email", sa.Boolean(), nullable=False),
        sa.Column("hard_bounced", sa.Boolean(), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("source_hash", sa.String(length=32), nullable=True),
        sa.Column("created_at", leadflow.store.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", leadflow.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["reps.id"],
        ),
        sa.ForeignKeyConstraint(
            ["previous_owner_id"],
            ["reps.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("external_id"),
    )
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.create_index(
            "ix_leads_stage_activity", ["stage", "last_activity_at"], unique=False
        )
        batch_op.create_index("ix_leads_owner_stage", ["owner_id", "stage"], unique=False)
        batch_op.create_index("ix_leads_stage_entered", ["stage", "stage_entered_at"], unique=False)
        batch_op.create_index("ix_leads_stage_score", ["stage", "score"], unique=False)

    op.create_table(
        "deals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=True),
        sa.Column("account", sa.String(length=300), nullable=True),
        sa.Column("product", sa.String(length=200), nullable=True),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("stage", sa.String(length=60), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=True),
        sa.Column("amount", sa.Float(), nullable=True),
        sa.Column("engaged_at", leadflow.store.types.UTCDateTime(), nullable=True),
        sa.Column("closed_at", leadflow.store.types.UTCDateTime(), nullable=True),
        sa.Column("last_activity_at", leadflow.store.types.UTCDateTime(), nullable=True),
        sa.Column(
            "attributes",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("recycle_reason", sa.Text(), nullable=True),
        sa.Column("source_hash", sa.String(length=32), nullable=True),
        sa.Column("created_at", leadflow.store.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", leadflow.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["reps.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("external_id"),
    )
    with op.batch_alter_table("deals", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_deals_lead_id"), ["lead_id"], unique=False)
        batch_op.create_index("ix_deals_outcome_closed", ["outcome", "closed_at"], unique=False)
        batch_op.create_index("ix_deals_outcome_engaged", ["outcome", "engaged_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_deals_owner_id"), ["owner_id"], unique=False)

    op.create_table(
        "nurture_enrollments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("stream", sa.String(length=100), nullable=False),
        sa.Column("rule_id", sa.String(length=200), nullable=True),
        sa.Column("enrolled_at", leadflow.store.types.UTCDateTime(), nullable=False),
        sa.Column("next_step", sa.Integer(), nullable=False),
        sa.Column("next_step_at", leadflow.store.types.UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("exit_reason", sa.String(length=200), nullable=True),
        sa.Column("exited_at", leadflow.store.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("nurture_enrollments", schema=None) as batch_op:
        batch_op.create_index("ix_nurture_status_next", ["status", "next_step_at"], unique=False)

    op.create_table(
        "sla_timers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("rule_id", sa.String(length=200), nullable=False),
        sa.Column("rule_version", sa.String(length=80), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("started_at", leadflow.store.types.UTCDateTime(), nullable=False),
        sa.Column("due_at", leadflow.store.types.UTCDateTime(), nullable=False),
        sa.Column("calendar", sa.String(length=100), nullable=False),
        sa.Column(
            "ladder",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "met_by",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("next_escalation_at", leadflow.store.types.UTCDateTime(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("closed_at", leadflow.store.types.UTCDateTime(), nullable=True),
        sa.Column("close_reason", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["reps.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sla_timers", schema=None) as batch_op:
        batch_op.create_index("ix_sla_status_due", ["status", "due_at"], unique=False)
        batch_op.create_index("ix_sla_status_next", ["status", "next_escalation_at"], unique=False)

    op.create_table(
        "activities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=True),
        sa.Column("deal_id", sa.Integer(), nullable=True),
        sa.Column("type", sa.String(length=60), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("occurred_at", leadflow.store.types.UTCDateTime(), nullable=False),
        sa.Column(
            "properties",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("source_hash", sa.String(length=32), nullable=True),
        sa.Column("created_at", leadflow.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["actor_id"],
            ["reps.id"],
        ),
        sa.ForeignKeyConstraint(
            ["deal_id"],
            ["deals.id"],
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("external_id"),
    )
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.create_index("ix_activities_deal_time", ["deal_id", "occurred_at"], unique=False)
        batch_op.create_index("ix_activities_lead_time", ["lead_id", "occurred_at"], unique=False)

    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", leadflow.store.types.UTCDateTime(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("rule_id", sa.String(length=200), nullable=True),
        sa.Column("rule_version", sa.String(length=80), nullable=True),
        sa.Column("lead_id", sa.Integer(), nullable=True),
        sa.Column("deal_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column(
            "params",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "evidence",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["deal_id"],
            ["deals.id"],
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.create_index("ix_audit_deal_at", ["deal_id", "at"], unique=False)
        batch_op.create_index("ix_audit_lead_at", ["lead_id", "at"], unique=False)
        batch_op.create_index(batch_op.f("ix_audit_log_at"), ["at"], unique=False)
        batch_op.create_index("ix_audit_rule_at", ["rule_id", "at"], unique=False)

    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=400), nullable=False),
        sa.Column("message_id", sa.String(length=400), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("category", sa.String(length=20), nullable=False),
        sa.Column("lead_id", sa.Integer(), nullable=True),
        sa.Column("deal_id", sa.Integer(), nullable=True),
        sa.Column("rule_id", sa.String(length=200), nullable=True),
        sa.Column("rule_version", sa.String(length=80), nullable=True),
        sa.Column("recipient", sa.String(length=2000), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("body_text", sa.Text(), nullable=False),
        sa.Column("body_html", sa.Text(), nullable=True),
        sa.Column(
            "headers",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", leadflow.store.types.UTCDateTime(), nullable=False),
        sa.Column("claimed_until", leadflow.store.types.UTCDateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", leadflow.store.types.UTCDateTime(), nullable=False),
        sa.Column("sent_at", leadflow.store.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["deal_id"],
            ["deals.id"],
        ),
        sa.ForeignKeyConstraint(
            ["lead_id"],
            ["leads.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("idempotency_key"),
        sa.UniqueConstraint("message_id"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_lead_id"), ["lead_id"], unique=False)
        batch_op.create_index("ix_outbox_status_next", ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_status_next")
        batch_op.drop_index(batch_op.f("ix_outbox_lead_id"))

    op.drop_table("outbox")
    with op.batch_alter_table("audit_log", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_rule_at")
        batch_op.drop_index(batch_op.f("ix_audit_log_at"))
        batch_op.drop_index("ix_audit_lead_at")
        batch_op.drop_index("ix_audit_deal_at")

    op.drop_table("audit_log")
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.drop_index("ix_activities_lead_time")
        batch_op.drop_index("ix_activities_deal_time")

    op.drop_table("activities")
    with op.batch_alter_table("sla_timers", schema=None) as batch_op:
        batch_op.drop_index("ix_sla_status_next")
        batch_op.drop_index("ix_sla_status_due")

    op.drop_table("sla_timers")
    with op.batch_alter_table("nurture_enrollments", schema=None) as batch_op:
        batch_op.drop_index("ix_nurture_status_next")

    op.drop_table("nurture_enrollments")
    with op.batch_alter_table("deals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_deals_owner_id"))
        batch_op.drop_index("ix_deals_outcome_engaged")
        batch_op.drop_index("ix_deals_outcome_closed")
        batch_op.drop_index(batch_op.f("ix_deals_lead_id"))

    op.drop_table("deals")
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_index("ix_leads_stage_score")
        batch_op.drop_index("ix_leads_stage_entered")
        batch_op.drop_index("ix_leads_owner_stage")
        batch_op.drop_index("ix_leads_stage_activity")

    op.drop_table("leads")
    op.drop_table("assignment_rotations")
    op.drop_table("rule_runs")
    with op.batch_alter_table("rule_firings", schema=None) as batch_op:
        batch_op.drop_index("ix_firings_rule_subject")

    op.drop_table("rule_firings")
    op.drop_table("reps")
    op.drop_table("import_runs")
