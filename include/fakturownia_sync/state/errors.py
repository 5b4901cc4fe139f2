"""Errors of the state DB that tell the operator what to do, not what the driver saw.

A state DB that cannot be used is a setup problem (a path, a permission, a version), so these are
`ConfigError`s: the run fails at once with one sentence naming the database (never its password) and the
remedy. Raw driver messages like "unable to open database file" or Alembic's "Can't locate revision" name
neither the file nor the fix.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from fakturownia_sync.errors import ConfigError

SQLITE_READONLY = 8
SQLITE_CANTOPEN = 14


class StateDbError(ConfigError):
    """The state DB cannot be used as configured; `url` is the database URL without its password."""

    def __init__(self, url: str, message: str) -> None:
        self.url = url
        super().__init__(message)


class StateDbTooNew(StateDbError):
    """The state DB was migrated by a newer version of this project (a revision this code does not know)."""

    def __init__(self, url: str, revision: str) -> None:
        self.revision = revision
        super().__init__(
            url,
            f"the state DB at {url} was written by a newer version (revision {revision}); "
            "upgrade the project or point fakturownia_sync_db elsewhere",
        )


class StateDbPathError(StateDbError):
    """An SQLite state DB file that cannot be opened or written; `path` is the file."""

    def __init__(self, url: str, path: Path, problem: str) -> None:
        self.path = path
        super().__init__(url, f"the state DB file {path} {problem}; fix that or point fakturownia_sync_db elsewhere")


class StateDbUnreachable(StateDbError):
    """The state DB server refused or did not answer the connection."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(
            url, f"cannot connect to the state DB at {url}: {detail}; check the fakturownia_sync_db connection"
        )


def safe_url(url: str) -> str:
    """The URL as it may be printed or logged: the password is replaced by ***."""
    return make_url(url).render_as_string(hide_password=True)


def sqlite_path(url: str) -> Path | None:
    """The file behind an SQLite URL (also the `file:...?mode=ro&uri=true` form), or None (memory, not SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database or parsed.database == ":memory:":
        return None
    database = parsed.database
    if database.startswith("file:"):
        database = database[len("file:") :].split("?", 1)[0]
    return Path(database)


def check_sqlite_folder(url: str) -> None:
    """Refuse an SQLite path whose folder is missing before SQLite says only "unable to open database file"."""
    path = sqlite_path(url)
    if path is not None and not path.parent.is_dir():
        raise StateDbPathError(safe_url(url), path, f"cannot be created: the folder {path.parent} does not exist")


def explain(url: str, error: DBAPIError) -> StateDbError | None:
    """An SQLite error about the file (read-only, cannot be opened or created) as one naming the path and the
    remedy; None for anything else."""
    original = error.orig
    path = sqlite_path(url)
    if path is not None and isinstance(original, sqlite3.Error):
        code = getattr(original, "sqlite_errorcode", None)
        if code == SQLITE_READONLY:
            return StateDbPathError(
                safe_url(url), path, "is read-only (file or folder permissions, a read-only mount or mode=ro)"
            )
        if code == SQLITE_CANTOPEN:
            if not path.parent.is_dir():
                problem = f"cannot be created: the folder {path.parent} does not exist"
            elif path.exists():
                problem = "cannot be opened (is it a database file this user may read and write?)"
            else:
                problem = f"cannot be created in the folder {path.parent} (is the folder writable?)"
            return StateDbPathError(safe_url(url), path, problem)
        return None
    return None


def unreachable(url: str, error: DBAPIError) -> StateDbError:
    """The error for a failed first connection: a path problem on SQLite, else the server's own words."""
    explained = explain(url, error)
    if explained is not None:
        return explained
    lines = str(error.orig).strip().splitlines()
    detail = lines[0] if lines else type(error.orig).__name__
    password = make_url(url).password
    if password:
        detail = detail.replace(str(password), "***")
    return StateDbUnreachable(safe_url(url), detail)
