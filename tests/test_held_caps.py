"""Held entries take no capped place (issue 13): a few near-variants of a hash, held (a flood,
a suppression, a dispute under "hold"), must not push a real listed entry out of a capped
answer, for photo PDQ (with and without video frames), MD5 and vPDQ (the per-frame cap), and
`truncated` says only that more matches not held exist. Real ListStates; random lists against a
brute-force reference; one case through a real server over gRPC."""
import numpy as np
import pytest

from hashmatch.core import video as vpdq
from hashmatch.core.holds import EntryHolds
from hashmatch.core.signals import SIGNAL_MD5, SIGNAL_PDQ, SIGNAL_VPDQ
from hashmatch.server.listing import ListState, run_query
from hashmatch.server.media import ListRows, Query
from hashmatch.server.outcomes import FLOOD
from test_poisoning import near, photos
from test_server import hits, match

SHIFT = np.uint64(vpdq.FRAME_BITS)


def listing(images: dict = {}, videos: dict = {}, md5s: dict = {}, held=(), disputed=(),
            hold_disputed: bool = False) -> ListState:
    """A loaded ListState: photos {entry: hash}, videos {entry: frames uint8[n, 32]}, MD5s
    {entry: 16 bytes}, and the entries held and disputed."""
    state = ListState(search_threads=1, hold_disputed=hold_disputed)
    entries = np.array(list(videos), np.uint64)
    counts = np.array([len(f) for f in videos.values()], np.int64)
    state.load(ListRows(
        image_ids=np.array(list(images), np.uint64),
        image_hashes=np.array(list(images.values()), np.uint8).reshape(-1, 32),
        video_entries=entries, video_frame_counts=counts,
        frame_ids=np.concatenate([(e << SHIFT) + np.arange(n, dtype=np.uint64)
                                  for e, n in zip(entries, counts)] or [np.zeros(0, np.uint64)]),
        frame_hashes=np.concatenate(list(videos.values()) or [np.zeros((0, 32), np.uint8)]),
        md5_ids=np.array(list(md5s), np.uint64),
        md5s=np.frombuffer(b"".join(md5s.values()), np.uint8).reshape(-1, 16),
        held_entries=np.array(held, np.uint64), disputed_entries=np.array(disputed, np.uint64),
        sequence=1))
    return state


def answer(found) -> tuple[list, list]:
    return (list(zip(found.positions.tolist(), found.entry_ids.tolist(),
                     found.distances.tolist(), found.signal_types.tolist())),
            found.truncated.tolist())


def flags(found) -> list[bool]:
    """Match.disputed of each match."""
    return found.disputed.tolist() if found.disputed is not None else [False] * len(found)


def pdq(state, queries, cap, frames=False, threshold=16):
    return answer(run_query(state, Query(SIGNAL_PDQ, np.asarray(queries, np.uint8), threshold,
                                         include_video_frames=frames, max_per_hash=cap)))


@pytest.fixture
def q():
    return np.random.default_rng(41).integers(0, 256, 32, dtype=np.uint8)


def test_held_variants_closer_than_a_real_entry_do_not_hide_it(q):
    # Six held variants at distances 1-3 (each its own hash), the real entry at 5.
    variants = {e: near(q, *range(100, 100 + (e + 1) // 2)) if e % 2 else
                near(q, *range(200, 200 + e // 2)) for e in range(1, 7)}
    state = listing({**variants, 100: near(q, 1, 2, 3, 4, 5)}, held=list(variants))
    for cap in (1, 2, 4, 6):
        assert pdq(state, [q], cap) == ([(0, 100, 5, SIGNAL_PDQ)], [False])
    # More real entries further away: the cap counts them, and truncated says they exist.
    state = listing({**variants, 100: near(q, 1, 2, 3, 4, 5),
                     **{200 + d: near(q, *range(10, 10 + d)) for d in (6, 7, 8, 9)}},
                    held=list(variants))
    assert pdq(state, [q], 2) == ([(0, 100, 5, SIGNAL_PDQ), (0, 206, 6, SIGNAL_PDQ)], [True])
    assert pdq(state, [q], 5)[1] == [False] and len(pdq(state, [q], 5)[0]) == 5
    # Reinstated, the variants come first again.
    state.holds.load([], [])
    assert pdq(state, [q], 2) == ([(0, 1, 1, SIGNAL_PDQ), (0, 2, 1, SIGNAL_PDQ)], [True])


def test_a_hash_named_by_a_later_holder_does_not_jump_ahead_at_the_cap(q):
    """Ties at the cap's edge: the index orders a distance's hashes by their first holder, but
    an answer names the first holder not held. Hashes whose first holders (5, 6) are held are
    named 900 and 950, after 8 and 9, which a search capped at 2 has not reached yet."""
    h = [near(q, 1, 2), near(q, 3, 4), near(q, 5, 6), near(q, 7, 8)]
    state = listing({5: h[0], 900: h[0], 6: h[1], 950: h[1], 8: h[2], 9: h[3]}, held=[5, 6])
    row = lambda e: (0, e, 2, SIGNAL_PDQ)      # noqa: E731
    assert pdq(state, [q], 1) == ([row(8)], [True])
    assert pdq(state, [q], 2) == ([row(8), row(9)], [True])
    assert pdq(state, [q], 4) == ([row(8), row(9), row(900), row(950)], [False])


def test_held_videos_do_not_hide_a_real_video_or_photo_among_frame_matches(q):
    held = {10 + k: np.stack([near(q, 100 + k, *range(60, 60 + k % 3))]) for k in range(5)}
    state = listing({100: near(q, 1, 2, 3, 4, 5)},
                    {**held, 50: np.stack([near(q, 1, 2, 3, 4), near(q, 1, 2, 3, 4, 5, 6)])},
                    held=list(held))
    assert pdq(state, [q], 2, frames=True) == ([(0, 50, 4, SIGNAL_VPDQ),
                                                (0, 100, 5, SIGNAL_PDQ)], [False])
    assert pdq(state, [q], 1, frames=True) == ([(0, 50, 4, SIGNAL_VPDQ)], [True])
    assert pdq(state, [q], 1) == ([(0, 100, 5, SIGNAL_PDQ)], [False])


def test_md5_copies_held_under_other_entries_leave_the_real_one_named():
    """An MD5 matches one stored hash, so held copies cannot fill a cap; the match names the
    holder not held, and stops only when every holder is held."""
    shared, other = b"s" * 16, b"o" * 16
    state = listing(md5s={1: shared, 2: shared, 9: shared, 5: other}, held=[1, 2])
    md5s = np.frombuffer(shared + other, np.uint8).reshape(2, 16)
    found = run_query(state, Query(SIGNAL_MD5, md5s, 0, max_per_hash=1))
    assert answer(found) == ([(0, 9, 0, SIGNAL_MD5), (1, 5, 0, SIGNAL_MD5)], [False, False])
    assert found.holders.tolist() == [1, 1]
    state.holds.load([1, 2, 9], [])
    assert answer(run_query(state, Query(SIGNAL_MD5, md5s, 0, max_per_hash=1))) == (
        [(1, 5, 0, SIGNAL_MD5)], [False, False])


def test_held_videos_take_no_place_in_a_query_frames_cap():
    """vPDQ counts each query frame's closest max_per_frame listed frames: three held videos
    closer on every frame must not leave the real video with no frame counted."""
    frames = np.random.default_rng(42).integers(0, 256, (8, 32), dtype=np.uint8)
    real = np.stack([near(f, 1, 2, 3, 4, 5) for f in frames])
    held = {10 + k: np.stack([near(f, *range(100, 101 + k)) for f in frames]) for k in range(3)}
    for hold_disputed in (False, True):
        state = listing(videos={**held, 50: real}, held=[10, 11], disputed=[12],
                        hold_disputed=hold_disputed)
        found = state.match_video(frames, None, 16, 80.0, 0.0, max_videos=1, max_per_frame=2)
        want = [50] if hold_disputed else [12]      # a disputed video under "flag" matches
        assert found.entry_ids.tolist() == want and found.truncated.tolist() == [
            not hold_disputed]
        assert found.query_percent.tolist() == [100.0]
        assert flags(found) == [not hold_disputed]


def test_searches_again_hold_no_more_hits_at_once_than_the_first(q):
    """Walking past 200 held variants takes several searches with larger caps; those of more
    than one query hash build no more hits than the first search could (cap + 1 a hash)."""
    rng = np.random.default_rng(45)
    variants = {e: near(q, *rng.choice(np.arange(100, 256), 1 + e % 3, replace=False))
                for e in range(1, 201)}
    state = listing({**variants, 1000: near(q, *range(6))}, held=list(variants))
    queries = np.stack([near(q, b) for b in range(20)])
    searches, search = [], state._images.search

    def counted(part, threshold, limit):
        found = search(part, threshold, limit)
        searches.append((len(part), len(found)))
        return found

    state._images.search = counted
    got, truncated = pdq(state, queries, 4)
    assert got == [(p, 1000, 5 if p < 6 else 7, SIGNAL_PDQ) for p in range(20)]
    assert truncated == [False] * 20
    assert len(searches) > 1 and searches[0] == (20, 20 * 5)
    assert all(hits <= 20 * 5 for n, hits in searches if n > 1)


# ---------------------------------------------------------------------- against a reference

def _distance(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "little") ^ int.from_bytes(b, "little")).bit_count()


def _per_hash(rows: dict, held: set, disputed: set, entry_of, query: bytes, threshold: int):
    """(distance, entry named, any holder named disputed) per distinct hash in reach with a
    holder not held, sorted: the smallest holder not held is named."""
    by_hash: dict[bytes, list[int]] = {}
    for i, h in sorted(rows.items()):
        by_hash.setdefault(h, []).append(i)
    found = []
    for h, ids in by_hash.items():
        free = [entry_of(i) for i in ids if entry_of(i) not in held]
        d = _distance(query, h)
        if d <= threshold and free:
            found.append((d, free[0], bool(disputed.intersection(free))))
    return sorted(found)


def reference(images, frames, held, disputed, queries, threshold, cap, with_frames):
    """Per query: the cap closest photo hashes not held, the cap closest frame hashes not
    held (then one match per video, its closest), the two merged by (distance, entry) and
    capped; truncated where any of the three had more."""
    out, truncated = [], []
    for p, q in enumerate(queries):
        q = bytes(q)
        found = _per_hash(images, held, disputed, lambda i: i, q, threshold)
        cut = len(found) > cap
        rows = [(d, e, SIGNAL_PDQ, x) for d, e, x in found[:cap]]
        if with_frames:
            found = _per_hash(frames, held, disputed, lambda i: i >> vpdq.FRAME_BITS, q,
                              threshold)
            cut |= len(found) > cap
            seen = set()
            for d, e, x in found[:cap]:
                if e not in seen:
                    seen.add(e)
                    rows.append((d, e, SIGNAL_VPDQ, x))
        rows.sort()
        truncated.append(cut or len(rows) > cap)
        out += [(p, e, d, s, x) for d, e, s, x in rows[:cap]]
    return out, truncated


@pytest.mark.parametrize("seed", range(6))
def test_photo_and_frame_answers_match_a_brute_force_reference(seed):
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 256, size=(4, 32), dtype=np.uint8)

    def variant():      # copies (0 bits) and near-variants of a few pool hashes
        return near(pool[rng.integers(len(pool))], *rng.choice(256, rng.integers(0, 4),
                                                               replace=False))

    photo_ids = rng.choice(2**31 - 1, 60, replace=False) + 1
    images = {int(e): variant() for e in photo_ids}
    videos = {int(e): np.stack([variant() for _ in range(rng.integers(1, 4))])
              for e in rng.choice(2**31, 15, replace=False) + 2**31}
    state = listing(images, videos)
    frames = {(e << vpdq.FRAME_BITS) + k: bytes(f) for e, fs in videos.items()
              for k, f in enumerate(fs)}
    entries = list(images) + list(videos)
    queries = np.concatenate([pool, near(pool[0], 50)[None], rng.integers(0, 256, (1, 32),
                                                                          dtype=np.uint8)])
    bytes_images = {e: bytes(h) for e, h in images.items()}
    for _ in range(4):
        held = set(rng.choice(entries, rng.integers(0, 40), replace=False).tolist())
        disputed = set(rng.choice(entries, 8, replace=False).tolist())
        state.holds = EntryHolds()
        state.holds.load(held, disputed)
        for cap in (1, 2, 3, 7):
            for with_frames in (False, True):
                found = run_query(state, Query(SIGNAL_PDQ, queries, 4, max_per_hash=cap,
                                               include_video_frames=with_frames))
                got = [(*row, x) for row, x in zip(answer(found)[0], flags(found))]
                assert (got, found.truncated.tolist()) == reference(
                    bytes_images, frames, held, disputed, queries, 4, cap, with_frames)


@pytest.mark.parametrize("seed", range(4))
def test_video_frame_caps_match_a_brute_force_reference(seed):
    """Each query frame counts its max_per_frame closest listed frames of videos not held,
    by (distance, smallest frame holding the hash, frame); then the share rule."""
    rng = np.random.default_rng(100 + seed)
    pool = rng.integers(0, 256, size=(6, 32), dtype=np.uint8)
    videos = {int(e): np.stack([near(pool[rng.integers(len(pool))],
                                     *rng.choice(256, rng.integers(0, 4), replace=False))
                                for _ in range(rng.integers(2, 6))])
              for e in rng.choice(2**32 - 1, 20, replace=False) + 1}
    state = listing(videos=videos)
    frames = {(e << vpdq.FRAME_BITS) + k: bytes(f) for e, fs in videos.items()
              for k, f in enumerate(fs)}
    primary: dict[bytes, int] = {}
    for i, h in sorted(frames.items()):
        primary.setdefault(h, i)
    query = np.concatenate([pool, near(pool[1], 30)[None]])
    counts = lambda es: np.array([len(videos[int(e)]) for e in es])      # noqa: E731
    for _ in range(3):
        held = set(rng.choice(list(videos), rng.integers(0, 12), replace=False).tolist())
        state.holds = EntryHolds()
        state.holds.load(held, [])
        for cap in (1, 2, 4):
            offsets, ids, distances = [0], [], []
            for f in query:
                row = sorted((_distance(bytes(f), h), primary[h], i) for i, h in frames.items()
                             if _distance(bytes(f), h) <= 5
                             and i >> vpdq.FRAME_BITS not in held)[:cap]
                ids += [i for _, _, i in row]
                distances += [d for d, _, _ in row]
                offsets.append(len(ids))
            want = vpdq.aggregate(offsets, np.array(ids, np.uint64), distances, counts,
                                  min_query=30.0)
            got = state.match_video(query, None, 5, 30.0, 0.0, max_per_frame=cap)
            assert got.entry_ids.tolist() == want.entry_ids.tolist()
            assert got.distances.tolist() == want.distances.tolist()
            assert got.query_percent.tolist() == want.query_percent.tolist()


# ---------------------------------------------------------------------- over gRPC

def test_held_flood_variants_leave_the_real_entry_in_the_answer(start_server, random_hashes,
                                                                connect):
    server = start_server(max_matches_per_hash=2)
    stubs, app = connect(server), server.app
    target = random_hashes(1, seed=43)[0]
    real = app.keeper.submit_case(photos(near(target, 1, 2, 3, 4, 5))).entry_ids[0]
    variants = app.keeper.submit_case(photos(near(target, 7), near(target, 8, 9),
                                             near(target, 10, 11, 12))).entry_ids
    response = match(stubs, target.tobytes())
    assert [m.entry_id for m in response.matches] == list(variants[:2])
    assert list(response.truncated_positions) == [0]
    app.follower.catch_up(app.store.hold(variants, FLOOD, "test: a flood of variants"))
    response = match(stubs, target.tobytes())
    assert hits(response) == [(0, real, 5)] and list(response.truncated_positions) == []
