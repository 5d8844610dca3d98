"""The head revision of ledger/migrations, read without importing Alembic or SQLAlchemy (commands
that only read the index check the schema with it and start fast)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from .errors import DatabaseError

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

_REVISION_LINE = re.compile(r"^(revision|down_revision)\s*(?::[^=]*)?=\s*(.+?)\s*$", re.MULTILINE)


def head_revision() -> str:
    """The head of ledger/migrations: the one revision no other names as its ``down_revision``.
    Read from the scripts' ``revision =`` / ``down_revision =`` lines without importing Alembic
    (a test checks it equals Alembic's own head)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found: dict[str, str] = {m[1]: m[2] for m in _REVISION_LINE.finditer(script.read_text())}
        if "revision" not in found:
            continue
        revisions.add(ast.literal_eval(found["revision"]))
        down = ast.literal_eval(found.get("down_revision", "None"))
        parents.update([down] if isinstance(down, str) else (down or ()))
    heads = revisions - parents
    if len(heads) != 1:
        raise DatabaseError(f"ledger/migrations must have one head, not {sorted(heads)}")
    return heads.pop()
