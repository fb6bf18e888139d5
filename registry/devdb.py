"""A throwaway PostgreSQL cluster on loopback, for the test suite and the benchmark (not used by the service).

``initdb`` and ``pg_ctl`` refuse to run as root: when the process is root they run as ``postgres``
through ``runuser``, in a temporary directory that user owns. Authentication is ``trust`` on
127.0.0.1 only, and the cluster is deleted on :meth:`ThrowawayPostgres.stop`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

__all__ = ["ThrowawayPostgres"]

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThrowawayPostgres:
    """A private PostgreSQL server: ``start()``, ``create_database()``, ``stop()``.

    Parameters
    ----------
    durable
        ``False`` (tests) turns off fsync and synchronous commit; ``True`` keeps PostgreSQL's defaults
        (benchmarks measure real commit cost).
    settings
        Extra ``-c name=value`` server settings.
    """

    def __init__(self, *, durable: bool = False, settings: dict[str, str] | None = None, bin_dir: Path = PG_BIN):
        self.bin_dir = bin_dir
        self.durable = durable
        self.settings = settings or {}
        self.port = _free_port()
        self.base = Path(tempfile.mkdtemp(prefix="registry-pg-"))
        self.data = self.base / "data"
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.base, user.pw_uid, user.pw_gid)
        self._started = False

    def _run(self, *argv: str) -> None:
        command = [str(self.bin_dir / argv[0]), *argv[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> ThrowawayPostgres:
        """Create the cluster and start the server (returns self)."""
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "--no-sync"
        )
        options = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.base),
            "max_connections": "100",
        }
        if not self.durable:
            options.update({"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"})
        options.update(self.settings)
        flags = " ".join(f"-c {name}={value}" for name, value in options.items())
        self._run("pg_ctl", "-D", str(self.data), "-o", flags, "-l", str(self.base / "server.log"), "-w", "start")
        self._started = True
        return self

    def url(self, database: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3) of ``database``."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database; return its URL."""
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server and delete the cluster."""
        if self._started:
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            except subprocess.CalledProcessError:
                pass
            self._started = False
        shutil.rmtree(self.base, ignore_errors=True)
