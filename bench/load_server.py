"""Runs the server under test for the load generator: a temporary SQLite list filled with random
PDQ hashes through the store's bulk import, a platform key, and `python -m hashmatch.server`
bound to 127.0.0.1 in a child process, so the measured server is exactly the one users run."""
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

READY_TIMEOUT_S = 600.0
# Random streams are tagged so the list, the sources and each query stream never share one
# (numpy treats seeds [s] and [s, 0] alike, so the tags are non-zero).
LIST_STREAM, SOURCE_STREAM, QUERY_STREAM = 101, 102, 103


class ManagedServer:
    """A server subprocess on a fresh list of `list_hashes` (uint8[n, 32]); a context manager.

    `copy_of`, another ManagedServer: start on a copy of its store (same list, same key)
    instead, as servers that share one list would hold it.

    After __enter__: `target` ("127.0.0.1:PORT"), `api_key`, `process` (the Popen), `log_path`.
    """

    def __init__(self, list_hashes: np.ndarray, server_args=(), workdir=None, progress=False,
                 copy_of: "ManagedServer | None" = None):
        self.list_hashes = list_hashes
        self.copy_of = copy_of
        self.progress = progress
        self.server_args = list(server_args)
        self._tmp = tempfile.TemporaryDirectory(prefix="hashmatch-load-", dir=workdir)
        self.dir = Path(self._tmp.name)
        self.db_path = self.dir / "list.db"
        self.log_path = self.dir / "server.log"
        self.process = None
        self.target = None
        self.api_key = None

    def __enter__(self):
        try:
            self._fill_store()
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _fill_store(self):
        if self.copy_of is not None:
            # SQLite's backup API copies a store in use by a running server consistently.
            with sqlite3.connect(self.copy_of.db_path) as source, \
                    sqlite3.connect(self.db_path) as copy:
                source.backup(copy)
            self.api_key = self.copy_of.api_key
            return
        from hashmatch.server.store import Store
        from tqdm import tqdm
        store = Store(str(self.db_path))
        bar = tqdm(total=len(self.list_hashes), unit="hash", unit_scale=True, file=sys.stderr,
                   desc="importing", disable=not self.progress)
        try:
            imported = store.import_pdq_hashes(
                self.list_hashes, progress=lambda done, total: bar.update(done - bar.n))
            if imported != len(self.list_hashes):
                raise RuntimeError(f"store imported {imported} of {len(self.list_hashes)} hashes")
            self.api_key = store.add_platform("load-generator")
        finally:
            bar.close()
            close = getattr(store, "close", None)
            if close:
                close()

    def _start(self):
        port_file = self.dir / "port"
        cmd = [sys.executable, "-m", "hashmatch.server", "--db", str(self.db_path),
               "--listen", "127.0.0.1:0", "--port-file", str(port_file), *self.server_args]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with code {self.process.returncode} before "
                                   f"serving:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not serving after {READY_TIMEOUT_S:.0f} s:\n"
                                   f"{self.log_tail()}")
            time.sleep(0.05)
        self.target = f"127.0.0.1:{int(port_file.read_text().strip())}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def stop(self, timeout: float = 15.0):
        """SIGTERM (graceful shutdown), then SIGKILL if it does not exit within `timeout` s."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __exit__(self, *exc):
        self.stop()
        self._tmp.cleanup()


def random_hashes(n: int, seed: int) -> np.ndarray:
    """n random PDQ hashes uint8[n, 32]; 256 independent fair bits each."""
    return np.random.default_rng([seed, LIST_STREAM]).integers(0, 256, size=(n, 32), dtype=np.uint8)
