"""The durable list: one SQLite file (WAL, synchronous=FULL) holding cases, entries, hashes,
platforms and the one ordered change log.

Every write is one transaction, and a caller hears back only after COMMIT, so an acknowledged
case survives a crash. The in-memory index (listing.py) is rebuilt from `load_all()` at start-up
and then follows the `ListRows` each write returns.

Layout, chosen so that 10M hashes import and load in seconds:
- `hash_blocks` holds packed hashes: one row per submitted photo (1 hash) or video (its frames),
  and one row per block of up to 65,536 imported photos. Loading reads a few large BLOBs.
- `entries` has a row per submitted photo/video (kind, md5, case). Imported photos are entries
  without a case and without an `entries` row: their ids are the range a block covers.
- `changes` is the change log. A row covers `count` consecutive sequence numbers applied to as
  many consecutive entry ids (count is 1 for case media, the block size for imports), so every
  add and remove of an entry has its own sequence number.
- Withdrawal deletes the case's hashes and md5s (the person asked for them to go), keeps the
  entry rows with `removed_seq`, and logs one removal per entry.
"""
import contextlib
import dataclasses
import sqlite3
import threading
import time

import numpy as np

from hashmatch.server import credentials
from hashmatch.server.errors import InvalidRequest, NotFound, PermissionDenied
from hashmatch.server.media import (KIND_IMAGE, KIND_VIDEO, MD5_BYTES, PDQ_BYTES, Image,
                                    ListRows, Video, frame_ids)

IMPORT_BLOCK = 65536          # hashes per hash_blocks row for imports (2 MiB BLOB)
IMPORT_TRANSACTION = 1 << 20  # hashes per transaction for imports
MAX_PIN_FAILURES = 10
OP_ADD, OP_REMOVE = 1, 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('schema', 1), ('next_entry', 1), ('next_seq', 1);
CREATE TABLE IF NOT EXISTS cases (
    id TEXT PRIMARY KEY, pin_salt BLOB NOT NULL, pin_hash BLOB NOT NULL,
    failed_pins INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL, withdrawn INTEGER);
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY, case_id TEXT NOT NULL REFERENCES cases(id), kind INTEGER NOT NULL,
    md5 BLOB, frame_count INTEGER NOT NULL, added_seq INTEGER NOT NULL, removed_seq INTEGER);
CREATE INDEX IF NOT EXISTS entries_by_case ON entries(case_id);
CREATE TABLE IF NOT EXISTS hash_blocks (
    first_entry INTEGER PRIMARY KEY, entry_count INTEGER NOT NULL, video INTEGER NOT NULL,
    hashes BLOB NOT NULL, qualities BLOB);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY, count INTEGER NOT NULL, op INTEGER NOT NULL,
    first_entry INTEGER NOT NULL, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS platforms (
    id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, key_sha256 BLOB NOT NULL UNIQUE,
    created INTEGER NOT NULL);
"""


@dataclasses.dataclass(frozen=True)
class SubmittedCase:
    case_id: str
    pin: str
    entry_ids: list[int]
    sequence: int
    added: ListRows


@dataclasses.dataclass(frozen=True)
class CaseStatus:
    case_id: str
    withdrawn: bool
    image_count: int
    video_count: int
    created_unix: int
    withdrawn_unix: int


class Store:
    """Thread-safe: one connection, used under one lock; slow hashing happens outside it."""

    def __init__(self, path: str):
        self.path = str(path)
        self._lock = threading.Lock()
        self._con = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._con.execute("PRAGMA journal_mode=WAL")
        self._con.execute("PRAGMA synchronous=FULL")
        self._con.execute("PRAGMA foreign_keys=ON")
        with self._lock:
            self._con.executescript(f"BEGIN IMMEDIATE; {SCHEMA} COMMIT;")

    def close(self):
        with self._lock:
            self._con.close()

    @contextlib.contextmanager
    def _write(self):
        with self._lock:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                yield self._con
            except BaseException:
                self._con.execute("ROLLBACK")
                raise
            self._con.execute("COMMIT")

    def _take(self, key: str, n: int) -> int:
        """Reserves n consecutive values of a counter (inside a write); returns the first."""
        first = self._next(key)
        self._con.execute("UPDATE meta SET value=? WHERE key=?", (first + n, key))
        return first

    def _next(self, key: str) -> int:
        return self._con.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()[0]

    def last_sequence(self) -> int:
        with self._lock:
            return self._next("next_seq") - 1

    # ------------------------------------------------------------ platforms

    def add_platform(self, name: str) -> str:
        """Registers a platform; returns its API key, which is stored only as SHA-256."""
        if not name or not name.strip():
            raise InvalidRequest("platform name must not be empty")
        key = credentials.new_api_key()
        try:
            with self._write() as con:
                con.execute("INSERT INTO platforms (name, key_sha256, created) VALUES (?,?,?)",
                            (name, credentials.key_digest(key), int(time.time())))
        except sqlite3.IntegrityError:
            raise InvalidRequest(f"platform {name!r} already exists") from None
        return key

    def platform_for_key(self, api_key: str) -> str | None:
        with self._lock:
            row = self._con.execute("SELECT name FROM platforms WHERE key_sha256=?",
                                    (credentials.key_digest(api_key),)).fetchone()
        return row[0] if row else None

    # ------------------------------------------------------------ cases

    def submit_case(self, media: list[Image | Video],
                    new_case: credentials.NewCase | None = None) -> SubmittedCase:
        """Stores a case and its media in one transaction; returns after COMMIT.

        new_case: the case's id and PIN, made beforehand (the slow PIN hash need not run under
        a caller's lock); made here when not given.
        """
        case_id, pin, salt, digest = new_case or credentials.new_case()
        now = int(time.time())
        with self._write() as con:
            entry0 = self._take("next_entry", len(media))
            seq0 = self._take("next_seq", len(media))
            con.execute("INSERT INTO cases (id, pin_salt, pin_hash, created) VALUES (?,?,?,?)",
                        (case_id, salt, digest, now))
            for i, item in enumerate(media):
                entry, video = entry0 + i, isinstance(item, Video)
                frames = len(item.frames) if video else int(item.pdq is not None)
                con.execute("INSERT INTO entries (id, case_id, kind, md5, frame_count, added_seq)"
                            " VALUES (?,?,?,?,?,?)",
                            (entry, case_id, KIND_VIDEO if video else KIND_IMAGE, item.md5,
                             frames, seq0 + i))
                if frames:
                    hashes, qualities = ((item.frames.tobytes(), item.qualities.tobytes())
                                         if video else (item.pdq, bytes([item.quality])))
                    con.execute("INSERT INTO hash_blocks VALUES (?,1,?,?,?)",
                                (entry, int(video), hashes, qualities))
                con.execute("INSERT INTO changes VALUES (?,1,?,?,?)",
                            (seq0 + i, OP_ADD, entry, now))
        entry_ids = list(range(entry0, entry0 + len(media)))
        return SubmittedCase(case_id, pin, entry_ids, seq0 + len(media) - 1,
                             _rows_of(entry_ids, media, seq0 + len(media) - 1))

    def check_pin(self, case_id: str, pin: str) -> None:
        """Counts the attempt before checking it, so the lock holds even under parallel guesses."""
        with self._write() as con:
            row = con.execute("UPDATE cases SET failed_pins = failed_pins + 1 WHERE id=? AND "
                              "failed_pins < ? RETURNING pin_salt, pin_hash, failed_pins",
                              (case_id, MAX_PIN_FAILURES)).fetchone()
            exists = row or con.execute("SELECT 1 FROM cases WHERE id=?", (case_id,)).fetchone()
        if not exists:
            raise NotFound(f"no case {case_id!r}")
        if not row:
            raise PermissionDenied(f"case {case_id!r} is locked after {MAX_PIN_FAILURES} wrong "
                                   "PINs")
        salt, digest, attempts = row
        if not credentials.pin_matches(pin, salt, digest):
            raise PermissionDenied(f"wrong PIN for case {case_id!r} "
                                   f"({MAX_PIN_FAILURES - attempts} attempts left)")
        with self._write() as con:
            con.execute("UPDATE cases SET failed_pins = 0 WHERE id=?", (case_id,))

    def case_status(self, case_id: str, pin: str) -> CaseStatus:
        self.check_pin(case_id, pin)
        with self._lock:
            created, withdrawn = self._con.execute(
                "SELECT created, withdrawn FROM cases WHERE id=?", (case_id,)).fetchone()
            counts = dict(self._con.execute(
                "SELECT kind, count(*) FROM entries WHERE case_id=? GROUP BY kind", (case_id,)))
        return CaseStatus(case_id, withdrawn is not None, counts.get(KIND_IMAGE, 0),
                          counts.get(KIND_VIDEO, 0), created, withdrawn or 0)

    def withdraw_case(self, case_id: str, pin: str) -> tuple[int, ListRows]:
        """Removes the case's entries; returns (last removal sequence, the removed rows' ids).

        Withdrawing twice is not an error: the second call removes nothing and returns the
        sequence of the first withdrawal.
        """
        self.check_pin(case_id, pin)
        return self.remove_case(case_id)

    def remove_case(self, case_id: str) -> tuple[int, ListRows]:
        """withdraw_case without the PIN check, for a caller that has made it already."""
        now = int(time.time())
        with self._write() as con:
            rows = con.execute("SELECT id, kind, md5 IS NOT NULL, frame_count FROM entries "
                               "WHERE case_id=? AND removed_seq IS NULL ORDER BY id",
                               (case_id,)).fetchall()
            if not rows:
                (seq,) = con.execute("SELECT coalesce(max(removed_seq), 0) FROM entries "
                                     "WHERE case_id=?", (case_id,)).fetchone()
                con.execute("UPDATE cases SET withdrawn = coalesce(withdrawn, ?) WHERE id=?",
                            (now, case_id))
                return seq, ListRows(sequence=seq)
            seq0 = self._take("next_seq", len(rows))
            for i, (entry, *_rest) in enumerate(rows):
                con.execute("UPDATE entries SET removed_seq=?, md5=NULL WHERE id=?",
                            (seq0 + i, entry))
                con.execute("DELETE FROM hash_blocks WHERE first_entry=?", (entry,))
                con.execute("INSERT INTO changes VALUES (?,1,?,?,?)",
                            (seq0 + i, OP_REMOVE, entry, now))
            con.execute("UPDATE cases SET withdrawn=? WHERE id=?", (now, case_id))
        last = seq0 + len(rows) - 1
        return last, _removed_rows(rows, last)

    # ------------------------------------------------------------ bulk

    def import_pdq_hashes(self, hashes, progress=None) -> int:
        """Adds each PDQ hash (uint8[n, 32]) as its own list entry, without a case.

        Big transactions of IMPORT_TRANSACTION hashes; `progress(done, total)` is called after
        each commit. Returns the number of hashes imported. A running server sees them after a
        restart.
        """
        hashes = np.ascontiguousarray(hashes, dtype=np.uint8)
        if hashes.ndim != 2 or hashes.shape[1] != PDQ_BYTES:
            raise InvalidRequest(f"hashes must have shape (n, {PDQ_BYTES}), got {hashes.shape}")
        total, now = len(hashes), int(time.time())
        for start in range(0, total, IMPORT_TRANSACTION):
            chunk = hashes[start:start + IMPORT_TRANSACTION]
            with self._write() as con:
                entry0 = self._take("next_entry", len(chunk))
                seq0 = self._take("next_seq", len(chunk))
                blocks = [(o, chunk[o:o + IMPORT_BLOCK])
                          for o in range(0, len(chunk), IMPORT_BLOCK)]
                con.executemany("INSERT INTO hash_blocks VALUES (?,?,0,?,NULL)",
                                ((entry0 + o, len(b), b.tobytes()) for o, b in blocks))
                con.executemany("INSERT INTO changes VALUES (?,?,?,?,?)",
                                ((seq0 + o, len(b), OP_ADD, entry0 + o, now) for o, b in blocks))
            if progress is not None:
                progress(start + len(chunk), total)
        return total

    def load_all(self) -> ListRows:
        """Every live row of the list, as packed arrays, and the sequence they reflect."""
        image_ids, image_hashes, frame_hashes = [], [], []
        videos, counts = [], []
        with self._lock:
            self._con.execute("BEGIN")
            try:
                sequence = self._next("next_seq") - 1
                for first, count, video, blob in self._con.execute(
                        "SELECT first_entry, entry_count, video, hashes FROM hash_blocks"):
                    hashes = np.frombuffer(blob, np.uint8).reshape(-1, PDQ_BYTES)
                    if video:
                        videos.append(first)
                        counts.append(len(hashes))
                        frame_hashes.append(hashes)
                    else:
                        image_ids.append(np.arange(first, first + count, dtype=np.uint64))
                        image_hashes.append(hashes)
                md5_rows = self._con.execute("SELECT id, md5 FROM entries WHERE md5 IS NOT NULL "
                                             "AND removed_seq IS NULL").fetchall()
            finally:
                self._con.execute("COMMIT")
        rows = ListRows(sequence=sequence)
        if image_ids:
            rows.image_ids = np.concatenate(image_ids)
            rows.image_hashes = np.concatenate(image_hashes)
        if videos:
            rows.video_entries = np.asarray(videos, np.uint64)
            rows.video_frame_counts = np.asarray(counts, np.int64)
            rows.frame_ids = frame_ids(rows.video_entries, rows.video_frame_counts)
            rows.frame_hashes = np.concatenate(frame_hashes)
        if md5_rows:
            rows.md5_ids = np.asarray([r[0] for r in md5_rows], np.uint64)
            rows.md5s = np.frombuffer(b"".join(r[1] for r in md5_rows),
                                      np.uint8).reshape(-1, MD5_BYTES)
        return rows


def _rows_of(entry_ids: list[int], media: list[Image | Video], sequence: int) -> ListRows:
    images = [(e, m) for e, m in zip(entry_ids, media) if isinstance(m, Image) and m.pdq]
    videos = [(e, m) for e, m in zip(entry_ids, media) if isinstance(m, Video) and len(m.frames)]
    md5s = [(e, m.md5) for e, m in zip(entry_ids, media) if m.md5]
    rows = ListRows(sequence=sequence)
    if images:
        rows.image_ids = np.asarray([e for e, _ in images], np.uint64)
        rows.image_hashes = np.frombuffer(b"".join(m.pdq for _, m in images),
                                          np.uint8).reshape(-1, PDQ_BYTES)
    if videos:
        rows.video_entries = np.asarray([e for e, _ in videos], np.uint64)
        rows.video_frame_counts = np.asarray([len(m.frames) for _, m in videos], np.int64)
        rows.frame_ids = frame_ids(rows.video_entries, rows.video_frame_counts)
        rows.frame_hashes = np.concatenate([m.frames for _, m in videos])
    if md5s:
        rows.md5_ids = np.asarray([e for e, _ in md5s], np.uint64)
        rows.md5s = np.frombuffer(b"".join(h for _, h in md5s), np.uint8).reshape(-1, MD5_BYTES)
    return rows


def _removed_rows(rows, sequence: int) -> ListRows:
    """Ids to take out of the index for withdrawn entries (hash arrays stay empty)."""
    images = [e for e, kind, _, frames in rows if kind == KIND_IMAGE and frames]
    videos = [(e, frames) for e, kind, _, frames in rows if kind == KIND_VIDEO and frames]
    removed = ListRows(sequence=sequence,
                       image_ids=np.asarray(images, np.uint64),
                       md5_ids=np.asarray([e for e, _, has_md5, _ in rows if has_md5], np.uint64))
    if videos:
        removed.video_entries = np.asarray([e for e, _ in videos], np.uint64)
        removed.video_frame_counts = np.asarray([f for _, f in videos], np.int64)
        removed.frame_ids = frame_ids(removed.video_entries, removed.video_frame_counts)
    return removed
