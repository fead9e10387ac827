"""core/holds.py (the held/disputed table every copy keeps) and server/flood.py (the breaker's
sliding window), as libraries: the rules without a server in between."""
import numpy as np

from hashmatch.core.holds import OP_DISPUTE, OP_HOLD, OP_REINSTATE, OP_REMOVE, EntryHolds
from hashmatch.server.flood import FloodBreaker

ADD = 1


def screened(holds: EntryHolds, entries):
    keep, disputed = holds.screen(np.asarray(entries, np.uint64))
    if keep is None:
        return list(entries), []
    ids = np.asarray(entries)
    return ids[keep].tolist(), ids[keep & disputed].tolist()


def test_log_ops_apply_in_order_and_replay_alike():
    log = [(1, 5, ADD, 1), (6, 1, OP_DISPUTE, 2), (7, 1, OP_HOLD, 3), (8, 1, OP_HOLD, 4),
           (9, 1, OP_REINSTATE, 4), (10, 1, OP_DISPUTE, 5), (11, 1, OP_REMOVE, 5)]
    flag, hold = EntryHolds(), EntryHolds(hold_disputed=True)
    for holds in (flag, hold):
        holds.apply(log)
    assert screened(flag, [1, 2, 3, 4, 5]) == ([1, 2, 4, 5], [2])
    assert screened(hold, [1, 2, 3, 4, 5]) == ([1, 4, 5], [])
    replayed = EntryHolds()
    for row in log:             # one row at a time gives the same table as one batch
        replayed.apply([row])
    assert (replayed.held, replayed.disputed) == (flag.held, flag.disputed) == ({3}, {2})
    snapshot = EntryHolds()
    snapshot.load(np.asarray([3], np.uint64), np.asarray([2], np.uint64))
    assert screened(snapshot, [2, 3]) == ([2], [2])
    assert EntryHolds().screen(np.asarray([1], np.uint64)) == (None, None)


def test_breaker_counts_distinct_uploads_in_a_sliding_window():
    now = [0.0]
    tripped = []
    breaker = FloodBreaker(3, 10.0, lambda entry, count: tripped.append((entry, count)),
                           clock=lambda: now[0])
    entries = np.asarray([7], np.uint64)
    for key in (b"a", b"b", b"c", b"a", b"b"):      # three distinct uploads: at the limit
        breaker.observe(entries, [key])
    assert tripped == []
    now[0] = 11.0                                    # a, b and c fell out of the window
    breaker.observe(entries, [b"d"])
    breaker.observe(entries, [b"e"])
    breaker.observe(entries, [b"f"])
    assert tripped == []
    breaker.observe(entries, [b"g"])                 # the fourth within 10 s
    assert tripped == [(7, 4)]
    breaker.observe(entries, [b"h"])                 # its hold is on the way: not again
    assert tripped == [(7, 4)]
    now[0] = 25.0                                    # a window later (say, reinstated)
    for key in (b"1", b"2", b"3", b"4"):
        breaker.observe(entries, [key])
    assert tripped == [(7, 4), (7, 4)]
    off = FloodBreaker(0, 10.0, lambda entry, count: tripped.append(entry))
    off.observe(entries, [b"x"])
    assert len(tripped) == 2
