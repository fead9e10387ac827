"""How the server shares its cores (server/cores.py): a batch that finds cores idle is cut into
slices searched at once, and its answer is exactly the unsliced one; at full load each batch
gets one core; an error in any slice reaches the caller."""
import threading

import numpy as np
import pytest

from hashmatch.core.index import MIN_INDEXED_HASHES
from hashmatch.server.cores import MIN_SLICE, CoreShare
from hashmatch.server.listing import ListState
from hashmatch.server.media import ListRows, frame_ids


def listed(state: ListState, hashes: np.ndarray, frames: np.ndarray) -> ListState:
    """Photos with ids 1..n and one-frame videos with entry ids n+1.., loaded as a snapshot."""
    videos = np.arange(len(hashes) + 1, len(hashes) + len(frames) + 1, dtype=np.uint64)
    counts = np.ones(len(frames), np.int64)
    state.load(ListRows(image_ids=np.arange(1, len(hashes) + 1, dtype=np.uint64),
                        image_hashes=hashes, frame_ids=frame_ids(videos, counts),
                        frame_hashes=frames, video_entries=videos, video_frame_counts=counts,
                        sequence=1))
    return state


@pytest.fixture(scope="module")
def lists():
    rng = np.random.default_rng(3)
    hashes = rng.integers(0, 256, (MIN_INDEXED_HASHES + 5000, 32), dtype=np.uint8)
    frames = rng.integers(0, 256, (300, 32), dtype=np.uint8)
    # Near-duplicates of listed photos and frames, some matching several entries, among
    # random hashes: 4 slices of 1000 queries, not a multiple of anything.
    queries = rng.integers(0, 256, (4003, 32), dtype=np.uint8)
    picks = rng.choice(len(queries), 600, replace=False)
    queries[picks[:400]] = hashes[rng.integers(0, len(hashes), 400)]
    queries[picks[400:]] = frames[rng.integers(0, len(frames), 200)]
    queries[picks] ^= rng.integers(0, 2, (600, 32), dtype=np.uint8)
    hashes[:20] = queries[picks[0]]     # 20 distinct listed hashes match one query: caps bite
    hashes[np.arange(20), np.arange(20) // 8] ^= (1 << (np.arange(20) % 8)).astype(np.uint8)
    sliced = listed(ListState(search_threads=0, cores=4), hashes, frames)
    whole = listed(ListState(search_threads=1), hashes, frames)
    return sliced, whole, queries


@pytest.mark.parametrize("frames, cap", [(False, 0), (True, 0), (True, 3), (False, 1)])
def test_a_sliced_batch_answers_exactly_as_a_whole_one(lists, frames, cap):
    sliced, whole, queries = lists
    calls = []
    search = sliced._images.search
    sliced._images.search = lambda q, *a: calls.append(len(q)) or search(q, *a)
    try:
        got = sliced.match_pdq(queries, 31, frames, cap)
    finally:
        del sliced._images.search
    want = whole.match_pdq(queries, 31, frames, cap)
    assert len(calls) == 4 and sum(calls) == len(queries)   # four slices, every query once
    assert len(want) >= (600 if frames else 400) and want.truncated.any() == bool(cap)
    for field in ("positions", "entry_ids", "distances", "signal_types", "truncated", "holders"):
        assert np.array_equal(getattr(got, field), getattr(want, field)), field


def test_idle_cores_go_to_one_batch_and_busy_ones_are_not_shared():
    share = CoreShare(4)
    with share.take(100 * MIN_SLICE) as first:
        assert first == 4
        with share.take(100 * MIN_SLICE) as second:
            assert second == 1        # at full load each batch has one core
    with share.take(2 * MIN_SLICE + 1) as small:
        assert small == 2             # a slice is never under MIN_SLICE queries
    with share.take(1) as tiny:
        assert tiny == 1
    with share.take(100 * MIN_SLICE) as again:
        assert again == 4             # all were given back


def test_slices_run_at_once_and_errors_reach_the_caller():
    share = CoreShare(3)
    together = threading.Barrier(3, timeout=10)

    def part(i):
        together.wait()               # only passes when all three run at the same time
        if i == 2:
            raise ValueError("slice 2 failed")
        return i * 10

    with pytest.raises(ValueError, match="slice 2 failed"):
        share.map(part, [0, 1, 2])
    together.reset()
    assert share.map(lambda i: together.wait() * 0 + i, [0, 1, 2]) == [0, 1, 2]
    with pytest.raises(ValueError, match="4 parts for 3 cores"):
        share.map(part, [0, 1, 2, 3])
