"""Alembic from Python: the pipeline, the CLI and the tests all migrate through here."""

from __future__ import annotations

from alembic.config import Config

from alembic import command
from python_jobs.paths import ALEMBIC_INI


def alembic_config(url: str) -> Config:
    config = Config(str(ALEMBIC_INI))
    config.attributes["url"] = url
    config.attributes["configure_logging"] = False
    return config


def upgrade(url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def ensure_partitions(conn, months_ahead: int = 3) -> int:
    """Create study_events partitions from the current month to `months_ahead` months ahead."""
    row = conn.execute(
        "select app.ensure_study_event_partitions(now(), %s)", (months_ahead,)
    ).fetchone()
    conn.commit()
    return int(row[0])
