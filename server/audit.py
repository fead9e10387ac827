"""The audit log: an append-only table of who changed keys and roles, which keys were refused,
and which cases were withdrawn, so an operator can answer "who did what, when" from the store.

Rows are written inside the transaction of the change they record (a key rotated and its row
commit together) and read by `hashmatch audit list` and Admin.ListAudit. Nothing in the server
updates or deletes them (tests/test_keys.py greps the SQL for such a path). No secret ever goes
in: no key, no key digest, no PIN; a withdrawn case is named by `case_ref`, not its id.

Refused keys (and calls the per-address slow-down refused without looking at a key) are
aggregated (FailureDigest): at most one row per address per window and a bounded number per window
in all, so a flood of bad keys cannot grow the database without bound, yet every refusal is
counted in some row.
"""
import collections
import dataclasses
import hashlib
import logging
import time

log = logging.getLogger("hashmatch.server")
FAILURE_WINDOW_S = 60.0     # one audit row per peer per window for refused keys ...
MAX_FAILURE_ROWS = 100      # ... and at most this many such rows per window, all peers together
MAX_FAILING_PEERS = 1_000   # addresses counted one by one; refusals from more are summed as ...
OTHER_PEERS = "other peers"  # ... the actor of the row for addresses without a row of their own
SLOWED = "slowed, key not checked"   # reason of a refusal by the per-address slow-down
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

    def record_audits(self, rows) -> None:
        """Appends (actor, action, subject, detail) rows in one transaction of their own (for
        events with no other write)."""
        with self._db.transaction(write=True) as tx:
            for row in rows:
                write(tx, *row)

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
    """Counts refused keys per address and hands out the audit rows that report them.

    Runs on the event loop (no lock). An address's first refusal is written at once (`note`
    returns its row); what it is refused after that is counted and goes into its next row, which
    `flush` hands out once the address has had no row for a window: at most one row per address
    per window. The caller flushes every `window_s / 12` while anything is counted and once at
    shutdown (`final`), so a counted refusal reaches the table within two windows and two
    flushes even if its address never calls again. At most `most` rows a window in all:
    addresses left over once `most - 1` were written are summed into one row for OTHER_PEERS
    (plus one more of those at shutdown). Memory: the counts of at most `max_peers` addresses
    (further ones are summed as others at once) and the last row's time of the addresses written
    in the last window.
    """

    def __init__(self, window_s: float | None = None, most: int = MAX_FAILURE_ROWS,
                 max_peers: int = MAX_FAILING_PEERS):
        self.window_s = FAILURE_WINDOW_S if window_s is None else window_s
        self._most, self._max_peers = most, max_peers
        self._counts: dict[str, collections.Counter] = {}   # refusals not yet in a row
        self._last: dict[str, float] = {}                    # peer -> its last row
        self._started, self._written = -self.window_s, 0

    @property
    def pending(self) -> bool:
        """Whether refusals are counted that no row handed out yet reports."""
        return bool(self._counts)

    def note(self, peer: str, method: str, reason: str, now: float) -> tuple | None:
        """Counts one refusal of a call to `method`; returns the row to write now (as `flush`
        gives them), or None."""
        self._roll(now)
        counts = self._counts.get(peer)
        if counts is None:
            if len(self._counts) >= self._max_peers:
                peer = OTHER_PEERS
            counts = self._counts.setdefault(peer, collections.Counter())
        counts[method, reason] += 1
        if peer != OTHER_PEERS and self._due(peer, now) and self._written < self._most - 1:
            return self._row(peer, now)
        return None

    def flush(self, now: float, final: bool = False) -> list[tuple]:
        """The rows due now, (actor, action, subject, detail) each: every address with refusals
        counted and no row in the last window (`final`: every address, at shutdown)."""
        self._roll(now)
        rows = []
        for peer in [p for p in self._counts if p != OTHER_PEERS and (final or self._due(p, now))]:
            if self._written < self._most - 1:
                rows.append(self._row(peer, now))
            else:
                self._counts.setdefault(OTHER_PEERS, collections.Counter()).update(
                    self._counts.pop(peer))
        if OTHER_PEERS in self._counts and (final or self._due(OTHER_PEERS, now)):
            rows.append(self._row(OTHER_PEERS, now))
        return rows

    def _due(self, peer: str, now: float) -> bool:
        last = self._last.get(peer)
        return last is None or now - last >= self.window_s

    def _roll(self, now: float) -> None:
        if now - self._started >= self.window_s:
            self._started, self._written = now, 0
            self._last = {p: t for p, t in self._last.items() if now - t < self.window_s}

    def _row(self, peer: str, now: float) -> tuple:
        self._written += 1
        self._last[peer] = now
        counts = self._counts.pop(peer)
        by_reason = collections.Counter()
        for (_, reason), n in counts.items():
            by_reason[reason] += n
        methods = ",".join(sorted({method for method, _ in counts}))
        detail = "; ".join(f"{n} x {r}" for r, n in sorted(by_reason.items()))
        return (OTHER_PEERS if peer == OTHER_PEERS else f"peer {peer}", "key.refused", methods,
                f"{detail} (at most one row per address per {self.window_s:g} s)")
