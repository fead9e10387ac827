"""The list keeper against a plain Python model: random cases, withdrawals and a restart.

Drives ListKeeper (store + in-memory list, no gRPC) with random photos and videos (copies of
one hash among them), withdraws some cases, and compares every PDQ / MD5 / frame answer with
loops over the model; then reloads from the store and compares again. Checks the id scheme,
removal, hashes stored once and reload together.
"""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hashmatch.server import credentials
from hashmatch.server.errors import PermissionDenied
from hashmatch.server.keeper import ListKeeper
from hashmatch.core.signals import SIGNAL_MD5, SIGNAL_PDQ, SIGNAL_VPDQ
from hashmatch.server.listing import ListState
from hashmatch.server.media import Image, Video
from hashmatch.server.store import Store


def distance(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def oracle(model, queries: list[bytes], threshold: int, frames_too: bool):
    """[(position, entry, distance, signal)] from loops over the live model entries: each
    distinct hash answers once, naming the smallest entry holding it (a frame hash: the
    smallest video), a video once per query at its closest such frame."""
    photos, frames = {}, {}
    for entry, item in sorted(model.items()):
        if isinstance(item, Image) and item.pdq:
            photos.setdefault(item.pdq, entry)
        if isinstance(item, Video) and frames_too:
            for f in item.frames:
                frames.setdefault(f.tobytes(), entry)
    out = []
    for pos, q in enumerate(queries):
        out += [(pos, entry, distance(q, h), SIGNAL_PDQ) for h, entry in photos.items()
                if distance(q, h) <= threshold]
        videos = {}
        for h, entry in frames.items():
            if distance(q, h) <= threshold:
                videos[entry] = min(videos.get(entry, 257), distance(q, h))
        out += [(pos, entry, d, SIGNAL_VPDQ) for entry, d in videos.items()]
    return sorted(out, key=lambda m: (m[0], m[2], m[1]))


def as_list(matches):
    return list(zip(matches.positions.tolist(), matches.entry_ids.tolist(),
                    matches.distances.tolist(), matches.signal_types.tolist()))


def random_media(rng, pool):
    def near():
        h = np.unpackbits(pool[rng.integers(len(pool))].copy())
        h[rng.choice(256, int(rng.integers(0, 40)), replace=False)] ^= 1
        return np.packbits(h)
    md5 = bytes([int(rng.integers(4))]) * 16 if rng.random() < 0.5 else None
    if rng.random() < 0.6:
        return Image(md5=md5, pdq=near().tobytes(), quality=80)
    frames = np.unique(np.stack([near() for _ in range(int(rng.integers(1, 5)))]), axis=0)
    return Video(md5=md5, frames=frames, qualities=np.full(len(frames), 80, np.uint8))


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1), threshold=st.sampled_from([0, 20, 31, 45]))
def test_keeper_matches_the_model_before_and_after_reload(tmp_path_factory, monkeypatch, seed,
                                                          threshold):
    monkeypatch.setattr(credentials, "SCRYPT_N", 2**4)
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 256, (4, 32), dtype=np.uint8)
    db = tmp_path_factory.mktemp("model") / "list.db"
    keeper = ListKeeper(Store(db), ListState())
    keeper.load()
    model, cases = {}, []
    for _ in range(int(rng.integers(1, 6))):
        media = [random_media(rng, pool) for _ in range(int(rng.integers(1, 4)))]
        case = keeper.submit_case(media)
        model.update(zip(case.entry_ids, media))
        cases.append(case)
    for case in cases:
        if rng.random() < 0.4:
            keeper.withdraw_case(case.case_id, case.pin)
            for entry in case.entry_ids:
                model.pop(entry)

    queries = [pool[i].tobytes() for i in range(len(pool))]
    packed = np.frombuffer(b"".join(queries), np.uint8).reshape(-1, 32)
    md5s = np.frombuffer(b"".join(bytes([i]) * 16 for i in range(4)), np.uint8).reshape(-1, 16)
    want_md5 = sorted((i, min(holders), 0, SIGNAL_MD5) for i in range(4) if (holders := [
        e for e, item in model.items() if item.md5 == bytes([i]) * 16]))

    states = [keeper.state]
    keeper.store.close()
    reloaded = ListKeeper(Store(db), ListState())
    reloaded.load()
    states.append(reloaded.state)
    for state in states:
        for frames_too in (False, True):
            got = as_list(state.match_pdq(packed, threshold, frames_too))
            assert got == oracle(model, queries, threshold, frames_too)
        assert sorted(as_list(state.match_md5(md5s))) == want_md5
    assert states[0].sequence == states[1].sequence
    assert states[0].counts() == states[1].counts()
    reloaded.store.close()


def test_withdrawing_with_a_wrong_pin_changes_nothing(tmp_path):
    keeper = ListKeeper(Store(tmp_path / "list.db"), ListState())
    keeper.load()
    case = keeper.submit_case([Image(md5=b"a" * 16, pdq=None, quality=0)])
    with pytest.raises(PermissionDenied, match="wrong PIN"):
        keeper.withdraw_case(case.case_id, "nope")
    assert keeper.state.counts()["md5"] == 1 and keeper.state.sequence == 1
    keeper.store.close()


def test_pin_hashing_runs_outside_the_order_lock(tmp_path, monkeypatch):
    """scrypt (~50 ms) must not hold the lock that orders every case write."""
    keeper = ListKeeper(Store(tmp_path / "list.db"), ListState())
    keeper.load()
    held_during_scrypt = []
    real_hash_pin = credentials.hash_pin

    def watching_hash_pin(pin, salt=None):
        held_during_scrypt.append(keeper.follower.lock.locked())
        return real_hash_pin(pin, salt)

    monkeypatch.setattr(credentials, "hash_pin", watching_hash_pin)
    case = keeper.submit_case([Image(md5=b"m" * 16, pdq=None, quality=0)])
    keeper.case_status(case.case_id, case.pin)
    keeper.withdraw_case(case.case_id, case.pin)
    assert held_during_scrypt == [False, False, False]
