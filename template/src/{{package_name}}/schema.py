"""The schema's two Alembic histories: the service's own, then the template's messaging history.

Each is one line with one head, so the template's revisions never fork the user's and `copier
update` never needs a merge revision (docs/explanation/decisions.md, 11). alembic.ini names them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

from .tables import MESSAGING_TABLES

SERVICE = "alembic"
MESSAGING = "messaging"
# Upgrade order: the messaging revisions change tables that the service's first revision created.
HISTORIES = (SERVICE, MESSAGING)
VERSION_TABLES = {SERVICE: "alembic_version", MESSAGING: "alembic_version_messaging"}

IncludeObject = Callable[[Any, "str | None", str, bool, Any], bool]


def alembic_config(history: str, database_url: str, *, ini: Path, logging: bool = True) -> Config:
    """`logging=False` keeps the caller's logging as it is (alembic.ini would reconfigure it)."""
    config = Config(str(ini), ini_section=history)
    config.attributes["database_url"] = database_url
    config.attributes["skip_logging_config"] = not logging
    return config


def upgrade(database_url: str, *, ini: Path, logging: bool = True) -> None:
    for history in HISTORIES:
        command.upgrade(alembic_config(history, database_url, ini=ini, logging=logging), "head")


def owned_by(history: str) -> IncludeObject:
    """Alembic's `include_object` for a history: its own tables, never a version table.

    So that `alembic revision --autogenerate` in the service's history leaves the messaging
    tables (and the other history's version table) alone, and the reverse.
    """
    messaging = history == MESSAGING

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
        if table is None:
            return True
        if table in VERSION_TABLES.values():
            return False
        return (table in MESSAGING_TABLES) == messaging

    return include
