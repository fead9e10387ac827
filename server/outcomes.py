"""Feedback, case outcomes and false-positive protection, on top of the store.

Platforms report what they did about a match (one row per platform and report id, so a report
sent again is counted once). Every change of an entry's matching state is a change-log row
written in the same transaction as its cause, so the follower of every server, and Sync to every
copy, applies it like any other change (core/holds.py): K platforms reporting NOT_VIOLATING
dispute an entry (OP_DISPUTE); a flood or a suppression-list hit holds it back (OP_HOLD); a
reviewer reinstates it (OP_REINSTATE) or removes it (OP_REMOVE). `entry_state` keeps the result
for snapshots and the review list; `decisions` keeps who decided what, and when.
"""
import dataclasses
import time

import numpy as np

from hashmatch.core.holds import OP_DISPUTE, OP_HOLD, OP_REINSTATE
from hashmatch.server import audit
from hashmatch.server.errors import InvalidRequest, NotFound
from hashmatch.server.replica_store import ReplicaStore
from hashmatch.server.store import OP_REMOVE

REMOVED, NOT_VIOLATING, NEEDS_REVIEW, QUALITY_UNKNOWN = 1, 2, 3, 4
ACTIONS = (REMOVED, NOT_VIOLATING, NEEDS_REVIEW, QUALITY_UNKNOWN)
# Why an entry is held back (entry_state.held); wire values of HeldReason (a copy of another
# server holds entries as replica_store.COPIED).
DISPUTED, FLOOD, SUPPRESSED = 1, 2, 3
REINSTATE, REMOVE = "reinstate", "remove"
MAX_HELD_LISTED = 10_000     # entries one ListHeld answer lists (decide on them, then ask again)


@dataclasses.dataclass(frozen=True)
class Report:
    """One validated ActionReport."""
    report_id: str
    entry: int
    signal: int
    hash: bytes
    action: int
    reason: str = ""
    tags: tuple[str, ...] = ()
    occurred: int = 0


@dataclasses.dataclass(frozen=True)
class Ack:
    report_id: str
    duplicate: bool
    disputed: bool
    sequence: int        # of the dispute this report caused, or 0


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What platforms reported about one entry: counts and times only."""
    entry: int
    found: int = 0
    removed: int = 0
    last_found: int = 0
    last_removed: int = 0
    under_review: bool = False


@dataclasses.dataclass(frozen=True)
class Held:
    entry: int
    reason: int          # DISPUTED, FLOOD or SUPPRESSED
    held: bool           # held back from matching (a disputed entry may still match)
    sequence: int
    at: int
    not_violating: int   # distinct platforms that reported NOT_VIOLATING
    detail: str


class OutcomeStore(ReplicaStore):
    """The store with feedback, entry states, review decisions and the suppression list."""

    # ------------------------------------------------------------ feedback

    def report_action(self, platform: str, report: Report, dispute_platforms: int) -> Ack:
        """Stores a report once per (platform, report id); a NOT_VIOLATING report that brings
        the entry to `dispute_platforms` distinct platforms disputes it in the same
        transaction."""
        now = int(time.time())
        with self._db.transaction(write=True) as tx:
            self._require_entry(tx, report.entry)
            stored = tx.execute(
                "INSERT INTO reports VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING "
                "RETURNING 1", (platform, report.report_id, report.entry, report.signal,
                                report.hash, report.action, report.reason,
                                ",".join(report.tags), report.occurred or now, now)).fetchone()
            state = tx.execute("SELECT held, disputed FROM entry_state WHERE entry=?",
                               (report.entry,)).fetchone()
            disputed = bool(state and state[1])
            if not stored or report.action != NOT_VIOLATING or disputed:
                return Ack(report.report_id, not stored, disputed, 0)
            platforms = self._not_violating(tx, report.entry)
            if platforms < dispute_platforms:
                return Ack(report.report_id, False, False, 0)
            seq = self._log_state(tx, report.entry, OP_DISPUTE, now)
            tx.execute("INSERT INTO entry_state VALUES (?,0,1,?,?,?) ON CONFLICT (entry) DO "
                       "UPDATE SET disputed=1, seq=excluded.seq, at=excluded.at",
                       (report.entry, seq, now, f"{platforms} platforms reported not violating"))
        return Ack(report.report_id, False, True, seq)

    @staticmethod
    def _not_violating(tx, entry: int) -> int:
        """Distinct platforms reporting NOT_VIOLATING since the entry's last review decision."""
        return tx.execute(
            "SELECT count(DISTINCT platform) FROM reports WHERE entry=? AND action=? AND "
            "received >= (SELECT coalesce(max(at), 0) FROM decisions WHERE entry=?)",
            (entry, NOT_VIOLATING, entry)).fetchone()[0]

    def _require_entry(self, tx, entry: int) -> None:
        """NotFound unless `entry` is a submitted entry or an id an import has taken."""
        (next_entry,) = tx.execute("SELECT value FROM meta WHERE key='next_entry'").fetchone()
        if not (0 < entry < next_entry
                or tx.execute("SELECT 1 FROM entries WHERE id=?", (entry,)).fetchone()):
            imported = f"1..{next_entry - 1}" if next_entry > 1 else "none"
            raise NotFound(f"entry_id {entry} is not on the list: no case submitted it and it "
                           f"is not an imported id (imported: {imported})")

    def _log_state(self, tx, entry: int, op: int, now: int) -> int:
        seq = self._take(tx, "next_seq", 1)
        tx.execute("INSERT INTO changes VALUES (?,1,?,?,?)", (seq, op, entry, now))
        return seq

    # ------------------------------------------------------------ what the person sees

    def case_outcomes(self, case_id: str) -> list[Outcome]:
        """One Outcome per entry of the case, in the order it was submitted (call after
        check_pin)."""
        with self._db.transaction(write=False) as tx:
            entries = [e for (e,) in tx.execute(
                "SELECT id FROM entries WHERE case_id=? ORDER BY added_seq",
                (case_id,)).fetchall()]
            if not entries:
                return []
            # The case's ids are scattered (drawn at random): join on its entries, not a range.
            counts = {row[0]: row[1:] for row in tx.execute(
                "SELECT entry, sum(CASE WHEN action<>? THEN 1 ELSE 0 END), "
                "sum(CASE WHEN action=? THEN 1 ELSE 0 END), "
                "max(CASE WHEN action<>? THEN occurred ELSE 0 END), "
                "max(CASE WHEN action=? THEN occurred ELSE 0 END) "
                "FROM reports WHERE entry IN (SELECT id FROM entries WHERE case_id=?) "
                "GROUP BY entry",
                (NOT_VIOLATING, REMOVED, NOT_VIOLATING, REMOVED, case_id)).fetchall()}
            review = {e for (e,) in tx.execute(
                "SELECT entry FROM entry_state WHERE entry IN (SELECT id FROM entries WHERE "
                "case_id=?) AND (held<>0 OR disputed<>0)", (case_id,)).fetchall()}
        return [Outcome(e, *(int(v or 0) for v in counts.get(e, (0, 0, 0, 0))),
                        under_review=e in review) for e in entries]

    # ------------------------------------------------------------ holds and review

    def hold(self, entries, reason: int, detail: str) -> int:
        """Holds entries back from matching (OP_HOLD each); entries already held are left as
        they are. Returns the last sequence written (0: nothing to do)."""
        with self._db.transaction(write=True) as tx:
            return self._hold(tx, entries, reason, detail)

    def _hold(self, tx, entries, reason: int, detail: str) -> int:
        now, seq = int(time.time()), 0
        for entry in sorted({int(e) for e in entries}):
            state = tx.execute("SELECT held FROM entry_state WHERE entry=?", (entry,)).fetchone()
            if state and state[0]:
                continue
            seq = self._log_state(tx, entry, OP_HOLD, now)
            tx.execute("INSERT INTO entry_state VALUES (?,?,0,?,?,?) ON CONFLICT (entry) DO "
                       "UPDATE SET held=excluded.held, seq=excluded.seq, at=excluded.at, "
                       "detail=excluded.detail", (entry, reason, seq, now, detail))
        return seq

    def held_entries(self, limit: int = MAX_HELD_LISTED) -> list[Held]:
        """Held and disputed entries, the longest waiting first (by the sequence that held or
        disputed them; entry ids are random, so their order says nothing), at most `limit`."""
        with self._db.transaction(write=False) as tx:
            rows = tx.execute("SELECT entry, held, disputed, seq, at, detail FROM entry_state "
                              "WHERE held<>0 OR disputed<>0 ORDER BY seq LIMIT ?",
                              (limit,)).fetchall()
            return [Held(e, held or DISPUTED, bool(held), seq, at,
                         self._not_violating(tx, e), detail)
                    for e, held, disputed, seq, at, detail in rows]

    def decide(self, entry: int, decision: str, by: str, note: str = "") -> int:
        """A reviewer's decision on a held or disputed entry, logged with who and when:
        REINSTATE (matches again, no longer disputed) or REMOVE (its hashes are deleted).
        Returns the decision's sequence."""
        if decision not in (REINSTATE, REMOVE):
            raise InvalidRequest(f"decision must be {REINSTATE} or {REMOVE}, got {decision!r}")
        if len(note) > 500:
            raise InvalidRequest(f"note has {len(note)} characters; at most 500")
        now = int(time.time())
        with self._db.transaction(write=True) as tx:
            state = tx.execute("SELECT held, disputed FROM entry_state WHERE entry=?",
                               (entry,)).fetchone()
            if not state or not (state[0] or state[1]):
                raise NotFound(f"entry {entry} is neither held nor disputed: nothing to review")
            seq = self._log_state(tx, entry, OP_REINSTATE if decision == REINSTATE
                                  else OP_REMOVE, now)
            if decision == REMOVE:
                tx.execute("UPDATE entries SET removed_seq=?, md5=NULL WHERE id=?", (seq, entry))
                self._remove_entry(tx, entry, keep_entry_row=True)
            tx.execute("UPDATE entry_state SET held=0, disputed=0, seq=?, at=? WHERE entry=?",
                       (seq, now, entry))
            tx.execute("INSERT INTO decisions VALUES (?,?,?,?,?,?)",
                       (seq, entry, decision, by, now, note))
            audit.write(tx, f"admin:{by}", f"review.{decision}", f"entry {entry}",
                        f"sequence {seq}", now)
        return seq

    def decisions(self, entry: int) -> list[tuple[int, str, str, int, str]]:
        """(sequence, decision, by, at, note) of an entry's review decisions, oldest first."""
        with self._db.transaction(write=False) as tx:
            return [tuple(r) for r in tx.execute(
                "SELECT seq, decision, decided_by, at, note FROM decisions WHERE entry=? ORDER BY seq",
                (entry,)).fetchall()]

    # ------------------------------------------------------------ suppression list

    def suppress(self, hashes: np.ndarray, by: str, note: str, entries) -> tuple[int, int]:
        """Adds PDQ hashes (uint8[n, 32]) to the suppression list and holds `entries` (the
        listed ones within the threshold of any of them) in the same transaction.
        Returns (hashes added, last sequence or 0)."""
        now = int(time.time())
        hashes = np.ascontiguousarray(hashes, np.uint8).reshape(-1, 32)
        with self._db.transaction(write=True) as tx:
            tx.executemany("INSERT INTO suppressed (hash, added_by, at, note) VALUES (?,?,?,?)",
                           [(h.tobytes(), by, now, note) for h in hashes])
            seq = self._hold(tx, entries, SUPPRESSED, "within the threshold of a "
                             f"suppression-list hash added by {by}")
            audit.write(tx, f"admin:{by}", "review.suppress", f"{len(hashes)} hash(es)",
                        f"{len(set(entries))} listed entries held", now)
        return len(hashes), seq

    def suppressed_hashes(self) -> np.ndarray:
        with self._db.transaction(write=False) as tx:
            rows = tx.execute("SELECT hash FROM suppressed ORDER BY id").fetchall()
        return np.frombuffer(b"".join(bytes(r[0]) for r in rows), np.uint8).reshape(-1, 32)


def refuse_suppressed(store: OutcomeStore, media, threshold: int) -> None:
    """InvalidRequest when a submitted photo's PDQ is within `threshold` of a suppression-list
    hash (a known benign image: it would block innocent uploads everywhere)."""
    photos = [(i, item.pdq) for i, item in enumerate(media) if getattr(item, "pdq", None)]
    if not photos:
        return
    listed = store.suppressed_hashes()
    if not len(listed):
        return
    for i, pdq in photos:
        distances = np.unpackbits(np.frombuffer(pdq, np.uint8) ^ listed, axis=1).sum(axis=1)
        if distances.min() <= threshold:
            bits = int(distances.min())
            raise InvalidRequest(
                f"media {i}: this photo's PDQ hash is {bits} bit{'s' * (bits != 1)} from a hash "
                f"of a known harmless image (suppression list, threshold {threshold}); it would "
                "match innocent pictures, so it cannot be listed")


def case_total(outcomes: list[Outcome]) -> Outcome:
    """The sums and latest times over a case's items (entry 0)."""
    return Outcome(0, sum(o.found for o in outcomes), sum(o.removed for o in outcomes),
                   max((o.last_found for o in outcomes), default=0),
                   max((o.last_removed for o in outcomes), default=0),
                   any(o.under_review for o in outcomes))


def summary(outcomes: list[Outcome]) -> str:
    """A few calm sentences for the person: counts and dates, never who or what."""
    total = case_total(outcomes)
    if not total.found:
        text = ("No copies of your photos or videos have been reported by the platforms that "
                "check this list so far. Your hashes stay on the list and keep being checked.")
    else:
        text = (f"Platforms have found copies of your photos or videos {_times(total.found)}, "
                f"most recently on {_day(total.last_found)}. ")
        text += (f"They removed copies {_times(total.removed)}, most recently on "
                 f"{_day(total.last_removed)}. " if total.removed
                 else "No removal has been reported yet. ")
        text += "Your hashes stay on the list and keep being checked."
    text += (" Only platforms that take part in this list check for copies; other sites are "
             "not covered.")
    if total.under_review:
        text += (" Some of your items are under review by the people who run this list; they "
                 "stay yours, and this page will show when the review is done.")
    return text


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _day(unix: int) -> str:
    return time.strftime("%d %B %Y", time.gmtime(unix))


def open_outcome_store(db: str) -> OutcomeStore:
    """open_replica_store, with feedback, review and the suppression list."""
    return OutcomeStore(db)
