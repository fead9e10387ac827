"""The follower of a `serve --follow HOST:PORT` server: its in-memory list copies another
server's through Sync instead of reading a change log of its own.

It is a Follower (load, start, stop, head, lag_s, digest, lock) that reads no store, so the
app, metrics and ListInfo use it unchanged, and it feeds the list through the same
ListState.load/apply. The copy lives in memory: a restart takes a snapshot again. It reads
over TLS (mTLS with a client certificate) when the follow_ca/follow_cert settings ask.
"""
import logging
import threading

from hashmatch.clients.client import TlsFiles
from hashmatch.clients.sync_client import SyncClient, entries_of, log_of
from hashmatch.server.follower import Follower
from hashmatch.server.listing import ListState
from hashmatch.server.media import ListRows

log = logging.getLogger("hashmatch.server")


class SyncFollower(Follower):
    """Inherits digest(), lag_s() and the lag bookkeeping; reads no store."""

    def __init__(self, target: str, api_key: str | None, state: ListState,
                 tls: TlsFiles | None = None):
        super().__init__(None, state)   # no store: every method that reads one is replaced
        self.target = target
        self.token: bytes | None = None
        self._client = SyncClient(target, api_key, self, tls)
        self._failed: BaseException | None = None

    # ------------------------------------------------------------ SyncClient's copy

    @property
    def sequence(self) -> int:
        return self.state.sequence

    def snapshot(self, rows: dict, end) -> None:
        with self.lock:
            self.state.load(ListRows(**rows, sequence=end.sequence))
            self.token, self.head = end.resume_token, max(self.head, end.sequence)
            self._note_lag()
        log.info("snapshot applied", extra={"fields": {"source": self.target,
                                                       "sequence": end.sequence,
                                                       "rows": end.digest_rows}})

    def apply(self, batch, added: dict) -> None:
        with self.lock:
            self.state.apply(ListRows(**added, sequence=batch.last_sequence),
                             entries_of(batch.removed_entries))
            self.state.holds.apply(log_of(batch))
            self.token, self.head = batch.resume_token, max(self.head, batch.last_sequence)
            self._note_lag()

    def heartbeat(self, message) -> None:
        self.token, self.head = message.resume_token, max(self.head, message.head_sequence)
        self._note_lag()

    # ------------------------------------------------------------ the Follower's face

    def load(self, timeout_s: float | None = None) -> int:
        """Starts copying and waits for the first snapshot; returns the PDQ hashes loaded."""
        self.start()
        while not self._client.snapshotted.wait(0.1):
            if self._failed is not None:
                raise self._failed
        counts = self.state.counts()
        return counts["pdq"] + counts["video_frames"]

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="hashmatch-sync-follower")
            self._thread.start()

    def _run(self) -> None:
        try:
            self._client.run()
        except BaseException as exc:  # noqa: BLE001 - a refused key: load() reports it
            log.error("cannot follow the primary", extra={"fields": {
                "source": self.target, "error": str(exc)}})
            self._failed = exc

    def stop(self) -> None:
        self._client.stop()
        if self._thread is not None:
            self._thread.join(10)

    def catch_up(self, at_least: int = 0) -> int:
        return self.state.sequence
