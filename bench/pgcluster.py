"""A private PostgreSQL cluster on a temporary directory and a free port, for tests and benchmarks.

Uses Debian's `postgresql` package (scripts/test.sh installs it): `initdb` and `pg_ctl` from
/usr/lib/postgresql/<version>/bin, run as the `postgres` user when we are root (PostgreSQL
refuses to run as root). The server listens on 127.0.0.1 and on a unix socket in the same
directory, trusts local connections, and is stopped (and its directory removed) by `stop()`.
"""
import glob
import os
import shutil
import socket
import subprocess
import tempfile


class PostgresNotFound(RuntimeError):
    pass


def bin_dir() -> str:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit() else 0)
    if not found:
        raise PostgresNotFound("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/pg_ctl); "
                               "run scripts/test.sh, which installs Debian's postgresql package")
    return os.path.dirname(found[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateCluster:
    """`with PrivateCluster() as pg: pg.create_database("x")` -> a postgresql:// URL."""

    def __init__(self):
        self.bin = bin_dir()
        self.dir = tempfile.mkdtemp(prefix="hashmatch-pg-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self._as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self._as_postgres:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync",
                  "-E", "UTF8")
        self.start()

    def _run(self, tool: str, *args: str) -> None:
        cmd = [*self._as_postgres, os.path.join(self.bin, tool), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(f"{tool} failed ({done.returncode}): {done.stdout}{done.stderr}")

    def start(self) -> None:
        options = (f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c max_connections=200")
        self._run("pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "log"), "-w",
                  "-o", options, "start")

    def stop_server(self) -> None:
        """Stops PostgreSQL (fast shutdown: sessions are cut, committed data stays)."""
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg
        with psycopg.connect(self.url(), autocommit=True) as con:
            con.execute(f'DROP DATABASE IF EXISTS "{name}"')
            con.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        try:
            self.stop_server()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
