"""The store on its own, SQLite and PostgreSQL alike: secrets kept hashed, random case ids, the
change log (read back as the follower reads it), bulk load, schema migrations."""
import base64
import sqlite3
import threading

import numpy as np
import pytest

from hashmatch.server import credentials
from hashmatch.server.errors import InvalidRequest, LimitExceeded, NotFound, PermissionDenied
from hashmatch.server.media import Image, ListRows, Video, entry_of_frame
from hashmatch.server import store as store_module
from hashmatch.server.follower import Follower
from hashmatch.server.listing import ListState
from hashmatch.server.outcomes import open_outcome_store
from hashmatch.server.platforms import KeyCheck
from hashmatch.server.replica_store import open_replica_store
from hashmatch.server.store import OP_ADD, OP_REMOVE, open_store


@pytest.fixture
def store(any_db):
    s = open_store(any_db)
    yield s
    s.close()


def image(seed: int, md5=None) -> Image:
    pdq = np.random.default_rng(seed).integers(0, 256, 32, dtype=np.uint8).tobytes()
    return Image(md5=md5, pdq=pdq, quality=80)


def video(n: int, seed: int) -> Video:
    frames = np.random.default_rng(seed).integers(0, 256, (n, 32), dtype=np.uint8)
    return Video(md5=None, frames=frames, qualities=np.full(n, 70, np.uint8))


def test_same_pin_twice_gives_different_stored_hashes():
    salt_a, hash_a = credentials.hash_pin("12345678")
    salt_b, hash_b = credentials.hash_pin("12345678")
    assert salt_a != salt_b and hash_a != hash_b
    assert credentials.pin_matches("12345678", salt_a, hash_a)
    assert not credentials.pin_matches("12345679", salt_a, hash_a)


def test_case_ids_are_random_and_pins_are_stored_hashed(store):
    cases = [store.submit_case([image(i)]) for i in range(5)]
    ids = [c.case_id for c in cases]
    assert len(set(ids)) == 5 and all(len(i) == 16 for i in ids)
    values = [int.from_bytes(base64.b32decode(i.upper()), "big") for i in ids]
    assert all(abs(a - b) > 2**40 for a, b in zip(values, values[1:])), "ids look sequential"
    with store._db.transaction(write=False) as tx:
        stored = {i: bytes(h) for i, h in tx.execute("SELECT id, pin_hash FROM cases")}
    for case in cases:
        assert case.pin.encode() not in stored[case.case_id]
        assert len(stored[case.case_id]) == 32
    many = {credentials.new_case_id() for _ in range(1000)}
    assert len(many) == 1000


def test_change_log_numbers_every_add_and_remove(store):
    a = store.submit_case([image(1, md5=b"a" * 16), video(3, 2)])
    b = store.submit_case([image(3)])
    assert (a.sequence, b.sequence) == (2, 3)
    (a_photo, a_video), (b_photo,) = a.entry_ids, b.entry_ids
    added = store.changes_after(0).added
    assert added.image_ids.tolist() == sorted([a_photo, b_photo])
    assert added.md5_ids.tolist() == [a_photo]
    assert entry_of_frame(added.frame_ids).tolist() == [a_video] * 3
    assert store.import_pdq_hashes(np.zeros((5, 32), np.uint8)) == 5
    sequence = store.remove_case(a.case_id)
    assert sequence == 3 + 5 + 2 == store.head_sequence()
    assert store.remove_case(a.case_id) == sequence, "a second withdrawal logs nothing"
    batch = store.changes_after(3)
    assert batch.head == 10
    assert batch.changes == [(4, 5, OP_ADD, 1), (9, 1, OP_REMOVE, a_photo),
                             (10, 1, OP_REMOVE, a_video)], "imports count from 1, cases apart"
    assert batch.removed.tolist() == [a_photo, a_video]
    assert batch.added.image_ids.tolist() == [1, 2, 3, 4, 5] and batch.added.sequence == 10
    replayed = store.changes_after(0)
    assert replayed.added.image_ids.tolist() == [1, 2, 3, 4, 5, b_photo], "withdrawn rows gone"
    assert len(replayed.added.frame_ids) == 0 and len(replayed.added.md5_ids) == 0
    rows = store.load_all()
    assert rows.sequence == 10
    assert rows.image_ids.tolist() == [1, 2, 3, 4, 5, b_photo]
    assert len(rows.frame_ids) == 0 and len(rows.md5_ids) == 0


def test_case_entry_ids_are_random_while_imports_count_up(store):
    """A platform that sees two entry ids must not learn that they came from one case, nor the
    order cases arrived in: ids are drawn from [CASE_ENTRY_FIRST, ENTRY_LIMIT) at random."""
    cases = [store.submit_case([image(3 * i), image(3 * i + 1), video(2, 3 * i + 2)])
             for i in range(20)]
    ids = [e for case in cases for e in case.entry_ids]
    span = store_module.ENTRY_LIMIT - store_module.CASE_ENTRY_FIRST
    assert len(set(ids)) == 60
    assert all(store_module.CASE_ENTRY_FIRST <= e < store_module.ENTRY_LIMIT for e in ids)
    # Each false with probability below 1e-15 for uniform draws; certain for a counter.
    assert max(ids) - min(ids) > span // 2, "60 ids spread over the range"
    assert all(abs(x - y) > 1 for case in cases for x in case.entry_ids for y in case.entry_ids
               if x != y), "no two ids of one case are neighbours"
    firsts = [case.entry_ids[0] for case in cases]
    assert firsts != sorted(firsts) and firsts != sorted(firsts, reverse=True)
    assert store.import_pdq_hashes(np.zeros((4, 32), np.uint8)) == 4
    assert store.load_all().image_ids.tolist()[:4] == [1, 2, 3, 4], "imports keep a counter"
    assert store.case_status(cases[0].case_id, cases[0].pin).image_count == 2


def test_an_import_that_would_reach_case_ids_is_refused_whole(store):
    first = store_module.CASE_ENTRY_FIRST
    with store._db.transaction(write=True) as tx:      # a list with almost 2**31 imported ids
        tx.execute("UPDATE meta SET value=? WHERE key='next_entry'", (first - 3,))
    head = store.head_sequence()
    with pytest.raises(LimitExceeded, match=f"must stay below {first}.* 3 more can be imported"):
        store.import_pdq_hashes(np.zeros((5, 32), np.uint8))
    assert store.head_sequence() == head and not len(store.load_all().image_ids)
    assert store.import_pdq_hashes(np.ones((3, 32), np.uint8)) == 3
    assert store.load_all().image_ids.tolist() == [first - 3, first - 2, first - 1]
    with pytest.raises(LimitExceeded, match="0 more can be imported"):
        store.import_pdq_hashes(np.zeros((1, 32), np.uint8))
    (entry,) = store.submit_case([image(1)]).entry_ids
    assert entry >= first, "cases still get ids of their own"


def test_a_drawn_entry_id_that_is_taken_is_drawn_again():
    taken = set(range(100, 105))      # half the range: most runs draw a taken id at least once
    for _ in range(20):
        drawn = store_module.draw_entries(2, taken.intersection, 100, 110)
        assert len(set(drawn)) == 2 and set(drawn) <= set(range(105, 110)), drawn
    with pytest.raises(LimitExceeded, match=r"no free entry id .*\[100, 110\)"):
        store_module.draw_entries(6, taken.intersection, 100, 110)


def test_rows_read_from_the_log_equal_loaded_rows(store, any_db):
    case = store.submit_case([image(1, md5=b"a" * 16), video(4, 2), image(5)])
    followed = store.changes_after(0).added
    store.close()
    reopened = open_store(any_db)
    loaded = reopened.load_all()
    reopened.close()
    for field in ("image_ids", "image_hashes", "frame_ids", "frame_hashes", "video_entries",
                  "video_frame_counts", "md5_ids", "md5s"):
        assert np.array_equal(getattr(followed, field), getattr(loaded, field)), field
    assert loaded.sequence == followed.sequence == case.sequence


def test_bulk_import_round_trip_with_progress(store, monkeypatch):
    monkeypatch.setattr(store_module, "IMPORT_BLOCK", 1000)
    monkeypatch.setattr(store_module, "IMPORT_TRANSACTION", 4000)
    hashes = np.random.default_rng(0).integers(0, 256, (10_500, 32), dtype=np.uint8)
    seen = []
    assert store.import_pdq_hashes(hashes, progress=lambda done, total: seen.append(
        (done, total))) == 10_500
    assert seen == [(4000, 10_500), (8000, 10_500), (10_500, 10_500)]
    rows = store.load_all()
    assert np.array_equal(rows.image_hashes, hashes)
    assert np.array_equal(rows.image_ids, np.arange(1, 10_501))
    assert rows.sequence == 10_500
    with pytest.raises(InvalidRequest, match="shape"):
        store.import_pdq_hashes(np.zeros((2, 31), np.uint8))


def test_pin_checks(store):
    case = store.submit_case([image(1)])
    with pytest.raises(NotFound):
        store.case_status("nope", case.pin)
    with pytest.raises(PermissionDenied, match="4 more wrong PIN"):
        store.case_status(case.case_id, "x")
    assert store.case_status(case.case_id, case.pin).image_count == 1


def test_wrong_pins_back_off_but_never_lock_the_right_pin_out(store, monkeypatch):
    """Today's permanent lock after 10 wrong PINs let anyone with a case id shut its owner out."""
    now = [1_000_000_000_000]
    monkeypatch.setattr(store_module, "_clock_ms", lambda: now[0])
    case = store.submit_case([image(1)])
    waits = []
    for attempt in range(1, 13):
        with pytest.raises(PermissionDenied, match="wrong PIN"):
            store.case_status(case.case_id, "x")
        waits.append(store_module.pin_backoff_ms(attempt))
        if waits[-1]:
            with pytest.raises(PermissionDenied, match="locked for"):
                store.case_status(case.case_id, case.pin)   # even the right PIN waits
            now[0] += waits[-1]
    assert waits[:5] == [0] * 5 and waits[5:8] == [1000, 2000, 4000]
    assert waits[-1] == 64_000
    assert store.case_status(case.case_id, case.pin).image_count == 1, "after the back-off"
    with pytest.raises(PermissionDenied, match="4 more wrong PIN"):
        store.case_status(case.case_id, "x")   # the right PIN reset the count
    assert store_module.pin_backoff_ms(100) == 86_400_000


def test_parallel_wrong_pins_get_no_extra_tries(store):
    case = store.submit_case([image(1)])
    outcomes = []

    def guess():
        try:
            store.case_status(case.case_id, "x")
        except PermissionDenied as exc:
            outcomes.append("locked" if "locked for" in str(exc) else "tried")

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("tried") == store_module.FREE_PIN_FAILURES + 1
    assert outcomes.count("locked") == 12 - store_module.FREE_PIN_FAILURES - 1


def test_withdrawn_hash_bytes_leave_the_sqlite_files(tmp_path):
    path = tmp_path / "list.db"
    store = open_store(path)
    marker = np.random.default_rng(77).integers(0, 256, 32, dtype=np.uint8).tobytes()
    md5 = np.random.default_rng(78).integers(0, 256, 16, dtype=np.uint8).tobytes()
    frames = video(2000, 79)    # 64 kB of frames: overflow pages, freed whole on delete
    case = store.submit_case([Image(md5=md5, pdq=marker, quality=90), frames])
    store.submit_case([image(2)])

    def on_disk() -> bytes:
        return b"".join(p.read_bytes() for p in tmp_path.glob("list.db*"))

    secrets = [marker, md5, frames.frames[1000].tobytes()]
    assert all(s in on_disk() for s in secrets)
    store._db.forget_deleted()   # as an automatic checkpoint would: the rows reach list.db
    assert all(s in (tmp_path / "list.db").read_bytes() for s in secrets)
    store.remove_case(case.case_id)
    assert not [s for s in secrets if s in on_disk()]
    store.close()


def test_platform_names_are_unique(store):
    key = store.add_platform("a")
    assert store.key_check(key) == KeyCheck("a", frozenset({"match"}))
    assert store.key_check(key + "x").refused
    with pytest.raises(InvalidRequest, match="already exists"):
        store.add_platform("a")


def test_replaying_any_suffix_of_the_log_gives_the_same_list(store, monkeypatch):
    """Adds, withdrawals and an import: following the log from 0, and then replaying any
    suffix of it again, ends in the digest of a fresh snapshot."""
    monkeypatch.setattr(store_module, "CHANGES_PER_READ", 3)
    followed = ListState()
    follower = Follower(store, followed)
    cases = []
    for i in range(4):
        cases.append(store.submit_case([image(i, md5=bytes([i]) * 16), video(2, 50 + i)]))
        follower.catch_up()
    store.import_pdq_hashes(np.random.default_rng(9).integers(0, 256, (7, 32), np.uint8))
    for case in cases[::2]:
        store.remove_case(case.case_id)
    store.submit_case([image(99)])
    follower.catch_up()
    head = store.head_sequence()
    fresh = ListState()
    fresh.load(store.load_all())
    want = fresh.digest()
    assert want[0] == 2 * (1 + 1 + 2) + 7 + 1 and followed.digest() == want
    monkeypatch.setattr(store_module, "CHANGES_PER_READ", 1000)
    ends = [seq + count - 1 for seq, count, _, _ in store.changes_after(0).changes]
    monkeypatch.setattr(store_module, "CHANGES_PER_READ", 3)
    for start in [0, *ends]:     # every position the follower can stand at
        followed.sequence = start
        follower.catch_up()
        assert followed.sequence == head and followed.digest() == want, start
    from_zero = ListState()
    Follower(store, from_zero).catch_up()
    assert from_zero.digest() == want, "the whole log from an empty list"


def test_commit_order_equals_sequence_order_under_concurrent_writers(any_db):
    """Writers on their own connections; a reader polling `seq > applied` must never see a
    later sequence before an earlier one (PostgreSQL's trap with plain sequences)."""
    stores = [open_store(any_db) for _ in range(3)]
    reader = open_store(any_db)
    done = threading.Event()
    errors = []

    def write(store, seed):
        try:
            for i in range(15):
                case = store.submit_case([image(seed * 100 + i)])
                if i % 3 == 0:
                    store.remove_case(case.case_id)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    state = ListState()
    follower = Follower(reader, state)
    seen = 0
    while any(t.is_alive() for t in threads) or not done.is_set():
        if not any(t.is_alive() for t in threads):
            done.set()
        batch = reader.changes_after(seen)
        for seq, count, _op, _first in batch.changes:
            assert seq == seen + 1, f"sequence {seq} visible before {seen + 1}"
            seen = seq + count - 1
    for t in threads:
        t.join()
    assert not errors
    assert seen == reader.head_sequence() == 3 * (15 + 5)
    follower.catch_up()
    fresh = ListState()
    fresh.load(reader.load_all())
    assert state.digest() == fresh.digest() and state.digest()[0] == 3 * 10
    for s in [*stores, reader]:
        s.close()


def test_a_first_schema_database_is_migrated_and_keeps_its_cases(any_db, monkeypatch):
    monkeypatch.setattr(store_module, "MIGRATIONS", store_module.MIGRATIONS[:1])
    old = open_store(any_db)
    case = old.submit_case([image(1)])
    assert old.schema_version() == 1
    old.close()
    monkeypatch.undo()
    store = open_store(any_db)
    assert store.schema_version() == len(store_module.MIGRATIONS) >= 2
    assert store.case_status(case.case_id, case.pin).image_count == 1
    assert store.load_all().image_ids.tolist() == case.entry_ids
    store.close()


def test_schema_is_migrated_at_open_and_a_newer_one_is_refused(any_db):
    store = open_store(any_db)
    assert store.schema_version() == len(store_module.MIGRATIONS)
    with store._db.transaction(write=True) as tx:
        tx.execute("UPDATE meta SET value=? WHERE key='schema'", (len(store_module.MIGRATIONS) + 1,))
    store.close()
    with pytest.raises(InvalidRequest, match="newer than this release"):
        open_store(any_db)


def test_a_gap_in_the_log_is_never_skipped_the_list_is_reloaded(store, monkeypatch):
    import hashmatch.server.follower as follower_module
    monkeypatch.setattr(follower_module, "GAP_WAIT_S", 0.2)
    cases = [store.submit_case([image(i)]) for i in range(3)]
    with store._db.transaction(write=True) as tx:      # as if change 2 had not committed yet
        tx.execute("DELETE FROM changes WHERE seq=2")
    state = ListState()
    follower = Follower(store, state, poll_s=0.05)
    loads = []
    monkeypatch.setattr(store, "load_all", lambda: loads.append(1) or type(store).load_all(store))
    assert follower.catch_up() == 3
    assert loads == [1], "the gap was waited for, then the snapshot read again"
    fresh = ListState()
    fresh.load(type(store).load_all(store))
    assert state.digest() == fresh.digest() and state.digest()[0] == 3
    assert sorted(state.match_pdq(np.frombuffer(image(1).pdq, np.uint8).reshape(1, 32), 0,
                                  False).entry_ids.tolist()) == cases[1].entry_ids


def test_a_missing_tail_of_the_log_is_a_gap_too(store, monkeypatch):
    import hashmatch.server.follower as follower_module
    monkeypatch.setattr(follower_module, "GAP_WAIT_S", 0.2)
    store.submit_case([image(1)])
    store.submit_case([image(2)])
    with store._db.transaction(write=True) as tx:
        tx.execute("DELETE FROM changes WHERE seq=2")
    state = ListState()
    assert Follower(store, state, poll_s=0.05).catch_up() == 2
    assert state.digest()[0] == 2


def test_reading_the_log_costs_the_same_however_big_the_list(tmp_path):
    """changes_after finds the rows a few changes add by key: its SQLite work (VM steps) does
    not grow with the rows already stored. Reading them as an id range would: case ids are
    random, so the range of 20 cases' ids spans most of the table."""
    def steps_to_read_20_cases(stored: int) -> int:
        store = open_store(tmp_path / f"{stored}.db")
        store.submit_case([image(i, md5=bytes([i % 256]) * 16) for i in range(stored)])
        after = store.head_sequence()
        cases = [store.submit_case([image(10_000 + i, md5=b"z" * 16)]) for i in range(20)]
        steps = []
        store._db._con.set_progress_handler(lambda: steps.append(1), 1)
        batch = store.changes_after(after)
        store._db._con.set_progress_handler(None, 1)
        store.close()
        entries = sorted(e for case in cases for e in case.entry_ids)
        assert batch.added.image_ids.tolist() == batch.added.md5_ids.tolist() == entries
        return len(steps)

    small, big = steps_to_read_20_cases(1), steps_to_read_20_cases(5000)
    assert big <= small * 1.2, (small, big)


def test_a_copys_case_ids_stay_taken_and_leave_the_import_counter_alone(any_db):
    """A mirror's copy holds the source's ids: its imported ones move the import counter (a
    copy served as a list can import after them), its cases' random ones do not, and a case
    drawn on the copy can never take an id a copied hash block covers."""
    copy = open_replica_store(any_db)
    photo, clip = store_module.CASE_ENTRY_FIRST + 7, store_module.CASE_ENTRY_FIRST + 99
    copy.replica_begin_snapshot()
    copy.replica_add_rows(ListRows(
        image_ids=np.array([5, 6, photo], np.uint64), image_hashes=np.ones((3, 32), np.uint8),
        video_entries=np.array([clip], np.uint64), video_frame_counts=np.array([2]),
        frame_hashes=np.ones((2, 32), np.uint8), sequence=3))
    assert copy.import_pdq_hashes(np.ones((1, 32), np.uint8)) == 1
    assert copy.load_all().image_ids.tolist() == [5, 6, 7, photo]
    with copy._db.transaction(write=False) as tx:
        taken = store_module._entries_taken(tx, [4, 5, 6, 7, 8, photo, photo + 1, clip])
    assert taken == {5, 6, 7, photo, clip}
    copy.close()


def test_a_cases_outcomes_and_removals_follow_the_order_it_was_submitted_in(any_db):
    """Ids are random, so 'by id' is not the order the person gave their items in."""
    store = open_outcome_store(any_db)
    case = store.submit_case([image(i) for i in range(6)])
    assert [o.entry for o in store.case_outcomes(case.case_id)] == case.entry_ids
    store.remove_case(case.case_id)
    assert store.changes_after(6).removed.tolist() == case.entry_ids
    with store._db.transaction(write=False) as tx:      # hashes gone, ids never drawn again
        assert store_module._entries_taken(tx, case.entry_ids) == set(case.entry_ids)
    store.close()


def test_the_rows_a_log_read_adds_are_found_by_key_on_both_stores(store, any_db):
    """The query plans changes_after runs: key lookups in hash_blocks and entries driven by
    the change rows, never a scan of either table (5,000 rows stored, 20 read)."""
    store.submit_case([image(i, md5=bytes([i % 256]) * 16) for i in range(5000)])
    after = store.head_sequence()
    for i in range(20):
        store.submit_case([image(10_000 + i, md5=b"z" * 16)])
    postgres = any_db.startswith("postgres")
    with store._db.transaction(write=False) as tx:
        if postgres:
            # At 5,000 rows a sequential scan can be the cheaper plan; the question is whether
            # the query lets PostgreSQL look rows up by key from the change rows at all.
            tx.execute("SET LOCAL enable_seqscan = off")
        for sql, table in ((store_module.ADDED_BLOCKS, "hash_blocks"),
                           (store_module.ADDED_MD5S, "entries")):
            rows = tx.execute(("EXPLAIN " if postgres else "EXPLAIN QUERY PLAN ") + sql,
                              (after + 1, after + 20, OP_ADD)).fetchall()
            plan = "\n".join(str(row[0] if postgres else row[-1]) for row in rows)
            lookup = (f"Index Scan using {table}_pkey on {table}" if postgres
                      else f"SEARCH {table} USING INTEGER PRIMARY KEY")
            assert lookup in plan and f"Seq Scan on {table}" not in plan, plan
            assert f"SCAN {table}" not in plan, plan
            if postgres:     # each lookup keyed by a change row, not a walk of the whole index
                key = "first_entry" if table == "hash_blocks" else "id"
                assert f"Index Cond: ({key} = changes.first_entry)" in plan, plan
