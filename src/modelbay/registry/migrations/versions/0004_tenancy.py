"""Tenancy: tenants, API keys, usage, model ownership and sharing.

Models registered before this revision belong to the tenant ``default``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    tenants = op.create_table(
        "tenants",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("rate_limit_rps", sa.Float(), nullable=True),
        sa.Column("daily_quota", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.bulk_insert(tenants, [{"id": 1, "name": "default", "created_at": datetime.now(UTC)}])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("secret_hash", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=True),
        sa.Column("rate_limit_rps", sa.Float(), nullable=True),
        sa.Column("daily_quota", sa.Integer(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=32), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_id"),
        sa.UniqueConstraint("secret_hash"),
    )
    op.create_index("ix_api_keys_tenant_id", "api_keys", ["tenant_id"])
    op.create_table(
        "usage",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id"), nullable=False),
        sa.Column("key_id", sa.String(length=32), nullable=False),
        sa.Column("requests", sa.BigInteger(), nullable=False),
        sa.Column("compute_seconds", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("day", "key_id"),
    )
    op.create_index("ix_usage_day", "usage", ["day"])
    op.create_index("ix_usage_tenant_id", "usage", ["tenant_id"])
    with op.batch_alter_table("models") as batch:
        batch.add_column(sa.Column("tenant_id", sa.Integer(), nullable=False, server_default="1"))
        batch.add_column(
            sa.Column("visibility", sa.String(length=16), nullable=False, server_default="private")
        )
        batch.create_foreign_key("fk_models_tenant_id", "tenants", ["tenant_id"], ["id"])
        batch.create_index("ix_models_tenant_id", ["tenant_id"])
    op.create_table(
        "model_shares",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column(
            "model_id", sa.Integer(), sa.ForeignKey("models.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column(
            "tenant_id",
            sa.Integer(),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model_id", "tenant_id"),
    )
    op.create_index("ix_model_shares_model_id", "model_shares", ["model_id"])


def downgrade() -> None:
    op.drop_table("model_shares")
    with op.batch_alter_table("models") as batch:
        batch.drop_index("ix_models_tenant_id")
        batch.drop_constraint("fk_models_tenant_id", type_="foreignkey")
        batch.drop_column("visibility")
        batch.drop_column("tenant_id")
    op.drop_table("usage")
    op.drop_table("api_keys")
    op.drop_table("tenants")
