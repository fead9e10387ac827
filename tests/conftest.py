"""Shared fixtures: a real hashmatch server on a free port, over a real gRPC channel.

- `start_server(**config_overrides)`: starts a server (ServerThread, in this process) on a fresh
  SQLite file in tmp_path and waits until it is SERVING; returns a `LiveServer`. Call it again
  with `db_path=first.db_path` after `first.stop()` to restart on the same store. Every server
  it started is stopped at the end of the test.
- `live_server`: one started with the defaults and a registered platform.
- `stubs`: Cases/Matching/ListInfo stubs on `live_server`, with `stubs.key` metadata for calls
  that need an API key (`stubs.matching.MatchBatch(req, metadata=stubs.key)`).
- `connect(server)`: the same stubs for a server from `start_server` (closed at the end).
- `server_process(*flags, db_path=None)`: the server as a real subprocess (`python -m
  hashmatch.server`, port 0, --port-file), started and SERVING; returns a `ProcessServer`
  (`target`, `api_key`, `process`, `log_path`, `stop()`, `kill()`). Stopped at the end.
- `random_hashes(n, seed=0)`: packed random PDQ hashes uint8[n, 32].
- `pg_cluster`: a private PostgreSQL cluster for the whole session (bench/pgcluster.py); the
  tests FAIL, never skip, when PostgreSQL is not installed. `pg_url`: a fresh database in it.
- `any_db`: parametrized over both stores: an SQLite path, then a fresh PostgreSQL URL. Pass it
  as `db_path=any_db` to run a test on both.

Any test may use these; they assume nothing about the test's own data.
"""
import dataclasses
import functools
import itertools
import pathlib
import resource
import signal
import subprocess
import sys
import time
import types

import grpc
import numpy as np
import pytest

from hashmatch.server.app import ServerThread
from hashmatch.server.config import CASE_RATES_OFF, ServerConfig
from bench.pgcluster import PrivateCluster
from hashmatch.server.store import open_store
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc


@dataclasses.dataclass
class LiveServer:
    """A running server: `target` ("127.0.0.1:PORT"), `api_key` (a registered platform)."""
    thread: ServerThread
    db_path: str
    api_key: str

    @property
    def port(self) -> int:
        return self.thread.port

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.thread.port}"

    @property
    def app(self):
        return self.thread.app

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.target)

    def stop(self) -> None:
        self.thread.stop()


# Tests submit cases far faster than any person would: the anonymous call rates are off unless a
# test sets them (tests/test_abuse.py does). Every other limit keeps its default.


@pytest.fixture
def start_server(tmp_path):
    started: list[LiveServer] = []

    def start(wait_serving: bool = True, imported=None, **overrides) -> LiveServer:
        """A server on a free port; `imported` (uint8[n, 32]) is bulk-loaded into its store
        first, as `hashmatch list import` would. Other keywords are ServerConfig fields."""
        overrides.setdefault("db_path", str(tmp_path / "list.db"))
        overrides.setdefault("listen", "127.0.0.1:0")
        overrides.setdefault("worker_threads", 2)
        overrides = {**CASE_RATES_OFF, **overrides}
        store = open_store(overrides["db_path"])
        try:
            if imported is not None:
                store.import_pdq_hashes(imported)
            api_key = store.add_platform(f"platform-{len(started)}")
        finally:
            store.close()
        thread = ServerThread(ServerConfig(**overrides))
        server = LiveServer(thread, overrides["db_path"], api_key)
        started.append(server)
        thread.start(wait_serving=wait_serving)
        return server

    yield start
    for server in started:
        if server.thread.app is not None:
            server.stop()


@pytest.fixture
def live_server(start_server) -> LiveServer:
    return start_server()


def _stubs(server: LiveServer) -> types.SimpleNamespace:
    channel = server.channel()
    return types.SimpleNamespace(
        channel=channel, key=[("x-api-key", server.api_key)],
        cases=pb_grpc.CasesStub(channel), matching=pb_grpc.MatchingStub(channel),
        list_info=pb_grpc.ListInfoStub(channel))


@pytest.fixture
def connect():
    opened = []

    def make(server: LiveServer) -> types.SimpleNamespace:
        opened.append(_stubs(server))
        return opened[-1]

    yield make
    for s in opened:
        s.channel.close()


@pytest.fixture
def stubs(live_server, connect):
    return connect(live_server)


@pytest.fixture
def random_hashes():
    def make(n: int, seed: int = 0) -> np.ndarray:
        return np.random.default_rng(seed).integers(0, 256, size=(n, 32), dtype=np.uint8)
    return make


@dataclasses.dataclass
class ProcessServer:
    """`python -m hashmatch.server` in a subprocess; its JSON log goes to `log_path`."""
    process: subprocess.Popen
    target: str
    db_path: str
    api_key: str
    log_path: pathlib.Path

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM (graceful shutdown); returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def server_process(tmp_path):
    started: list[ProcessServer] = []

    def start(*flags: str, db_path: str | None = None, nofile: int | None = None) -> ProcessServer:
        """`nofile`: the server's open-file limit (RLIMIT_NOFILE), for connection floods."""
        db_path = db_path or str(tmp_path / "list.db")
        store = open_store(db_path)
        try:
            api_key = store.add_platform(f"process-{len(started)}")
        finally:
            store.close()
        port_file = tmp_path / f"port-{len(started)}"
        log_path = tmp_path / f"server-{len(started)}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "hashmatch.server", "--db", db_path, "--listen",
                 "127.0.0.1:0", "--port-file", str(port_file),
                 *(f"--{name.replace('_', '-')}={value}" for name, value in CASE_RATES_OFF.items()),
                 *flags],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                preexec_fn=None if nofile is None else functools.partial(
                    resource.setrlimit, resource.RLIMIT_NOFILE, (nofile, nofile)))
        deadline = time.monotonic() + 60
        while not port_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"server did not start serving:\n{log_path.read_text()}")
            time.sleep(0.05)
        server = ProcessServer(process, f"127.0.0.1:{port_file.read_text().strip()}", db_path,
                               api_key, log_path)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            server.kill()


@pytest.fixture(scope="session")
def pg_cluster():
    cluster = PrivateCluster()
    yield cluster
    cluster.stop()


_databases = itertools.count()


@pytest.fixture
def pg_url(pg_cluster) -> str:
    return pg_cluster.create_database(f"test_{next(_databases)}")


@pytest.fixture(params=["sqlite", "postgresql"])
def any_db(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "list.db")
    return request.getfixturevalue("pg_url")
