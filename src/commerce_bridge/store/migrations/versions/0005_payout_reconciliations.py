"""Payout reconciliation: each reconciled payout (proof, journal) and its exceptions (issue 13).

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:

    op.create_table(
        "payout_reconciliations",
        sa.Column("payout_id", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.Column("arrival_date", sa.BigInteger(), nullable=True),
        sa.Column("transactions", sa.Integer(), nullable=False),
        sa.Column("matched", sa.Integer(), nullable=False),
        sa.Column("exceptions", sa.Integer(), nullable=False),
        sa.Column("proof", sa.Text(), nullable=False),
        sa.Column("journal", sa.Text(), nullable=False),
        sa.Column("journal_entry", sa.String(length=140), nullable=True),
        sa.Column("reconciled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("payout_id", name=op.f("pk_payout_reconciliations")),
    )
    op.create_index(op.f("ix_payout_reconciliations_reconciled_at"), "payout_reconciliations", ["reconciled_at"])
    op.create_table(
        "reconciliation_exceptions",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("payout_id", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=40), nullable=False),
        sa.Column("ref", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("suggested_fix", sa.Text(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("expected_minor", sa.BigInteger(), nullable=True),
        sa.Column("expected_currency", sa.String(length=3), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reconciliation_exceptions")),
        sa.UniqueConstraint("payout_id", "kind", "ref", name=op.f("uq_reconciliation_exceptions_payout_id_kind_ref")),
    )


def downgrade() -> None:

    op.drop_table("reconciliation_exceptions")
    op.drop_index(op.f("ix_payout_reconciliations_reconciled_at"), table_name="payout_reconciliations")
    op.drop_table("payout_reconciliations")
