"""`hashmatch mirror`: a durable local copy of another server's list, in a store of its own.

Each change batch, its log rows and the token to resume after it go into the copy in one
transaction, so after a kill -9 the copy resumes from exactly where its last commit left it.
A snapshot (digest checked as received, and again as read back from the copy) empties the copy,
writes its rows, and stores its token last: a copy killed mid-snapshot has no token and takes
the snapshot again. Entry ids are the source's, and the copy's change log repeats the source's,
so `hashmatch serve --db COPY` serves it.
"""
import dataclasses
import threading
import time

from hashmatch.clients.client import TlsFiles
from hashmatch.clients.sync_client import CopyBroken, SyncClient, entries_of, log_of
from hashmatch.core.replica import rows_digest
from hashmatch.server.media import ListRows
from hashmatch.server.replica_store import ReplicaStore
from hashmatch.server.store import IMPORT_BLOCK

SNAPSHOT_TRANSACTION = 4 * IMPORT_BLOCK    # photos per transaction while a snapshot is written


@dataclasses.dataclass
class Progress:
    """What the mirror reports: where the copy is, how far behind, how fast it copies."""
    sequence: int = 0
    head: int = 0
    rows: int = 0               # rows copied since the mirror started
    started: float = dataclasses.field(default_factory=time.monotonic)
    event: str = "starting"

    @property
    def rows_per_s(self) -> float:
        return self.rows / max(1e-9, time.monotonic() - self.started)

    @property
    def lag(self) -> int:
        return max(0, self.head - self.sequence)


class Mirror:
    """SyncClient's copy over a ReplicaStore; `on_progress(Progress)` after every step; `tls`
    reads the source over TLS (mTLS with a client certificate)."""

    def __init__(self, store: ReplicaStore, source: str, api_key: str | None,
                 on_progress=None, tls: TlsFiles | None = None):
        self.store, self.source = store, source
        self.progress = Progress()
        self._on_progress = on_progress or (lambda p: None)
        position = store.replica_position()
        if position and position[0] != source:
            raise ValueError(f"{store.where} copies {position[0]}, not {source}; use another "
                             "--db")
        self.token = position[1] if position else None
        self.progress.sequence = self.progress.head = position[2] if position else 0
        self.client = SyncClient(source, api_key, self, tls)

    @property
    def sequence(self) -> int:
        return self.progress.sequence

    def snapshot(self, rows: dict, end) -> None:
        rows = ListRows(**rows, sequence=end.sequence)
        self.store.replica_begin_snapshot()
        count = len(rows.image_ids)
        for a in range(0, count, SNAPSHOT_TRANSACTION):
            self.store.replica_add_rows(_photos(rows, a, a + SNAPSHOT_TRANSACTION))
        self.store.replica_add_rows(dataclasses.replace(
            rows, image_ids=ListRows().image_ids, image_hashes=ListRows().image_hashes))
        if self.digest() != (end.digest_rows, end.list_digest):     # what was written, read back
            raise CopyBroken(f"the copy written at {end.sequence} does not match the snapshot's "
                             "digest")
        self.store.replica_end_snapshot(self.source, end.sequence, end.resume_token,
                                        rows.held_entries, rows.disputed_entries)
        self.token = end.resume_token
        self._step("snapshot", end.sequence, end.sequence, end.digest_rows)

    def apply(self, batch, added: dict) -> None:
        added = ListRows(**added, sequence=batch.last_sequence)
        self.store.replica_apply(self.source, log_of(batch), added,
                                 entries_of(batch.removed_entries), batch.resume_token)
        self.token = batch.resume_token
        rows = len(added.image_ids) + len(added.frame_ids) + len(added.md5_ids)
        self._step("changes", batch.last_sequence, max(self.progress.head, batch.last_sequence),
                   rows + len(batch.removed_entries) // 8)

    def heartbeat(self, message) -> None:
        self.token = message.resume_token
        self._step("heartbeat", message.sequence, message.head_sequence, 0)

    def _step(self, event: str, sequence: int, head: int, rows: int) -> None:
        p = self.progress
        p.event, p.sequence, p.head, p.rows = event, sequence, head, p.rows + rows
        self._on_progress(p)

    def digest(self) -> tuple[int, str]:
        """(rows, digest) of the copy as stored, in the canonical form."""
        return rows_digest(self.store.load_all())

    def run(self) -> None:
        self.client.run()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, daemon=True, name="hashmatch-mirror")
        thread.start()
        return thread

    def stop(self) -> None:
        self.client.stop()


def _photos(rows: ListRows, a: int, b: int) -> ListRows:
    return ListRows(image_ids=rows.image_ids[a:b], image_hashes=rows.image_hashes[a:b],
                    sequence=rows.sequence)
