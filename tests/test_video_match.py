"""vPDQ aggregation (hashmatch.core.video) against a dumb oracle written from the rule's text."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashmatch.core import HashIndex
from hashmatch.core import video

FRAME_BITS = video.FRAME_BITS


def distance(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def dedupe(frames: list[bytes]) -> list[bytes]:
    seen, out = set(), []
    for f in frames:
        if f not in seen:
            seen.add(f)
            out.append(f)
    return out


def oracle(listed: dict[int, list[bytes]], query: list[bytes], threshold, min_query,
           min_compared):
    """{entry: (query %, compared %, smallest distance)} by the frame-share rule, in loops."""
    query = dedupe(query)
    found = {}
    for entry, frames in listed.items():
        frames = dedupe(frames)
        pairs = [(q, f) for q in query for f in frames if distance(q, f) <= threshold]
        if not pairs:
            continue
        query_pct = 100.0 * len({q for q, _ in pairs}) / len(query)
        compared_pct = 100.0 * len({f for _, f in pairs}) / len(frames)
        if query_pct >= min_query and compared_pct >= min_compared:
            found[entry] = (query_pct, compared_pct, min(distance(q, f) for q, f in pairs))
    return found


def near(base: np.ndarray, bits: int, rng) -> np.ndarray:
    out = np.unpackbits(base.copy())
    out[rng.choice(256, bits, replace=False)] ^= 1
    return np.packbits(out)


def build(listed: dict[int, list[bytes]]) -> HashIndex:
    index = HashIndex()
    for entry, frames in listed.items():
        frames = dedupe(frames)
        ids = (np.uint64(entry) << np.uint64(FRAME_BITS)) | np.arange(len(frames), dtype=np.uint64)
        index.add(ids, np.frombuffer(b"".join(frames), np.uint8).reshape(-1, 32))
    return index


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), videos=st.integers(1, 5), threshold=st.sampled_from(
    [0, 8, 31, 40]), min_query=st.sampled_from([0.0, 50.0, 80.0, 100.0]),
    min_compared=st.sampled_from([0.0, 30.0, 100.0]))
def test_aggregate_equals_oracle(seed, videos, threshold, min_query, min_compared):
    rng = np.random.default_rng(seed)
    pool = rng.integers(0, 256, (6, 32), dtype=np.uint8)
    listed = {}
    for v in range(videos):
        frames = [near(pool[rng.integers(6)], int(rng.integers(0, 45)), rng)
                  for _ in range(int(rng.integers(1, 8)))]
        listed[int(rng.integers(1, 1 << 20)) * 8 + v] = [f.tobytes() for f in frames]
    query = [near(pool[rng.integers(6)], int(rng.integers(0, 45)), rng).tobytes()
             for _ in range(int(rng.integers(1, 9)))]
    query += query[:int(rng.integers(0, 3))]

    counts = {e: len(dedupe(f)) for e, f in listed.items()}
    got = video.match_video(build(listed), np.frombuffer(b"".join(query), np.uint8).reshape(-1, 32),
                            lambda es: np.array([counts[int(e)] for e in es]),
                            threshold=threshold, min_query=min_query, min_compared=min_compared)
    want = oracle(listed, query, threshold, min_query, min_compared)
    assert sorted(got.entry_ids.tolist()) == sorted(want)
    for i, entry in enumerate(got.entry_ids.tolist()):
        q, c, d = want[entry]
        assert got.query_percent[i] == pytest.approx(q)
        assert got.compared_percent[i] == pytest.approx(c)
        assert got.distances[i] == d
    assert got.distances.tolist() == sorted(got.distances.tolist())


def test_prepare_frames_drops_low_quality_and_repeats_keeping_order():
    a, b, c = (np.full(32, v, np.uint8) for v in (1, 2, 3))
    frames, qualities = video.prepare_frames(np.stack([a, b, a, c, b, c]),
                                             [90, 49, 60, 50, 80, 99])
    assert [f[0] for f in frames] == [1, 3, 2]
    assert qualities.tolist() == [90, 50, 80]
    frames, qualities = video.prepare_frames(np.stack([c, c, a]))
    assert [f[0] for f in frames] == [3, 1] and qualities is None
    with pytest.raises(ValueError, match="qualities"):
        video.prepare_frames(np.stack([a, b]), [90])


def test_no_usable_query_frame_is_an_error():
    with pytest.raises(ValueError, match="quality >= 50"):
        video.match_video(HashIndex(), np.zeros((2, 32), np.uint8), lambda es: es,
                          qualities=[10, 20])


def test_threshold_is_inclusive_and_empty_results():
    frame = np.zeros((1, 32), np.uint8)
    listed = {7: [frame.tobytes()]}
    far = frame.copy()
    far[0, :4] = 0xFF  # 32 bits away
    for threshold, expect in [(31, []), (32, [7])]:
        got = video.match_video(build(listed), far, lambda es: np.ones(len(es)),
                                threshold=threshold)
        assert got.entry_ids.tolist() == expect
    empty = video.aggregate(np.zeros(3, np.int64), [], [], lambda es: es)
    assert len(empty) == 0
