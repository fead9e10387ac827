"""Capped answers that a filter applied after the search cannot empty.

An index caps each query's hits while it collects them (the cost bound of a batch). A filter
applied afterwards (held entries, core/holds.py) may then drop hits that took capped places, so
a listed entry further away would be lost although fewer than `cap` hits were kept. The fix
here: search with cap + 1, filter, and search again, with the cap doubled, only the queries
whose kept hits do not prove the answer yet. A query is settled when its search was not cut
(every hit seen), or when it kept more than `cap` hits and its cap-th kept hit is ordered no
later than the last hit the search returned (everything the search left out comes after it).

Cost: a query searched again has met at least as many dropped hits as its cap doubled, so its
last cap is below 2 x (cap + 1 + dropped hits ahead of its answer) and all its passes together
build under twice that; with nothing dropped, one pass of cap + 1.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, NamedTuple

import numpy as np

from hashmatch.core.hits import Hits


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
    rows, limit, done = np.arange(queries, dtype=np.int64), cap + 1, []
    while True:
        found = search(rows, limit)
        counts = np.diff(found.hits.offsets)
        settled = ~np.asarray(found.more, bool)
        full = np.flatnonzero(counts > cap)
        if len(full):
            at = found.hits.offsets[full] + cap - 1
            settled[full] |= _at_most([k[at] for k in found.keys],
                                      [b[full] for b in found.bound])
        done.append((rows, settled, *_first(found, settled, counts, cap)))
        if settled.all():
            break
        rows, limit = rows[~settled], 2 * limit
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
