"""Run the alembic migrations programmatically (the bridge does it at start-up)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Engine

HERE = Path(__file__).resolve().parent


class MigrationRefused(RuntimeError):
    """A migration that cannot carry the store's data forward (the message says what to do)."""


def alembic_config() -> Config:
    cfg = Config(str(HERE.parent / "alembic.ini"))
    cfg.set_main_option("script_location", str(HERE))
    return cfg


def upgrade_head(engine: Engine) -> None:
    cfg = alembic_config()
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":  # bridges starting together: one migrates, the others wait
            conn.execute(text("SELECT pg_advisory_xact_lock(7305415231)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
