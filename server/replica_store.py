"""Replication's part of the store: the list's epoch and retention floor on a primary, and a
mirror's durable copy, on the same tables and transactions as Store (store.py).

A mirror's copy keeps the source's entry ids and repeats its change log, so a server started on
the copy's file serves it like any list. Every change batch, its log rows and the token to
resume after it are written in one transaction. The copy keeps `entry_state` too (the snapshot's
held and disputed entries, then the log's state ops), which a server reads at start-up: without
it a server on the copy would match what the source holds back.
"""
import secrets
import time

import numpy as np

from hashmatch.core.holds import OP_DISPUTE, OP_HOLD, OP_REINSTATE, OP_REMOVE
from hashmatch.server.media import KIND_IMAGE, KIND_VIDEO, PDQ_BYTES, ListRows
from hashmatch.server.store import CASE_ENTRY_FIRST, IMPORT_BLOCK, Store

REPLICA_CASE = "(replica)"    # the case a mirror's entries belong to (their cases are elsewhere)
# entry_state.held of an entry a copy holds because its source does: the log says that it is
# held, not why (outcomes.py: 1-3 are the source's own reasons).
COPIED = 4
COPIED_DETAIL = "held on the server this copy follows (the reason is kept there)"


class ReplicaStore(Store):
    """Replication on top of the Store: the list's epoch and retention floor on a primary, and
    a mirror's durable copy (rows, change log and resume token written in one transaction)."""

    # ------------------------------------------------------------ primary side

    def epoch(self) -> int:
        """The list's epoch: a random id naming its history; `new_epoch()` changes it."""
        with self._db.transaction(write=False) as tx:
            row = tx.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()
        if row:
            return row[0]
        with self._db.transaction(write=True) as tx:
            tx.execute("INSERT INTO meta VALUES ('epoch', ?) ON CONFLICT DO NOTHING",
                       (secrets.randbits(62) + 1,))
            return tx.execute("SELECT value FROM meta WHERE key='epoch'").fetchone()[0]

    def new_epoch(self) -> int:
        """Starts a new history (run after restoring or resetting a list): every resume token
        issued before is refused, and copies take a snapshot again."""
        self.epoch()
        epoch = secrets.randbits(62) + 1
        with self._db.transaction(write=True) as tx:
            tx.execute("UPDATE meta SET value=? WHERE key='epoch'", (epoch,))
        return epoch

    def bounds(self) -> tuple[int, int, int]:
        """(epoch, floor, head): a token at a sequence in floor..head of this epoch can resume.
        One read (a Sync stream asks on every poll); the very first call makes the epoch."""
        with self._db.transaction(write=False) as tx:
            meta = dict(tx.execute("SELECT key, value FROM meta WHERE key IN "
                                   "('epoch', 'floor_seq')").fetchall())
            head = self._head(tx)
        return meta.get("epoch") or self.epoch(), meta["floor_seq"], head

    def prune_changes(self, before_unix: float) -> int:
        """Deletes change-log rows written before `before_unix` (tombstones included); returns
        the new floor: copies at an older sequence must take a snapshot again."""
        with self._db.transaction(write=True) as tx:
            (last,) = tx.execute("SELECT coalesce(max(seq + count - 1), 0) FROM changes "
                                 "WHERE at < ?", (int(before_unix),)).fetchone()
            tx.execute("DELETE FROM changes WHERE seq <= ?", (last,))
            tx.execute("UPDATE meta SET value = ? WHERE key='floor_seq' AND value < ?",
                       (last, last))
            return tx.execute("SELECT value FROM meta WHERE key='floor_seq'").fetchone()[0]

    # ------------------------------------------------------------ mirror side

    def replica_position(self) -> tuple[str, bytes, int] | None:
        """(source, resume token, sequence) of this copy; None before its first snapshot ends."""
        with self._db.transaction(write=False) as tx:
            row = tx.execute("SELECT source, token, sequence FROM replica WHERE name='copy'"
                             ).fetchone()
        return (row[0], bytes(row[1]), row[2]) if row else None

    def replica_begin_snapshot(self) -> None:
        """Empties the list (and forgets the token): a snapshot is about to be copied in."""
        with self._db.transaction(write=True) as tx:
            for table in ("replica", "changes", "hash_blocks", "entries", "entry_state"):
                tx.execute(f"DELETE FROM {table}")
            tx.execute("INSERT INTO cases (id, pin_salt, pin_hash, created) VALUES (?,?,?,?) "
                       "ON CONFLICT DO NOTHING", (REPLICA_CASE, b"", b"", int(time.time())))

    def replica_add_rows(self, rows: ListRows) -> None:
        """Copies one chunk of a snapshot in."""
        with self._db.transaction(write=True) as tx:
            self._insert_rows(tx, rows, rows.sequence)

    def replica_end_snapshot(self, source: str, sequence: int, token: bytes, held=(),
                             disputed=()) -> None:
        """The snapshot is complete at `sequence`, with the entries it holds and disputes:
        the copy resumes from `token`."""
        now = int(time.time())
        log = [(sequence, 1, OP_HOLD, e) for e in np.asarray(held, np.uint64).tolist()]
        log += [(sequence, 1, OP_DISPUTE, e) for e in np.asarray(disputed, np.uint64).tolist()]
        with self._db.transaction(write=True) as tx:
            self._apply_states(tx, log, now)
            self._set_position(tx, source, sequence, token)

    def replica_apply(self, source: str, log: list[tuple[int, int, int, int]], added: ListRows,
                      removed, token: bytes) -> None:
        """Applies one change batch: its log rows, rows added, entries removed and the token
        to resume after it, in one transaction (so a kill -9 loses all of it or none)."""
        now = int(time.time())
        with self._db.transaction(write=True) as tx:
            tx.executemany("INSERT INTO changes VALUES (?,?,?,?,?)",
                           [(*change, now) for change in log])
            self._apply_states(tx, log, now)
            for entry in np.asarray(removed, np.uint64).tolist():
                self._remove_entry(tx, entry)
            self._insert_rows(tx, added, added.sequence)
            self._set_position(tx, source, added.sequence, token)

    @staticmethod
    def _apply_states(tx, log, now: int) -> None:
        """entry_state after the log rows (seq, count, op, first_entry), in order, as
        core.holds.EntryHolds applies them: hold, dispute, and reinstate or remove (clears)."""
        for seq, count, op, first in log:
            if op == OP_HOLD:
                tx.execute("INSERT INTO entry_state VALUES (?,?,0,?,?,?) ON CONFLICT (entry) DO "
                           "UPDATE SET held=excluded.held, seq=excluded.seq, at=excluded.at, "
                           "detail=excluded.detail", (first, COPIED, seq, now, COPIED_DETAIL))
            elif op == OP_DISPUTE:
                tx.execute("INSERT INTO entry_state VALUES (?,0,1,?,?,'') ON CONFLICT (entry) DO "
                           "UPDATE SET disputed=1, seq=excluded.seq, at=excluded.at",
                           (first, seq, now))
            elif op in (OP_REINSTATE, OP_REMOVE):
                tx.execute("UPDATE entry_state SET held=0, disputed=0, seq=?, at=? WHERE entry "
                           "BETWEEN ? AND ? AND (held<>0 OR disputed<>0)",
                           (seq, now, first, first + count - 1))

    def _set_position(self, tx, source: str, sequence: int, token: bytes) -> None:
        tx.execute("UPDATE meta SET value=? WHERE key='next_seq'", (sequence + 1,))
        tx.execute("DELETE FROM replica")
        tx.execute("INSERT INTO replica VALUES ('copy', ?, ?, ?, ?)",
                   (source, token, sequence, int(time.time())))

    def _insert_rows(self, tx, rows: ListRows, sequence: int) -> None:
        """hash_blocks rows for the photos (a row per run of consecutive ids, as an import
        writes them) and videos, entries rows for the md5s; entry ids are the source's."""
        ids = rows.image_ids.astype(np.int64)
        if len(ids):
            order = np.argsort(ids)
            ids, hashes = ids[order], rows.image_hashes[order]
            breaks = np.flatnonzero(np.diff(ids) != 1) + 1
            starts = sorted({*range(0, len(ids), IMPORT_BLOCK), *breaks.tolist()})
            tx.executemany("INSERT INTO hash_blocks VALUES (?,?,0,?,NULL)",
                           [(int(ids[a]), b - a, hashes[a:b].tobytes())
                            for a, b in zip(starts, starts[1:] + [len(ids)])])
        ends = np.cumsum(rows.video_frame_counts)
        tx.executemany("INSERT INTO hash_blocks VALUES (?,1,1,?,NULL)",
                       [(int(e), rows.frame_hashes[end - n:end].tobytes()) for e, n, end
                        in zip(rows.video_entries, rows.video_frame_counts, ends)])
        videos = {int(e): int(n) for e, n in zip(rows.video_entries, rows.video_frame_counts)}
        tx.executemany("INSERT INTO entries (id, case_id, kind, md5, frame_count, added_seq) "
                       "VALUES (?,?,?,?,?,?)",
                       [(int(e), REPLICA_CASE, KIND_VIDEO if int(e) in videos else KIND_IMAGE,
                         md5.tobytes(), videos.get(int(e), 0), sequence)
                        for e, md5 in zip(rows.md5_ids, rows.md5s)])
        # The import counter passes the source's imported ids, not its cases' (drawn above it).
        every = np.concatenate([rows.image_ids, rows.video_entries, rows.md5_ids])
        imported = every[every < CASE_ENTRY_FIRST]
        top = int(imported.max()) if len(imported) else 0
        tx.execute("UPDATE meta SET value=? WHERE key='next_entry' AND value <= ?",
                   (top + 1, top))

    @staticmethod
    def _remove_entry(tx, entry: int, keep_entry_row: bool = False) -> None:
        """Deletes an entry's rows, splitting the run of photos it sits in if need be
        (keep_entry_row: all but its `entries` row, which its case still counts)."""
        if not keep_entry_row:
            tx.execute("DELETE FROM entries WHERE id=?", (entry,))
        row = tx.execute("SELECT first_entry, entry_count, video, hashes FROM hash_blocks "
                         "WHERE first_entry <= ? ORDER BY first_entry DESC LIMIT 1",
                         (entry,)).fetchone()
        if not row or entry >= row[0] + row[1]:
            return
        first, count, video, blob = row
        tx.execute("DELETE FROM hash_blocks WHERE first_entry=?", (first,))
        if video:
            return
        hashes = np.frombuffer(blob, np.uint8).reshape(-1, PDQ_BYTES)
        keep = [(first, hashes[:entry - first]), (entry + 1, hashes[entry - first + 1:])]
        tx.executemany("INSERT INTO hash_blocks VALUES (?,?,0,?,NULL)",
                       [(start, len(part), part.tobytes()) for start, part in keep if len(part)])


def open_replica_store(db: str) -> ReplicaStore:
    """open_store, with the replication methods (epoch, floor, a mirror's copy)."""
    return ReplicaStore(db)

