"""Alembic migrations of the bridge's store."""
