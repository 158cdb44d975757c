"""Daily quotas and audit sequence numbers as 64-bit integers on every database.

The API accepts quotas up to 2^63-1 and audit ``before`` cursors as large; PostgreSQL's
INTEGER is 32-bit.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_COLUMNS = (
    ("tenants", "daily_quota", True),
    ("api_keys", "daily_quota", True),
    ("audit_log", "seq", False),
)


def upgrade() -> None:
    for table, column, nullable in _COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(
                column, type_=sa.BigInteger(), existing_type=sa.Integer(), nullable=nullable
            )


def downgrade() -> None:
    for table, column, nullable in _COLUMNS:
        with op.batch_alter_table(table) as batch:
            batch.alter_column(
                column, type_=sa.Integer(), existing_type=sa.BigInteger(), nullable=nullable
            )
