"""Run Alembic programmatically (used by `make`, the CLI and the tests)."""

from __future__ import annotations

import sys
from importlib.resources import files

from alembic import command
from alembic.config import Config


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(files("hotdeal_core") / "migrations"))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str = "base") -> None:
    command.downgrade(alembic_config(database_url), revision)


if __name__ == "__main__":  # python -m hotdeal_core.db.migrate [DATABASE_URL]
    from hotdeal_core.settings import load_settings

    upgrade(sys.argv[1] if len(sys.argv) > 1 else load_settings().database_url)
    print("database migrated to head")
