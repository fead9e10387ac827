"""The audit log: an append-only table of who changed keys and roles, which keys were refused,
and which cases were withdrawn, so an operator can answer "who did what, when" from the store.

Rows are written inside the transaction of the change they record (a key rotated and its row
commit together) and read by `hashmatch audit list` and Admin.ListAudit. Nothing in the server
updates or deletes them (tests/test_keys.py greps the SQL for such a path). No secret ever goes
in: no key, no key digest, no PIN; a withdrawn case is named by `case_ref`, not its id.

Refused keys are aggregated (FailureDigest): at most one row per peer per window and a bounded
number per window in all, so a flood of bad keys cannot grow the database without bound.
"""
import collections
import dataclasses
import hashlib
import logging
import time

log = logging.getLogger("hashmatch.server")
FAILURE_WINDOW_S = 60.0     # one audit row per peer per window for refused keys ...
MAX_FAILURE_ROWS = 100      # ... and at most this many such rows per window, all peers together
MAX_LISTED = 10_000         # rows one read returns at most
CASE_REF_HEX = 12           # hex characters of a case id's SHA-256 kept in `case_ref`


@dataclasses.dataclass(frozen=True)
class AuditRow:
    id: int
    at: int          # unix seconds
    actor: str       # "cli:USER", "admin:PLATFORM", "peer ADDRESS", "case holder"
    action: str      # e.g. platform.rotate, key.refused, case.withdraw
    subject: str     # a platform name, a method, a case_ref
    detail: str


def case_ref(case_id: str) -> str:
    """A withdrawn case's name in the audit log: the first CASE_REF_HEX hex digits of the
    SHA-256 of its id.

    Not the id itself: a case id is half of the person's credential and what the PIN back-off is
    keyed on, so a log that admins read must not be a directory of live case ids. The case id
    has 80 random bits, so the 48-bit reference cannot be turned back into an id, yet someone who
    holds an id (the person, support helping them) can recompute it and find its row.
    """
    return hashlib.sha256(case_id.encode()).hexdigest()[:CASE_REF_HEX]


def write(tx, actor: str, action: str, subject: str, detail: str = "",
          at: int | None = None) -> None:
    """Appends one row inside the caller's transaction."""
    tx.execute("INSERT INTO audit (at, actor, action, subject, detail) VALUES (?,?,?,?,?)",
               (int(time.time()) if at is None else at, actor, action, subject, detail))


class AuditLog:
    """The store's audit methods (a mixin of Store: uses its `_db`)."""

    def record_audit(self, actor: str, action: str, subject: str, detail: str = "") -> None:
        """Appends one row in a transaction of its own (for events with no other write)."""
        with self._db.transaction(write=True) as tx:
            write(tx, actor, action, subject, detail)

    def audit_rows(self, since_unix: int = 0, after_id: int = 0,
                   limit: int = MAX_LISTED) -> list[AuditRow]:
        """Rows at or after `since_unix` with an id above `after_id`, oldest first, at most
        `limit` (and MAX_LISTED): page on with the last id read."""
        limit = min(limit or MAX_LISTED, MAX_LISTED)
        with self._db.transaction(write=False) as tx:
            rows = tx.execute("SELECT id, at, actor, action, subject, detail FROM audit "
                              "WHERE at >= ? AND id > ? ORDER BY id LIMIT ?",
                              (since_unix, after_id, limit)).fetchall()
        return [AuditRow(*row) for row in rows]


class FailureDigest:
    """Counts refused keys per peer and says when one audit row should be written.

    Runs on the event loop (no lock). A peer gets a row on its first refusal in a window; the
    refusals after it are counted into its next row (forgotten when it stays quiet for two
    windows). Once `most` rows were written in a window, further peers are only counted by the
    metrics. Memory stays bounded by the rows of the last three windows.
    """

    def __init__(self, window_s: float = FAILURE_WINDOW_S, most: int = MAX_FAILURE_ROWS):
        self._window, self._most = window_s, most
        self._last: dict[str, float] = {}                       # peer -> its last row
        self._since: dict[str, collections.Counter] = {}        # refusals since that row
        self._started, self._written = -window_s, 0

    def note(self, peer: str, reason: str, now: float) -> str | None:
        """Counts one refusal; returns the detail of the row to write now, or None."""
        if now - self._started >= self._window:
            self._started, self._written = now, 0
            self._last = {p: t for p, t in self._last.items() if now - t < 2 * self._window}
            self._since = {p: c for p, c in self._since.items() if p in self._last}
        last = self._last.get(peer)
        if last is not None and now - last < self._window:
            self._since[peer][reason] += 1
            return None
        if self._written >= self._most:
            return None
        self._written += 1
        counts = self._since.pop(peer, collections.Counter())
        counts[reason] += 1
        self._last[peer], self._since[peer] = now, collections.Counter()
        return "; ".join(f"{n} x {r}" for r, n in sorted(counts.items())) + (
            f" (at most one row per peer per {self._window:g} s)")
