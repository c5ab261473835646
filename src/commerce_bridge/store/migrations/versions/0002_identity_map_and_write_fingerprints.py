"""Identity map (links and de-duplication keys) and write fingerprints.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "identity_keys",
        sa.Column("entity_kind", sa.String(length=40), nullable=False),
        sa.Column("dedupe_key", sa.String(length=320), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "entity_kind", "dedupe_key", name=op.f("uq_identity_keys_entity_kind_dedupe_key")
        ),
    )
    op.create_table(
        "identity_links",
        sa.Column("entity_kind", sa.String(length=40), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("system", sa.String(length=40), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(
            "entity_kind", "entity_id", "system", name=op.f("uq_identity_links_entity_kind_entity_id_system")
        ),
        sa.UniqueConstraint(
            "entity_kind",
            "system",
            "external_id",
            name=op.f("uq_identity_links_entity_kind_system_external_id"),
        ),
    )
    op.create_table(
        "write_fingerprints",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("system", sa.String(length=40), nullable=False),
        sa.Column("object_kind", sa.String(length=40), nullable=False),
        sa.Column("object_id", sa.String(length=255), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("written_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_write_fingerprints")),
    )
    with op.batch_alter_table("write_fingerprints", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_write_fingerprints_system_object_kind_object_id_fingerprint"),
            ["system", "object_kind", "object_id", "fingerprint"],
            unique=False,
        )


def downgrade() -> None:

    with op.batch_alter_table("write_fingerprints", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_write_fingerprints_system_object_kind_object_id_fingerprint"))

    op.drop_table("write_fingerprints")
    op.drop_table("identity_links")
    op.drop_table("identity_keys")
