"""The durable list: cases, entries, hashes, platforms and the one ordered change log, in an
SQLite file (WAL, synchronous=FULL) or a PostgreSQL database that several servers share.

`open_store(db)`: a `postgresql://` URL gives PostgreSQL, anything else is an SQLite path. The SQL
is written once; dialect.py fills in what differs. Every write is one transaction, and a caller
hears back only after COMMIT, so an acknowledged case survives a crash. Every change to the list
is a row of `changes`; the in-memory index (follower.py) loads `load_all()` once and then reads
`changes_after()`, whoever wrote them. Sequence numbers come from the `next_seq` counter row,
updated inside the writing transaction: its row lock makes commit order equal sequence order on
PostgreSQL too (a plain sequence hands numbers out at insert time, so a reader could skip a
transaction that commits late).

Layout, chosen so that 10M hashes import and load in seconds:
- `hash_blocks` holds packed hashes: one row per submitted photo (1 hash) or video (its frames),
  and one row per block of up to 65,536 imported photos. Loading reads a few large BLOBs.
- `entries` has a row per submitted photo/video (kind, md5, case). Imported photos are entries
  without a case and without an `entries` row: their ids are the range a block covers.
- Entry ids: an import takes consecutive ids from the `next_entry` counter, below
  CASE_ENTRY_FIRST (an operator's bulk list, not one person's); a submitted photo or video gets
  an id drawn at random from [CASE_ENTRY_FIRST, ENTRY_LIMIT), so a platform that sees two ids
  cannot tell that they came from one case, nor how fast the list grows. Databases written
  before this keep their (consecutive) ids; only new cases get random ones.
- `changes` is the change log. A row covers `count` consecutive sequence numbers applied to as
  many consecutive entry ids (count is 1 for case media, the block size for imports), so every
  add and remove of an entry has its own sequence number.
- Withdrawal deletes the case's hashes and md5s (the person asked for them to go), keeps the
  entry rows with `removed_seq`, and logs one removal per entry. So an ADD whose rows are gone
  applies as nothing, and any suffix of the log can be replayed.
- `meta` holds the counters and `schema`, the number of MIGRATIONS applied; `open_store` applies
  the missing ones in order, in one transaction.
"""
import dataclasses
import secrets
import time

import numpy as np

from hashmatch.server import audit, credentials
from hashmatch.server.audit import AuditLog
from hashmatch.server.dialect import open_dialect
from hashmatch.server.errors import InvalidRequest, LimitExceeded, NotFound, PermissionDenied
from hashmatch.server.media import (KIND_IMAGE, KIND_VIDEO, MD5_BYTES, PDQ_BYTES, Image,
                                    ListRows, Video, frame_ids)
from hashmatch.server.platforms import PlatformKeys

IMPORT_BLOCK = 65536          # hashes per hash_blocks row for imports (2 MiB BLOB)
IMPORT_TRANSACTION = 1 << 20  # hashes per transaction for imports
CHANGES_PER_READ = 1000       # change rows one changes_after() reads at most
HASHES_PER_READ = 1 << 20     # ... and the entries they add, at most (one row always)
# Wrong PINs in a row answered at once; after them each wrong PIN locks the case for
# PIN_BACKOFF_S * 2**k (k = 0, 1, ...), at most PIN_BACKOFF_MAX_S. Never locked for good: the
# right PIN works once the back-off has passed, so a stranger who knows the case id cannot shut
# the person out, and guessing 8 digits stays hopeless (one try a day from the 23rd wrong PIN).
FREE_PIN_FAILURES = 5
PIN_BACKOFF_S = 1.0
PIN_BACKOFF_MAX_S = 86400.0
OP_ADD, OP_REMOVE = 1, 2     # core.holds: 3..5; platforms.OP_KEYS: 6
# Entry ids: imports below CASE_ENTRY_FIRST, cases drawn from [CASE_ENTRY_FIRST, ENTRY_LIMIT).
# Both below 2**32, so HashIndex and Md5Index keep 4-byte ids (core/live.py narrow_ids) and
# frame ids (entry << FRAME_BITS | frame) fit 64 bits; 2**31 values leave a drawn id free on
# the first try unless the list holds billions of case entries (ENTRY_DRAWS rounds at most).
CASE_ENTRY_FIRST = 1 << 31
ENTRY_LIMIT = 1 << 32
ENTRY_DRAWS = 32
# The rows the ADDs among changes seq ? to ? name, found from those change rows with one key
# lookup each: never an id range, which random case ids would widen to the whole table.
_ADDED = "IN (SELECT first_entry FROM changes WHERE seq BETWEEN ? AND ? AND op = ?)"
ADDED_BLOCKS = ("SELECT first_entry, entry_count, video, hashes FROM hash_blocks "
                f"WHERE first_entry {_ADDED} ORDER BY first_entry")
ADDED_MD5S = f"SELECT id, md5 FROM entries WHERE id {_ADDED} AND md5 IS NOT NULL ORDER BY id"

# MIGRATIONS[i] takes a database from schema i to i + 1. Append only: a release that changes the
# schema adds one entry; open_store applies the missing ones in order.
MIGRATIONS = [
    """
    CREATE TABLE IF NOT EXISTS cases (
        id TEXT PRIMARY KEY, pin_salt {blob} NOT NULL, pin_hash {blob} NOT NULL,
        failed_pins {bigint} NOT NULL DEFAULT 0, created {bigint} NOT NULL, withdrawn {bigint});
    CREATE TABLE IF NOT EXISTS entries (
        id {bigint} PRIMARY KEY, case_id TEXT NOT NULL REFERENCES cases(id),
        kind {bigint} NOT NULL, md5 {blob}, frame_count {bigint} NOT NULL,
        added_seq {bigint} NOT NULL, removed_seq {bigint});
    CREATE INDEX IF NOT EXISTS entries_by_case ON entries(case_id);
    CREATE TABLE IF NOT EXISTS hash_blocks (
        first_entry {bigint} PRIMARY KEY, entry_count {bigint} NOT NULL, video {bigint} NOT NULL,
        hashes {blob} NOT NULL, qualities {blob});
    CREATE TABLE IF NOT EXISTS changes (
        seq {bigint} PRIMARY KEY, count {bigint} NOT NULL, op {bigint} NOT NULL,
        first_entry {bigint} NOT NULL, at {bigint} NOT NULL);
    CREATE TABLE IF NOT EXISTS platforms (
        id {serial}, name TEXT NOT NULL UNIQUE, key_sha256 {blob} NOT NULL UNIQUE,
        created {bigint} NOT NULL);
    INSERT INTO meta VALUES ('next_entry', 1) ON CONFLICT DO NOTHING;
    INSERT INTO meta VALUES ('next_seq', 1) ON CONFLICT DO NOTHING;
    """,
    # 2: PIN back-off instead of a permanent lock (unix milliseconds; 0 = not locked).
    """
    ALTER TABLE cases ADD COLUMN locked_until {bigint} NOT NULL DEFAULT 0;
    """,
    # Platform roles (ROLES), comma-separated; platforms registered before roles may match.
    """
    ALTER TABLE platforms ADD COLUMN roles TEXT NOT NULL DEFAULT 'match';
    """,
    # Replication: the lowest sequence a resume token may name (the log before it is pruned),
    # and, in a mirror's store, the token it resumes from.
    """
    INSERT INTO meta VALUES ('floor_seq', 0) ON CONFLICT DO NOTHING;
    CREATE TABLE IF NOT EXISTS replica (
        name TEXT PRIMARY KEY, source TEXT NOT NULL, token {blob} NOT NULL,
        sequence {bigint} NOT NULL, updated {bigint} NOT NULL);
    """,
    # Feedback and review (outcomes.py): platforms' reports (one per platform and report id),
    # entries held back or disputed (what the log's state ops left), reviewers' decisions and
    # the suppression list.
    """
    CREATE TABLE IF NOT EXISTS reports (
        platform TEXT NOT NULL, report_id TEXT NOT NULL, entry {bigint} NOT NULL,
        signal {bigint} NOT NULL, hash {blob}, action {bigint} NOT NULL, reason TEXT NOT NULL,
        tags TEXT NOT NULL, occurred {bigint} NOT NULL, received {bigint} NOT NULL,
        PRIMARY KEY (platform, report_id));
    CREATE INDEX IF NOT EXISTS reports_by_entry ON reports(entry);
    CREATE TABLE IF NOT EXISTS entry_state (
        entry {bigint} PRIMARY KEY, held {bigint} NOT NULL, disputed {bigint} NOT NULL,
        seq {bigint} NOT NULL, at {bigint} NOT NULL, detail TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS decisions (
        seq {bigint} PRIMARY KEY, entry {bigint} NOT NULL, decision TEXT NOT NULL,
        decided_by TEXT NOT NULL, at {bigint} NOT NULL, note TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS suppressed (
        id {serial}, hash {blob} NOT NULL, added_by TEXT NOT NULL, at {bigint} NOT NULL,
        note TEXT NOT NULL);
    """,
    # Key lifecycle (platforms.py): several keys per platform, each with an expiry (NULL: never)
    # and a revocation time; the keys registered so far carry over. platforms.key_sha256 keeps
    # the newest key for older releases; lookups read platform_keys. And the append-only audit
    # log (audit.py).
    """
    CREATE TABLE IF NOT EXISTS platform_keys (
        id {serial}, platform TEXT NOT NULL REFERENCES platforms(name),
        key_sha256 {blob} NOT NULL UNIQUE, created {bigint} NOT NULL, expires {bigint},
        revoked {bigint});
    CREATE INDEX IF NOT EXISTS platform_keys_by_platform ON platform_keys(platform);
    INSERT INTO platform_keys (platform, key_sha256, created)
        SELECT name, key_sha256, created FROM platforms ORDER BY id;
    CREATE TABLE IF NOT EXISTS audit (
        id {serial}, at {bigint} NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
        subject TEXT NOT NULL, detail TEXT NOT NULL);
    CREATE INDEX IF NOT EXISTS audit_by_time ON audit(at);
    """,
]


def _clock_ms() -> int:
    return int(time.time() * 1000)


def pin_backoff_ms(failures: int) -> int:
    """How long the case stays locked after `failures` wrong PINs in a row."""
    if failures <= FREE_PIN_FAILURES:
        return 0
    return int(1000 * min(PIN_BACKOFF_MAX_S,
                          PIN_BACKOFF_S * 2.0 ** min(failures - FREE_PIN_FAILURES - 1, 60)))


@dataclasses.dataclass(frozen=True)
class SubmittedCase:
    case_id: str
    pin: str
    entry_ids: list[int]
    sequence: int


@dataclasses.dataclass(frozen=True)
class CaseStatus:
    case_id: str
    withdrawn: bool
    image_count: int
    video_count: int
    created_unix: int
    withdrawn_unix: int


def follows(changes, after: int) -> bool:
    """Whether (seq, count, ...) change rows continue sequence `after` without a hole."""
    expected = after + 1
    for seq, count, *_rest in changes:
        if seq != expected:
            return False
        expected = seq + count
    return True


@dataclasses.dataclass(frozen=True)
class LogBatch:
    """Changes `first..last` of the log read in one snapshot, with what they need to apply.

    `changes`: (seq, count, op, first_entry) rows in sequence order; each covers `count`
    sequence numbers and as many consecutive entry ids. `added`: the rows of its ADD entries
    that still exist (withdrawn ones are gone); `removed`: the entry ids of its REMOVEs. The
    two never share an entry (a removal deletes the rows in the same transaction), so they
    apply in either order. `head`: the log's last sequence number in that snapshot.
    """
    head: int
    changes: list[tuple[int, int, int, int]]
    added: ListRows
    removed: np.ndarray


class Store(PlatformKeys, AuditLog):
    """Thread-safe; slow hashing happens outside any transaction. Use `open_store(db)`.
    Platforms and keys: platforms.py; the audit log: audit.py."""

    def __init__(self, db: str):
        self._db = open_dialect(str(db))
        self.where = self._db.where
        self._migrate()

    def close(self):
        self._db.close()

    def _migrate(self) -> None:
        with self._db.transaction(write=True) as tx:
            if self._db.name == "postgresql":   # servers starting together create tables once
                tx.execute("SELECT pg_advisory_xact_lock(4851)")
            tx.execute(self._db.sql("CREATE TABLE IF NOT EXISTS meta "
                                    "(key TEXT PRIMARY KEY, value {bigint} NOT NULL)"))
            tx.execute("INSERT INTO meta VALUES ('schema', 0) ON CONFLICT DO NOTHING")
            (version,) = tx.execute("SELECT value FROM meta WHERE key='schema'").fetchone()
            if version > len(MIGRATIONS):
                raise InvalidRequest(f"the list database {self.where} has schema {version}, "
                                     f"newer than this release knows ({len(MIGRATIONS)}); "
                                     "upgrade hashmatch")
            for script in MIGRATIONS[version:]:
                for statement in filter(str.strip, self._db.sql(script).split(";")):
                    tx.execute(statement)
            tx.execute("UPDATE meta SET value=? WHERE key='schema'", (len(MIGRATIONS),))

    def wait_for_change(self, timeout: float, stop) -> None:
        """Blocks until a writer may have logged a change (a hint), or `timeout` seconds."""
        self._db.wait_for_change(timeout, stop)

    def schema_version(self) -> int:
        with self._db.transaction(write=False) as tx:
            return tx.execute("SELECT value FROM meta WHERE key='schema'").fetchone()[0]

    @staticmethod
    def _take(tx, key: str, n: int) -> int:
        """Reserves n consecutive values of a counter (inside a write); returns the first.

        The UPDATE locks the counter row until COMMIT, so writers that log changes commit in
        the order of their sequence numbers."""
        return tx.execute("UPDATE meta SET value = value + ? WHERE key = ? RETURNING value - ?",
                          (n, key, n)).fetchone()[0]

    @staticmethod
    def _head(tx) -> int:
        return tx.execute("SELECT value FROM meta WHERE key='next_seq'").fetchone()[0] - 1

    def head_sequence(self) -> int:
        """The last sequence number in the log."""
        with self._db.transaction(write=False) as tx:
            return self._head(tx)

    # ------------------------------------------------------------ cases

    def submit_case(self, media: list[Image | Video],
                    new_case: credentials.NewCase | None = None) -> SubmittedCase:
        """Stores a case and its media in one transaction; returns after COMMIT.

        new_case: the case's id and PIN, made beforehand (the slow PIN hash need not run in
        a transaction); made here when not given.
        """
        case_id, pin, salt, digest = new_case or credentials.new_case()
        now = int(time.time())
        with self._db.transaction(write=True) as tx:
            seq0 = self._take(tx, "next_seq", len(media))
            # The next_seq row lock orders every writer, so no one takes these ids meanwhile.
            entries = draw_entries(len(media), lambda ids: _entries_taken(tx, ids))
            tx.execute("INSERT INTO cases (id, pin_salt, pin_hash, created) VALUES (?,?,?,?)",
                       (case_id, salt, digest, now))
            for i, (entry, item) in enumerate(zip(entries, media)):
                video = isinstance(item, Video)
                frames = len(item.frames) if video else int(item.pdq is not None)
                tx.execute("INSERT INTO entries (id, case_id, kind, md5, frame_count, added_seq)"
                           " VALUES (?,?,?,?,?,?)",
                           (entry, case_id, KIND_VIDEO if video else KIND_IMAGE, item.md5,
                            frames, seq0 + i))
                if frames:
                    hashes, qualities = ((item.frames.tobytes(), item.qualities.tobytes())
                                         if video else (item.pdq, bytes([item.quality])))
                    tx.execute("INSERT INTO hash_blocks VALUES (?,1,?,?,?)",
                               (entry, int(video), hashes, qualities))
                tx.execute("INSERT INTO changes VALUES (?,1,?,?,?)",
                           (seq0 + i, OP_ADD, entry, now))
        return SubmittedCase(case_id, pin, entries, seq0 + len(media) - 1)

    def check_pin(self, case_id: str, pin: str) -> None:
        """Counts the attempt (and locks the case for its back-off) before checking it, so
        parallel guesses get no more tries than serial ones; the right PIN clears both."""
        with self._db.transaction(write=True) as tx:
            row = tx.execute("SELECT pin_salt, pin_hash, failed_pins, locked_until FROM cases "
                             "WHERE id=? {for_update}", (case_id,)).fetchone()
            now = _clock_ms()    # read under the row lock, so an attempt that waited is not early
            if not row:
                raise NotFound(f"no case {case_id!r}")
            salt, digest, failures, locked_until = row
            if locked_until > now:
                raise PermissionDenied(
                    f"case {case_id!r} is locked for {-(-(locked_until - now) // 1000)} more "
                    f"second(s) after {failures} wrong PINs; the right PIN works after that")
            failures += 1
            backoff = pin_backoff_ms(failures)
            tx.execute("UPDATE cases SET failed_pins=?, locked_until=? WHERE id=?",
                       (failures, now + backoff if backoff else 0, case_id))
        if not credentials.pin_matches(pin, bytes(salt), bytes(digest)):
            after = (f"the next try is possible in {-(-backoff // 1000)} s" if backoff else
                     f"{FREE_PIN_FAILURES - failures} more wrong PIN(s) before tries are delayed")
            raise PermissionDenied(f"wrong PIN for case {case_id!r} ({after})")
        with self._db.transaction(write=True) as tx:
            tx.execute("UPDATE cases SET failed_pins = 0, locked_until = 0 WHERE id=?",
                       (case_id,))

    def case_status(self, case_id: str, pin: str) -> CaseStatus:
        self.check_pin(case_id, pin)
        with self._db.transaction(write=False) as tx:
            created, withdrawn = tx.execute(
                "SELECT created, withdrawn FROM cases WHERE id=?", (case_id,)).fetchone()
            counts = dict(tx.execute(
                "SELECT kind, count(*) FROM entries WHERE case_id=? GROUP BY kind",
                (case_id,)).fetchall())
        return CaseStatus(case_id, withdrawn is not None, counts.get(KIND_IMAGE, 0),
                          counts.get(KIND_VIDEO, 0), created, withdrawn or 0)

    def remove_case(self, case_id: str) -> int:
        """Removes the case's entries (the caller has checked the PIN); returns the sequence of
        the last removal.

        Withdrawing twice is not an error: the second call removes nothing and returns the
        sequence of the first withdrawal.
        """
        now = int(time.time())
        with self._db.transaction(write=True) as tx:
            entries = [e for (e,) in tx.execute(
                "SELECT id FROM entries WHERE case_id=? AND removed_seq IS NULL "
                "ORDER BY added_seq",
                (case_id,)).fetchall()]
            if not entries:
                (seq,) = tx.execute("SELECT coalesce(max(removed_seq), 0) FROM entries "
                                    "WHERE case_id=?", (case_id,)).fetchone()
                tx.execute("UPDATE cases SET withdrawn = coalesce(withdrawn, ?) WHERE id=?",
                           (now, case_id))
                return seq
            seq0 = self._take(tx, "next_seq", len(entries))
            for i, entry in enumerate(entries):
                tx.execute("UPDATE entries SET removed_seq=?, md5=NULL WHERE id=?",
                           (seq0 + i, entry))
                tx.execute("DELETE FROM hash_blocks WHERE first_entry=?", (entry,))
                tx.execute("INSERT INTO changes VALUES (?,1,?,?,?)",
                           (seq0 + i, OP_REMOVE, entry, now))
            tx.execute("UPDATE cases SET withdrawn=? WHERE id=?", (now, case_id))
            audit.write(tx, "case holder", "case.withdraw", audit.case_ref(case_id),
                        f"{len(entries)} entries removed at sequence {seq0}.."
                        f"{seq0 + len(entries) - 1}", now)
        self._db.forget_deleted()
        return seq0 + len(entries) - 1

    # ------------------------------------------------------------ bulk

    def import_pdq_hashes(self, hashes, progress=None) -> int:
        """Adds each PDQ hash (uint8[n, 32]) as its own list entry, without a case.

        Big transactions of IMPORT_TRANSACTION hashes; `progress(done, total)` is called after
        each commit. Returns the number of hashes imported. Running servers follow the log, so
        they pick the import up without a restart. Imports take consecutive ids below
        CASE_ENTRY_FIRST; LimitExceeded, before anything is written, when this one would not fit.
        """
        hashes = np.ascontiguousarray(hashes, dtype=np.uint8)
        if hashes.ndim != 2 or hashes.shape[1] != PDQ_BYTES:
            raise InvalidRequest(f"hashes must have shape (n, {PDQ_BYTES}), got {hashes.shape}")
        total, now = len(hashes), int(time.time())
        with self._db.transaction(write=False) as tx:
            _check_import_room(tx, total)
        for start in range(0, total, IMPORT_TRANSACTION):
            chunk = hashes[start:start + IMPORT_TRANSACTION]
            with self._db.transaction(write=True) as tx:
                _check_import_room(tx, len(chunk))     # another import may have run meanwhile
                seq0 = self._take(tx, "next_seq", len(chunk))
                entry0 = self._take(tx, "next_entry", len(chunk))
                blocks = [(o, chunk[o:o + IMPORT_BLOCK])
                          for o in range(0, len(chunk), IMPORT_BLOCK)]
                tx.executemany("INSERT INTO hash_blocks VALUES (?,?,0,?,NULL)",
                               [(entry0 + o, len(b), b.tobytes()) for o, b in blocks])
                tx.executemany("INSERT INTO changes VALUES (?,?,?,?,?)",
                               [(seq0 + o, len(b), OP_ADD, entry0 + o, now) for o, b in blocks])
            if progress is not None:
                progress(start + len(chunk), total)
        return total

    # ------------------------------------------------------------ reading the list

    def load_all(self) -> ListRows:
        """Every live row of the list, as packed arrays, and the sequence they reflect (read in
        one snapshot)."""
        with self._db.transaction(write=False) as tx:
            sequence = self._head(tx)
            blocks = tx.execute("SELECT first_entry, entry_count, video, hashes "
                                "FROM hash_blocks ORDER BY first_entry").fetchall()
            md5_rows = tx.execute("SELECT id, md5 FROM entries WHERE md5 IS NOT NULL "
                                  "ORDER BY id").fetchall()
            states = tx.execute("SELECT entry, held, disputed FROM entry_state").fetchall()
        rows = _rows(blocks, md5_rows, sequence)
        rows.held_entries = np.asarray([e for e, h, _ in states if h], np.uint64)
        rows.disputed_entries = np.asarray([e for e, _, d in states if d], np.uint64)
        return rows

    def changes_after(self, sequence: int) -> LogBatch:
        """The next changes after `sequence` (at most CHANGES_PER_READ rows and about
        HASHES_PER_READ added entries), read in one snapshot with the rows they add."""
        with self._db.transaction(write=False) as tx:
            head = self._head(tx)
            changes = tx.execute("SELECT seq, count, op, first_entry FROM changes WHERE seq > ? "
                                 "ORDER BY seq LIMIT ?", (sequence, CHANGES_PER_READ)).fetchall()
            added_count = np.cumsum([c[1] if c[2] == OP_ADD else 0 for c in changes])
            changes = changes[:max(1, int(np.searchsorted(added_count, HASHES_PER_READ,
                                                           "right")))] if changes else []
            blocks, md5_rows = [], []
            if any(op == OP_ADD for _, _, op, _ in changes):
                span = (changes[0][0], changes[-1][0], OP_ADD)
                blocks = tx.execute(ADDED_BLOCKS, span).fetchall()
                md5_rows = tx.execute(ADDED_MD5S, span).fetchall()
        removed = np.asarray([first for _, _, op, first in changes if op == OP_REMOVE], np.uint64)
        last = changes[-1][0] + changes[-1][1] - 1 if changes else sequence
        return LogBatch(head, [tuple(c) for c in changes], _rows(blocks, md5_rows, last), removed)


def draw_entries(n: int, taken, first: int = CASE_ENTRY_FIRST,
                 limit: int = ENTRY_LIMIT) -> list[int]:
    """n distinct ids drawn uniformly at random (secrets) from [first, limit), in draw order,
    none of those `taken(ids)` returns (the ones already in use); a taken or repeated draw is
    drawn again. LimitExceeded when ENTRY_DRAWS rounds leave some unfound (the range is full)."""
    entries: list[int] = []
    drawn: set[int] = set()
    for _ in range(ENTRY_DRAWS):
        fresh = []
        for _ in range(n - len(entries)):
            entry = first + secrets.randbelow(limit - first)
            if entry not in drawn:
                drawn.add(entry)
                fresh.append(entry)
        used = taken(fresh) if fresh else set()
        entries += [entry for entry in fresh if entry not in used]
        if len(entries) == n:
            return entries
    raise LimitExceeded(f"no free entry id for a new case in [{first}, {limit}) after "
                        f"{ENTRY_DRAWS} random draws; the list's case id range is full")


def _entries_taken(tx, entries: list[int]) -> set[int]:
    """Those of `entries` an entry row or a hash block (a run of ids, in a mirror's copy)
    holds: a statement per 1,000 ids, each id a key lookup or two."""
    taken = set()
    for at in range(0, len(entries), 1000):
        part = entries[at:at + 1000]
        values = ",".join(["(CAST(? AS {bigint}))"] * len(part))
        taken.update(e for (e,) in tx.execute(
            f"WITH drawn(id) AS (VALUES {values}) SELECT id FROM drawn WHERE EXISTS (SELECT 1 "
            "FROM entries WHERE entries.id = drawn.id) OR (SELECT first_entry + entry_count "
            "FROM hash_blocks WHERE first_entry <= drawn.id ORDER BY first_entry DESC LIMIT 1)"
            " > drawn.id", part))
    return taken


def _check_import_room(tx, count: int) -> None:
    """LimitExceeded when `count` more imported ids would reach CASE_ENTRY_FIRST."""
    (next_entry,) = tx.execute("SELECT value FROM meta WHERE key='next_entry'").fetchone()
    if next_entry + count > CASE_ENTRY_FIRST:
        raise LimitExceeded(
            f"importing {count} hashes would take entry ids up to {next_entry + count - 1}, but "
            f"imported ids must stay below {CASE_ENTRY_FIRST} (ids above are drawn for cases); "
            f"{max(0, CASE_ENTRY_FIRST - next_entry)} more can be imported into this list")


def open_store(db: str) -> Store:
    """The store at `db`: a `postgresql://` URL or an SQLite file path (created if missing)."""
    return Store(db)


def _rows(blocks, md5_rows, sequence: int) -> ListRows:
    """ListRows from hash_blocks rows (first_entry, entry_count, video, hashes) and entries rows
    (id, md5)."""
    image_ids, image_hashes, frame_hashes = [], [], []
    videos, counts = [], []
    for first, count, video, blob in blocks:
        hashes = np.frombuffer(blob, np.uint8).reshape(-1, PDQ_BYTES)
        if video:
            videos.append(first)
            counts.append(len(hashes))
            frame_hashes.append(hashes)
        else:
            image_ids.append(np.arange(first, first + count, dtype=np.uint64))
            image_hashes.append(hashes)
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
        rows.md5s = np.frombuffer(b"".join(bytes(r[1]) for r in md5_rows),
                                  np.uint8).reshape(-1, MD5_BYTES)
    return rows
