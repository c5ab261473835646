"""Drift: the differences between Stripe, Clarity and ERPNext the scheduled check already alerted (issue 13).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "drift_reported",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_drift_reported")),
    )
    op.create_index(op.f("ix_drift_reported_last_seen_at"), "drift_reported", ["last_seen_at"])


def downgrade() -> None:

    op.drop_index(op.f("ix_drift_reported_last_seen_at"), table_name="drift_reported")
    op.drop_table("drift_reported")
