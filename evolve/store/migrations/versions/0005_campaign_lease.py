"""Campaigns carry their controller's lease: the time until which the owner holds it unless it renews.

A controller renews its lease while it runs (a heartbeat); a campaign whose
owner stopped renewing (a crash, a lost host) can be resumed from any host
once the lease has expired, and every write of the old owner is refused from
then on. Campaigns of older stores have no lease (their owner's process is
checked, as before).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.add_column(sa.Column("lease_expires", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("lease_expires")
