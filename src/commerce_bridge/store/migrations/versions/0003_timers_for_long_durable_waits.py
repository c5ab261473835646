"""Timers: runs waiting longer than a worker thread should sleep are woken by the engine.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "timers",
        sa.Column("run_id", sa.String(length=600), nullable=False),
        sa.Column("engine_workflow_id", sa.String(length=700), nullable=False),
        sa.Column("step_name", sa.String(length=220), nullable=False),
        sa.Column("wake_at", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_timers")),
    )
    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_timers_wake_at"), ["wake_at"], unique=False)


def downgrade() -> None:

    with op.batch_alter_table("timers", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_timers_wake_at"))

    op.drop_table("timers")
