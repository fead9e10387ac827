"""Duplicate poisoning: copies of one hash are stored and answered once, so they change nothing
for platforms (issue 13). The copies go in through the keeper (the store and the follower, as
SubmitCase does, without 1,000 anonymous calls through the rate limits); platforms ask over
real gRPC. A ListState-level oracle covers random lists with duplicates, holds and disputes."""
import numpy as np
import pytest

from hashmatch.core.holds import EntryHolds
from hashmatch.server.listing import ListState, run_query
from hashmatch.server.media import Image, ListRows, Query
from hashmatch.core.signals import SIGNAL_PDQ, SIGNAL_VPDQ
from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc
from test_feedback import platform_key
from hashmatch.clients.mirror import ListMirror
from test_replication import replicate_key, same_as_primary, wait_until
from test_server import hits, match


def near(hash_: np.ndarray, *bits: int) -> np.ndarray:
    """The hash with the given bit positions flipped."""
    out = np.unpackbits(hash_.copy())
    out[list(bits)] ^= 1
    return np.packbits(out)


def photos(*hashes) -> list[Image]:
    return [Image(md5=None, pdq=bytes(h), quality=90) for h in hashes]


def answer_of(response) -> list[tuple]:
    return [(m.position, m.entry_id, m.distance, m.same_hash_entries)
            for m in response.matches], list(response.truncated_positions)


def test_a_thousand_copies_change_nothing_for_platforms(start_server, random_hashes, connect):
    server = start_server(max_matches_per_hash=4, max_matches_per_batch=16, max_batch_hashes=8)
    stubs, keeper, state = connect(server), server.app.keeper, server.app.state
    poisoned, far, noise = random_hashes(3, seed=31)
    # Real entries: three within 1-3 bits of the poisoned hash, one elsewhere.
    real = keeper.submit_case(photos(near(poisoned, 7), near(poisoned, 8, 9),
                                     near(poisoned, 1, 2, 3), far)).entry_ids
    first = keeper.submit_case(photos(poisoned)).entry_ids
    batch = np.stack([near(poisoned, 200), far, noise, poisoned]).tobytes()
    before = answer_of(match(stubs, batch))
    assert before[0][:4] == [(0, first[0], 1, 1), (0, real[0], 2, 1), (0, real[1], 3, 1),
                             (0, real[2], 4, 1)]
    assert before[1] == []

    copies = keeper.submit_case(photos(*[poisoned] * 999)).entry_ids
    after = answer_of(match(stubs, batch))
    shown = min(first + copies)
    assert after == ([(p, shown if e == first[0] else e, d, 1000 if e == first[0] else n)
                      for p, e, d, n in before[0]], before[1])
    assert state.counts()["pdq"] == 1004 and state.stored_counts()["pdq"] == 5


def test_matching_stops_only_after_the_last_holder_is_withdrawn(start_server, random_hashes,
                                                                 connect):
    server = start_server()
    stubs, keeper = connect(server), server.app.keeper
    shared, other = random_hashes(2, seed=32)
    cases = [keeper.submit_case(photos(*[shared] * n, other)) for n in (3, 1, 2)]
    holders = sorted(e for c in cases for e in c.entry_ids[:-1])
    for case in cases:
        response = match(stubs, shared.tobytes())
        assert hits(response) == [(0, holders[0], 0)]
        assert response.matches[0].same_hash_entries == len(holders)
        keeper.withdraw_case(case.case_id, case.pin)
        holders = [e for e in holders if e not in case.entry_ids]
    assert hits(match(stubs, shared.tobytes())) == []
    assert server.app.state.stored_counts()["pdq"] == 0


def test_a_held_holder_does_not_hide_the_others(start_server, random_hashes, connect):
    server = start_server()
    stubs, app = connect(server), server.app
    shared = random_hashes(1, seed=33)[0]
    entries = sorted(app.keeper.submit_case(photos(shared, shared, shared)).entry_ids)
    app.follower.catch_up(app.store.hold([entries[0]], 1, "test"))
    response = match(stubs, shared.tobytes())
    assert [(m.entry_id, m.same_hash_entries) for m in response.matches] == [(entries[1], 2)]
    app.follower.catch_up(app.store.hold(entries[1:], 1, "test"))
    assert hits(match(stubs, shared.tobytes())) == []


def oracle(queries, listed: dict, held: set, disputed: set, threshold: int, cap: int):
    """The rule by brute force: per query, every distinct listed hash in reach with a holder
    not held, one match each naming the smallest such holder, with how many holders are not
    held and whether any of them is disputed; the `cap` first by (distance, entry named), and
    truncated where more are left (held entries take no capped place)."""
    by_hash: dict[bytes, list[int]] = {}
    for entry, h in sorted(listed.items()):
        by_hash.setdefault(h, []).append(entry)
    out, truncated = [], []
    for p, q in enumerate(queries):
        qi = int.from_bytes(bytes(q), "little")
        rows = []
        for h, ids in by_hash.items():
            d = (qi ^ int.from_bytes(h, "little")).bit_count()
            free = [e for e in ids if e not in held]
            if d <= threshold and free:
                rows.append((p, d, free[0], len(free), bool(disputed.intersection(free))))
        rows.sort()
        truncated.append(bool(cap) and len(rows) > cap)
        out += rows[:cap or None]
    return out, truncated


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_listing_matches_a_brute_force_reference_with_duplicates(seed):
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 256, size=(6, 32), dtype=np.uint8)
    ids = rng.choice(2**62, size=80, replace=False).astype(np.uint64)
    hashes = np.stack([near(pool[i], *rng.choice(256, rng.integers(0, 3), replace=False))
                       for i in rng.integers(0, len(pool), size=80)])
    state = ListState(search_threads=1)
    state.load(ListRows(image_ids=ids, image_hashes=hashes, sequence=1))
    held = set(rng.choice(ids, 15, replace=False).tolist())
    disputed = set(rng.choice(ids, 15, replace=False).tolist())
    state.holds = EntryHolds()
    state.holds.load(held, disputed)
    queries = np.concatenate([pool, rng.integers(0, 256, size=(2, 32), dtype=np.uint8)])
    listed = {int(i): bytes(h) for i, h in zip(ids, hashes)}
    for cap in (0, 2, 5):
        found = run_query(state, Query(SIGNAL_PDQ, queries, 4, max_per_hash=cap))
        got = list(zip(found.positions.tolist(), found.distances.tolist(),
                       found.entry_ids.tolist(), found.holders.tolist(),
                       found.disputed.tolist()))
        assert (got, found.truncated.tolist()) == oracle(queries, listed, held, disputed, 4, cap)


def test_photo_and_frame_holders_stay_with_their_matches_through_the_merge():
    """Photos and video frames are searched apart and merged under one cap; each match keeps
    the holder count of its own hash (video 40 is held, so its frame hash has 2 holders)."""
    rng = np.random.default_rng(4)
    a, b = rng.integers(0, 256, size=(2, 32), dtype=np.uint8)
    videos = np.array([40, 41, 42, 43], np.uint64)
    state = ListState(search_threads=1)
    state.load(ListRows(
        image_ids=np.array([7, 5, 9, 30], np.uint64),
        image_hashes=np.stack([near(a, 1, 2), near(a, 1, 2), near(a, 1, 2), near(a, 3, 4, 5)]),
        video_entries=videos, video_frame_counts=np.array([1, 1, 1, 1]),
        frame_ids=videos << np.uint64(24),
        frame_hashes=np.stack([near(a, 9), near(a, 9), b, near(a, 9)]), sequence=1))
    for cap, want in ((0, [(41, 1, 2, SIGNAL_VPDQ), (5, 2, 3, SIGNAL_PDQ),
                           (30, 3, 1, SIGNAL_PDQ)]),
                      (2, [(41, 1, 2, SIGNAL_VPDQ), (5, 2, 3, SIGNAL_PDQ)])):
        state.holds.load([40], [])
        found = run_query(state, Query(SIGNAL_PDQ, a[None], 8, include_video_frames=True,
                                       max_per_hash=cap))
        assert list(zip(found.entry_ids.tolist(), found.distances.tolist(),
                        found.holders.tolist(), found.signal_types.tolist())) == want
        assert found.truncated.tolist() == [cap == 2]


def test_a_flood_holds_every_holder_of_the_hash(start_server, random_hashes, connect):
    """The flood breaker counts the one entry a match names; when it trips, the other holders
    of that hash are held with it, or each would take its turn flooding."""
    server = start_server(flood_limit=3, flood_window_s=60)
    stubs, keeper = connect(server), server.app.keeper
    shared, other = random_hashes(2, seed=34)
    copies = keeper.submit_case(photos(shared, shared, shared)).entry_ids
    keeper.submit_case(photos(other))
    for bit in range(4):        # four distinct uploads near the shared hash: the fourth trips
        assert len(match(stubs, near(shared, bit).tobytes()).matches) == 1
    assert hits(match(stubs, shared.tobytes())) == []
    assert sorted(server.app.state.holds.held) == sorted(copies)
    assert len(match(stubs, other.tobytes()).matches) == 1


def test_a_list_mirror_answers_copies_once_as_the_server_does(start_server, random_hashes,
                                                              connect):
    server = start_server(sync_heartbeat_s=0.2)
    stubs, app = connect(server), server.app
    shared = random_hashes(1, seed=35)[0]
    copies = sorted(app.keeper.submit_case(photos(*[shared] * 5)).entry_ids)
    (real,) = app.keeper.submit_case(photos(near(shared, 5))).entry_ids
    app.follower.catch_up(app.store.hold([copies[0]], 1, "test"))
    key = replicate_key(server.db_path, roles=("replicate", "match"))
    with ListMirror(server.target, key[0][1], threads=1) as copy:
        wait_until(lambda: same_as_primary(server.target, key, lambda: copy.sequence,
                                           copy.digest), what="the copy to catch up")
        found = copy.match(shared[None])
        assert list(zip(found.entry_ids.tolist(), found.distances.tolist(),
                        found.same_hash_entries.tolist())) == [(copies[1], 0, 4), (real, 1, 1)]
    response = match(stubs, shared.tobytes())
    assert [(m.entry_id, m.distance, m.same_hash_entries) for m in response.matches] == [
        (copies[1], 0, 4), (real, 1, 1)]


def test_a_suppression_holds_every_holder_of_a_hash_near_it(start_server, random_hashes,
                                                             connect):
    server = start_server()
    stubs, keeper = connect(server), server.app.keeper
    shared, other = random_hashes(2, seed=36)
    copies = keeper.submit_case(photos(shared, shared, shared)).entry_ids
    keeper.submit_case(photos(other))
    admin = platform_key(server.db_path, "reviewer", ("admin",))
    answer = pb_grpc.ReviewStub(stubs.channel).Suppress(
        pb.SuppressRequest(pdq_hashes=near(shared, 2).tobytes()), metadata=admin)
    assert sorted(answer.held_entries) == sorted(copies)
    assert hits(match(stubs, shared.tobytes())) == []
    assert len(match(stubs, other.tobytes()).matches) == 1
