"""Customer merges: the external ids retired into a surviving entity (issue 14, point 2).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "identity_retired",
        sa.Column("entity_kind", sa.String(length=40), nullable=False),
        sa.Column("system", sa.String(length=40), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("merged_entity_id", sa.String(length=64), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("entity_kind", "system", "external_id",
                            name=op.f("uq_identity_retired_entity_kind_system_external_id")),
    )
    op.create_index(op.f("ix_identity_retired_entity_kind_entity_id"), "identity_retired",
                    ["entity_kind", "entity_id"])


def downgrade() -> None:

    op.drop_index(op.f("ix_identity_retired_entity_kind_entity_id"), table_name="identity_retired")
    op.drop_table("identity_retired")
