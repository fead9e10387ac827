"""Capped answers that a filter applied after the search cannot empty.

An index caps each query's hits while it collects them (the cost bound of a batch). A filter
applied afterwards (held entries, core/holds.py) may then drop hits that took capped places, so
a listed entry further away would be lost although fewer than `cap` hits were kept. The fix
here: search with cap + 1, filter, and search again, the cap GROWTH times larger, only the
queries whose kept hits do not prove the answer yet. A query is settled when its search was not
cut (every hit seen), or when it kept more than `cap` hits and its cap-th kept hit is ordered
no later than the last hit the search returned (everything the search left out comes after it).

Cost: a search that leaves a query unsettled returned at most `cap` hits the filter kept as
they were (cap + 1 of them settle it), so its cap was at most cap + H, H being the hits within
the query's reach that the filter drops or names otherwise (entries held). The last cap is
below GROWTH x (cap + 1 + H), and all passes together build under 4/3 of that (GROWTH 4), about
5.3 x (cap + 1 + H) hits. With nothing dropped: one pass of cap + 1. Each pass is a search, so
GROWTH trades hits for passes: a query near 1,000 held hashes with cap 16 takes 4 passes (8
doubling). A pass never holds more hits than the first did (the later ones search the queries
left in groups that fit), except for a single query whose cap alone is larger.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import numpy as np

from hashmatch.core.hits import Hits

GROWTH = 4


class Pass(NamedTuple):
    """One search of k queries, filtered. keys: arrays[m] whose tuples order the kept hits
    within each query (as `hits` is ordered). bound: arrays[k], the key of the last hit the
    search returned for each query, before the filter (see `last_keys`); read only where
    `more`: the search stopped at its cap, so more hits exist, kept or not, ordered after
    `bound`. facts: array[m, ...] the caller carries with each kept hit."""
    hits: Hits
    facts: np.ndarray
    keys: tuple
    more: np.ndarray
    bound: tuple


def last_keys(offsets: np.ndarray, *keys: np.ndarray) -> tuple:
    """For hits in CSR `offsets` (int64[k+1]) with per-hit keys, each key of every query's last
    hit (the first hit's value where a query has none; never read there)."""
    last = np.maximum(offsets[1:] - 1, 0)
    return tuple(k[last] if len(k) else np.zeros(len(last), k.dtype) for k in keys)


def closest_kept(search: Callable[[np.ndarray, int], Pass], queries: int,
                 cap: int) -> tuple[Hits, np.ndarray]:
    """(hits, facts): for each of `queries` queries, the first `cap` hits the filter keeps in
    key order (all of them when cap is 0), truncated[i] set exactly when query i has more.
    search(rows int64[k], c): a Pass over the queries `rows`, searched with cap c (0: none)."""
    if not cap:
        found = search(np.arange(queries, dtype=np.int64), 0)
        return dataclasses.replace(found.hits, truncated=np.zeros(queries, bool)), found.facts
    # No search builds more hits at once than the first (cap + 1 a query): later ones, with
    # larger caps, take the queries left in groups that fit.
    budget = (cap + 1) * queries
    pending, done = [(np.arange(queries, dtype=np.int64), cap + 1)], []
    while pending:
        rows, limit = pending.pop()
        found = search(rows, limit)
        counts = np.diff(found.hits.offsets)
        settled = ~np.asarray(found.more, bool)
        full = np.flatnonzero(counts > cap)
        if len(full):
            at = found.hits.offsets[full] + cap - 1
            settled[full] |= _at_most([k[at] for k in found.keys],
                                      [b[full] for b in found.bound])
        done.append((rows, settled, *_first(found, settled, counts, cap)))
        left, limit = rows[~settled], GROWTH * limit
        group = max(1, budget // limit)
        pending += [(left[i:i + group], limit) for i in range(0, len(left), group)]
    if len(done) == 1:
        return done[0][2], done[0][3]
    return _spliced(done, queries)


def _at_most(a: list, b: list) -> np.ndarray:
    """bool[n]: tuple (a[0][i], a[1][i], ...) <= (b[0][i], ...), in lexicographic order."""
    result = np.ones(len(a[0]), bool)
    for x, y in zip(reversed(a), reversed(b)):
        result = (x < y) | ((x == y) & result)
    return result


def _first(found: Pass, settled: np.ndarray, counts: np.ndarray, cap: int):
    """(hits, facts): the first `cap` kept hits of each settled query, with its flag."""
    hits = found.hits
    if settled.all() and not (counts > cap).any():      # the common case: nothing to cut
        return dataclasses.replace(hits, truncated=np.zeros(len(counts), bool),
                                   part=None), found.facts
    positions = hits.positions()
    rank = np.arange(len(hits)) - hits.offsets[positions]
    keep = settled[positions] & (rank < cap)
    return (dataclasses.replace(hits.select(keep), truncated=counts > cap, part=None),
            found.facts[keep])


def _spliced(done: list, queries: int) -> tuple[Hits, np.ndarray]:
    """The settled answers of every pass as one result over all queries, in query order."""
    positions = np.concatenate([rows[hits.positions()] for rows, _, hits, _ in done])
    order = np.argsort(positions, kind="stable")
    offsets = np.zeros(queries + 1, np.int64)
    np.cumsum(np.bincount(positions, minlength=queries), out=offsets[1:])
    truncated = np.zeros(queries, bool)
    for rows, settled, hits, _ in done:
        truncated[rows[settled]] = hits.truncated[settled]
    hits = Hits(offsets, np.concatenate([h.ids for _, _, h, _ in done])[order],
                np.concatenate([h.distances for _, _, h, _ in done])[order], truncated)
    return hits, np.concatenate([facts for *_, facts in done])[order]
