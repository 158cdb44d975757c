"""Token limits on tenants and API keys, and LLM tokens in usage.

``tokens_per_minute`` and ``tokens_per_day`` are nullable (unlimited); usage rows of
earlier days count no tokens.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_LIMITS = ("tokens_per_minute", "tokens_per_day")
_COUNTS = ("prompt_tokens", "completion_tokens")


def upgrade() -> None:
    for table in ("tenants", "api_keys"):
        for column in _LIMITS:
            op.add_column(table, sa.Column(column, sa.BigInteger(), nullable=True))
    for column in _COUNTS:
        op.add_column(
            "usage", sa.Column(column, sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    # In place (SQLite 3.35+ drops columns): a batch copy of ``tenants`` would have to drop
    # a table other tables' foreign keys point at.
    for column in _COUNTS:
        op.drop_column("usage", column)
    for table in ("tenants", "api_keys"):
        for column in _LIMITS:
            op.drop_column(table, column)
