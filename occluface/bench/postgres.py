"""A throwaway PostgreSQL server for tests and benchmarks: ``initdb`` in a temporary folder, ``pg_ctl start``
on a free 127.0.0.1 port, removed on exit.

It uses Debian's ``postgresql`` package (``make postgres`` installs it; its programs live in
``/usr/lib/postgresql/<version>/bin``, not on ``PATH``). PostgreSQL refuses to run as root, so under root
the server runs as the package's ``postgres`` user. Authentication is ``trust`` on 127.0.0.1 only: the server
is reachable from this machine alone and lives as long as the test run.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from occluface.errors import OccluFaceError

HOST = "127.0.0.1"
INSTALL_HINT = "install PostgreSQL with `make postgres` (Debian's postgresql package)"


def pg_bin(program: str) -> Path:
    """Path of a PostgreSQL server program (``initdb``, ``pg_ctl``), newest installed version first."""
    found = shutil.which(program)
    if found:
        return Path(found)
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{program}"),
                        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0, reverse=True)
    if not candidates:
        raise OccluFaceError(f"PostgreSQL's {program} not found; {INSTALL_HINT}")
    return Path(candidates[0])


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class TemporaryPostgres:
    """``with TemporaryPostgres() as pg: pg.url`` -> ``postgresql://postgres@127.0.0.1:PORT/postgres``.

    ``pg.create_database(name)`` gives each test or benchmark its own empty database on the same server."""

    def __init__(self, *, port: int | None = None, startup_timeout: float = 60.0):
        self.port = port or _free_port()
        self.startup_timeout = startup_timeout
        self.root: Path | None = None
        self._as: list[str] = []

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgresql://postgres@{HOST}:{self.port}/{name}"

    def _run(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        proc = subprocess.run([*self._as, *args], capture_output=True, text=True, timeout=timeout, check=False)
        if proc.returncode != 0:
            raise OccluFaceError(f"{' '.join(args[:2])} failed ({proc.returncode}): {(proc.stderr or proc.stdout)[-800:]}")
        return proc

    def __enter__(self) -> TemporaryPostgres:
        initdb, pg_ctl = pg_bin("initdb"), pg_bin("pg_ctl")
        self.root = Path(tempfile.mkdtemp(prefix="occluface-pg-"))
        data, sock = self.root / "data", self.root / "socket"
        sock.mkdir()
        if os.geteuid() == 0:  # PostgreSQL will not run as root
            import pwd

            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                raise OccluFaceError(f"running as root but there is no 'postgres' user; {INSTALL_HINT}") from None
            for p in (self.root, sock):
                os.chown(p, user.pw_uid, user.pw_gid)
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run(str(initdb), "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-instructions")
        options = f"-c listen_addresses={HOST} -c port={self.port} -c unix_socket_directories={sock} -c max_connections=100"
        self._run(str(pg_ctl), "-D", str(data), "-l", str(self.root / "server.log"), "-o", options, "-w",
                  "-t", str(int(self.startup_timeout)), "start")
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        import psycopg

        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                psycopg.connect(self.url, connect_timeout=2).close()
                return
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise OccluFaceError(f"PostgreSQL did not accept connections on {HOST}:{self.port}: {exc}") from exc
                time.sleep(0.2)

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    @property
    def data_dir(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    def __exit__(self, *exc: object) -> None:
        if self.root is None:
            return
        try:
            self._run(str(pg_bin("pg_ctl")), "-D", str(self.data_dir), "-m", "immediate", "-w", "stop", timeout=60)
        except (OccluFaceError, subprocess.TimeoutExpired):
            pass
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None


__all__ = ["TemporaryPostgres", "pg_bin"]
