"""A throwaway PostgreSQL server for the tests: a cluster made with ``initdb`` in a temporary folder, listening on
127.0.0.1 and a Unix socket in that folder, stopped and removed at the end of the session.

Each test gets a database of its own (``fresh_url``), so the store's migrations run on every one, as they do
on a user's first ``--db postgresql+psycopg://...``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

# Debian's packages (scripts/install.sh --dev installs postgresql); another layout can name its bin/ folder
_BIN_DIRS = [os.environ.get("EVOLVE_PG_BIN", ""), *sorted(map(str, Path("/usr/lib/postgresql").glob("*/bin")), reverse=True)]


class PostgresUnavailableError(Exception):
    """No PostgreSQL server can be started here; says why."""


def _bin_dir() -> Path:
    for folder in _BIN_DIRS:
        if folder and (Path(folder) / "initdb").is_file():
            return Path(folder)
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise PostgresUnavailableError("no initdb found (apt-get install postgresql, or set EVOLVE_PG_BIN to its bin/ folder)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster for the test session (about 3 s to create and start)."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.folder = Path(tempfile.mkdtemp(prefix="evolve-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.user: str | None = None
        if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to the postgres user (Debian's package makes it)
            try:
                pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PostgresUnavailableError("running as root and there is no 'postgres' user to own the cluster") from exc
            self.user = "postgres"
            shutil.chown(self.folder, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        options = (f"-k {self.folder} -c listen_addresses=127.0.0.1 -p {self.port} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"), "-w", "-t", "60", "start")

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            log = self.folder / "log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise PostgresUnavailableError(f"{tool} failed ({done.returncode}): {done.stderr.strip()[-2000:]} {tail}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", dbname="postgres", autocommit=True) as conn:
            conn.execute(sql.encode())  # the names in it are made by this class, never input

    def fresh_url(self) -> str:
        """A new, empty database on this server."""
        name = f"t_{uuid.uuid4().hex[:12]}"
        self._admin(f"CREATE DATABASE {name}")
        return self.url(name)

    def drop(self, url: str) -> None:
        self._admin(f"DROP DATABASE IF EXISTS {url.rsplit('/', 1)[1]} WITH (FORCE)")

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except PostgresUnavailableError:
            pass
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
