"""Federated jobs: their rounds, their clients and the clients' updates.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def _timestamp(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "federations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "job_id", sa.Integer(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("stage", sa.String(length=16), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("lr", sa.Float(), nullable=False),
        sa.Column("layout", sa.JSON(), nullable=False),
        sa.Column("row_shape", sa.JSON(), nullable=False),
        sa.Column("classes", sa.JSON(), nullable=True),
        sa.Column("model_digest", sa.String(length=64), nullable=True),
        sa.Column("selected", sa.JSON(), nullable=False),
        _timestamp("deadline_at", nullable=True),
        _timestamp("updated_at"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_federations_job_id", "federations", ["job_id"], unique=True)
    op.create_index("ix_federations_model_digest", "federations", ["model_digest"])
    op.create_table(
        "federated_clients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "federation_id",
            sa.Integer(),
            sa.ForeignKey("federations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("examples", sa.BigInteger(), nullable=False),
        sa.Column("statistics", sa.JSON(), nullable=False),
        sa.Column("updates", sa.Integer(), nullable=False),
        _timestamp("joined_at"),
        _timestamp("last_seen_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("federation_id", "name"),
    )
    op.create_index("ix_federated_clients_federation_id", "federated_clients", ["federation_id"])
    op.create_table(
        "federated_updates",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "federation_id",
            sa.Integer(),
            sa.ForeignKey("federations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column(
            "client_id",
            sa.Integer(),
            sa.ForeignKey("federated_clients.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("examples", sa.BigInteger(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        _timestamp("received_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("federation_id", "round", "client_id"),
    )
    op.create_index("ix_federated_updates_federation_id", "federated_updates", ["federation_id"])
    op.create_index("ix_federated_updates_digest", "federated_updates", ["digest"])


def downgrade() -> None:
    op.drop_table("federated_updates")
    op.drop_table("federated_clients")
    op.drop_table("federations")
