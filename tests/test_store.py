"""The SQLite store on its own: secrets kept hashed, random case ids, the change log, bulk load."""
import base64
import sqlite3

import numpy as np
import pytest

from hashmatch.server import credentials
from hashmatch.server.errors import InvalidRequest, NotFound, PermissionDenied
from hashmatch.server.media import Image, Video, entry_of_frame
from hashmatch.server.store import Store


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "list.db")
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


def test_case_ids_are_random_and_pins_are_stored_hashed(store, tmp_path):
    cases = [store.submit_case([image(i)]) for i in range(5)]
    ids = [c.case_id for c in cases]
    assert len(set(ids)) == 5 and all(len(i) == 16 for i in ids)
    values = [int.from_bytes(base64.b32decode(i.upper()), "big") for i in ids]
    assert all(abs(a - b) > 2**40 for a, b in zip(values, values[1:])), "ids look sequential"
    con = sqlite3.connect(tmp_path / "list.db")
    stored = dict(con.execute("SELECT id, pin_hash FROM cases"))
    con.close()
    for case in cases:
        assert case.pin.encode() not in stored[case.case_id]
        assert len(stored[case.case_id]) == 32
    many = {credentials.new_case_id() for _ in range(1000)}
    assert len(many) == 1000


def test_change_log_numbers_every_add_and_remove(store):
    a = store.submit_case([image(1, md5=b"a" * 16), video(3, 2)])
    b = store.submit_case([image(3)])
    assert (a.sequence, b.sequence) == (2, 3)
    assert a.entry_ids == [1, 2] and b.entry_ids == [3]
    assert store.import_pdq_hashes(np.zeros((5, 32), np.uint8)) == 5
    sequence, removed = store.withdraw_case(a.case_id, a.pin)
    assert sequence == 3 + 5 + 2 == store.last_sequence()
    assert sorted(removed.image_ids.tolist()) == [1]
    assert entry_of_frame(removed.frame_ids).tolist() == [2, 2, 2]
    assert removed.md5_ids.tolist() == [1]
    rows = store.load_all()
    assert rows.sequence == 10
    assert sorted(rows.image_ids.tolist()) == [3, 4, 5, 6, 7, 8]
    assert len(rows.frame_ids) == 0 and len(rows.md5_ids) == 0


def test_submitted_rows_equal_loaded_rows(store, tmp_path):
    case = store.submit_case([image(1, md5=b"a" * 16), video(4, 2), image(5)])
    store.close()
    loaded = Store(tmp_path / "list.db").load_all()
    for field in ("image_ids", "image_hashes", "frame_ids", "frame_hashes", "video_entries",
                  "video_frame_counts", "md5_ids", "md5s"):
        assert np.array_equal(getattr(case.added, field), getattr(loaded, field)), field
    assert loaded.sequence == case.sequence


def test_bulk_import_round_trip_with_progress(store, monkeypatch):
    import hashmatch.server.store as store_module
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
    with pytest.raises(PermissionDenied, match="9 attempts left"):
        store.case_status(case.case_id, "x")
    assert store.case_status(case.case_id, case.pin).image_count == 1
    for _ in range(10):
        with pytest.raises(PermissionDenied, match="wrong PIN"):
            store.case_status(case.case_id, "x")
    with pytest.raises(PermissionDenied, match="locked"):
        store.case_status(case.case_id, case.pin)


def test_platform_names_are_unique(store):
    key = store.add_platform("a")
    assert store.platform_for_key(key) == "a"
    assert store.platform_for_key(key + "x") is None
    with pytest.raises(InvalidRequest, match="already exists"):
        store.add_platform("a")
