"""Feeds the in-memory list from the change log: the only way anything reaches the index.

`load()` reads a snapshot of the list and the sequence it reflects (one transaction); after it,
`catch_up()` reads the changes with a higher sequence, in order, and applies them. It runs after
this server's own commits (so a withdrawal stops matching before WithdrawCase answers), when a
writer's NOTIFY wakes it (PostgreSQL), and on a short timer as the fallback, so writes from other
servers and from `hashmatch list import` arrive within a second. A gap in the sequence is never
skipped: the follower waits for it, then reloads the snapshot. Its lock is the one lock writers
of the in-memory list take. Key and role changes (platforms.OP_KEYS) travel the same log: on
applying one, or on reloading, the follower calls `on_keys` (the Authenticator's `forget`).
"""
import logging
import threading
import time

from hashmatch.server.errors import StoreUnavailable
from hashmatch.server.listing import ListState
from hashmatch.server.platforms import OP_KEYS
from hashmatch.server.store import Store, follows

log = logging.getLogger("hashmatch.server")
POLL_S = 0.25       # the fallback timer
GAP_WAIT_S = 2.0    # how long a gap may stay open before the snapshot is read again


class Follower:
    on_keys = None      # called (no arguments) after a key change is applied; set by the app

    def __init__(self, store: Store | None, state: ListState, poll_s: float = POLL_S):
        self.store, self.state, self.poll_s = store, state, poll_s
        self.lock = threading.Lock()
        self.head = 0                   # the log's last sequence, as last read
        self.behind_since: float | None = None   # monotonic time applied was first seen < head
        self._gap_since: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unreachable = False

    def load(self) -> int:
        """Loads the whole list (snapshot and its sequence); returns the PDQ hashes loaded."""
        with self.lock:
            rows = self.store.load_all()
            self.state.load(rows)
            self.head = max(self.head, rows.sequence)
        return len(rows.image_ids) + len(rows.frame_ids)

    def catch_up(self, at_least: int = 0) -> int:
        """Applies the log up to its head (and at least up to `at_least`); returns the applied
        sequence. Raises StoreUnavailable when the database cannot be read."""
        with self.lock:
            while True:
                batch = self.store.changes_after(self.state.sequence)
                self.head = max(self.head, batch.head)
                self._note_lag()
                if not self._in_order(batch):
                    if self._gap_since is None:
                        self._gap_since = time.monotonic()
                    elif time.monotonic() - self._gap_since > GAP_WAIT_S:
                        log.warning("gap in the change log; reloading the list",
                                    extra={"fields": {"applied": self.state.sequence,
                                                      "head": batch.head}})
                        self._gap_since = None
                        rows = self.store.load_all()
                        self.state.load(rows)
                        self._keys_changed()
                        continue
                    time.sleep(self.poll_s / 5)
                    continue
                self._gap_since = None
                if batch.changes:
                    self.state.apply(batch.added, batch.removed)
                    self.state.holds.apply(batch.changes)
                    if any(op == OP_KEYS for _, _, op, _ in batch.changes):
                        self._keys_changed()
                self._note_lag()
                if self.state.sequence >= max(batch.head, at_least):
                    return self.state.sequence
                if not batch.changes:   # at_least is not committed yet: a caller's mistake
                    raise ValueError(f"sequence {at_least} is past the log's head {batch.head}")

    def _keys_changed(self) -> None:
        if self.on_keys is not None:
            self.on_keys()

    def _in_order(self, batch) -> bool:
        """Whether the batch continues the applied sequence without a hole (a head past the
        last change read is a hole too)."""
        if not batch.changes:
            return self.state.sequence >= batch.head
        return follows(batch.changes, self.state.sequence)

    def _note_lag(self) -> None:
        if self.state.sequence >= self.head:
            self.behind_since = None
        elif self.behind_since is None:
            self.behind_since = time.monotonic()

    def digest(self) -> tuple[int, int, str]:
        """(applied sequence, rows, SHA-256 hex) of the in-memory list, read between applies."""
        with self.lock:
            return (self.state.sequence, *self.state.digest())

    def lag_s(self) -> float:
        """Seconds the applied sequence has trailed the head (0 when caught up)."""
        since = self.behind_since
        return 0.0 if since is None else time.monotonic() - since

    # ------------------------------------------------------------ background

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="hashmatch-follower")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.store.wait_for_change(self.poll_s, self._stop)
            if self._stop.is_set():
                return
            try:
                self.catch_up()
                if self._unreachable:
                    log.info("list database reachable again", extra={"fields": {
                        "sequence": self.state.sequence}})
                self._unreachable = False
            except StoreUnavailable as exc:
                if not self._unreachable:
                    log.warning("cannot read the change log; matching goes on from memory",
                                extra={"fields": {"error": str(exc)}})
                self._unreachable = True
                self._stop.wait(self.poll_s)
            except Exception:  # noqa: BLE001 - the follower must outlive one bad read
                log.exception("applying the change log failed; retrying")
                self._stop.wait(self.poll_s)
