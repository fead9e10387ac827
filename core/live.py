"""Live id -> record tables behind HashIndex and Md5Index: immutable snapshots, atomic swap.

A snapshot is an immutable base (records sorted by id, searched by a compiled engine), a sorted
array of dead base rows (tombstones) and a small delta of new records searched by brute force.
Writers serialise on a lock, build the next snapshot and publish it with one attribute store;
readers take `snapshot()` once per search and never lock, so they never see a half-applied
change. When the delta or the tombstones grow, a background thread builds a new base from a
snapshot and replays the changes made meanwhile before publishing it.

Ids follow dict semantics: adding an id that is present replaces its record; within one add the
last occurrence of an id wins; removing an unknown id does nothing.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

DELTA_LIMIT = 16384


@dataclass(frozen=True)
class Snapshot:
    """One consistent version of the table. Arrays are never written after publication."""

    base_ids: np.ndarray      # ascending, unique; uint32[N] when all fit (see narrow_ids)
    base_records: np.ndarray  # records of base rows, same order
    engine: Any               # built from (base_ids, base_records) by the table's builder
    dead: np.ndarray          # int64[k], ascending: base rows removed since the base was built
    delta_ids: np.ndarray     # uint64[d], ascending, unique, not live in the base
    delta_records: np.ndarray

    def __len__(self) -> int:
        return len(self.base_ids) - len(self.dead) + len(self.delta_ids)

    def base_ids_of(self, rows: np.ndarray) -> np.ndarray:
        """The uint64 ids of base rows."""
        return self.base_ids[rows].astype(np.uint64, copy=False)

    def base_rows_of(self, ids: np.ndarray) -> np.ndarray:
        """The base rows (int64, ascending by id) holding any of the uint64 `ids`."""
        base = self.base_ids
        if not len(base) or not len(ids):
            return np.zeros(0, np.int64)
        if base.dtype != ids.dtype:  # a narrowed base: compare in its dtype, without a copy
            ids = ids[ids <= np.iinfo(base.dtype).max].astype(base.dtype)
        pos = np.searchsorted(base, ids)
        pos[pos == len(base)] = 0
        return pos[base[pos] == ids].astype(np.int64)

    def items(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids uint64[n] ascending, records[n]): every live row, e.g. to compare two tables."""
        live = np.ones(len(self.base_ids), bool)
        live[self.dead] = False
        ids = np.concatenate([self.base_ids[live].astype(np.uint64), self.delta_ids])
        order = np.argsort(ids, kind="stable")
        records = np.concatenate([self.base_records[live], self.delta_records])
        return ids[order], take_rows(records, order)

    def live_base_rows(self, rows: np.ndarray) -> np.ndarray:
        """Boolean mask: which of `rows` (base rows) are not tombstoned."""
        if not len(self.dead) or not len(rows):
            return np.ones(len(rows), bool)
        pos = np.searchsorted(self.dead, rows)
        pos[pos == len(self.dead)] = 0
        return self.dead[pos] != rows


def narrow_ids(sorted_ids: np.ndarray) -> np.ndarray:
    """Ascending uint64 ids as uint32 when the largest fits: 4 bytes a hash, a twelfth of
    HashIndex's memory at 10M hashes. Readers widen them back (Snapshot.base_ids_of)."""
    if len(sorted_ids) and int(sorted_ids[-1]) <= np.iinfo(np.uint32).max:
        return sorted_ids.astype(np.uint32)
    return sorted_ids


def last_wins(ids: np.ndarray, records: np.ndarray):
    """Keeps the last occurrence of each id (dict semantics for one batch)."""
    if len(ids) < 2:
        return ids, records
    _, first_in_reversed = np.unique(ids[::-1], return_index=True)
    keep = np.sort(len(ids) - 1 - first_in_reversed)
    if len(keep) == len(ids):
        return ids, records
    return ids[keep], records[keep]


class LiveTable:
    """Holds the current Snapshot; see the module docstring for the concurrency rules."""

    def __init__(self, build_engine: Callable[[np.ndarray, np.ndarray], Any],
                 empty_records: np.ndarray, delta_limit: int = DELTA_LIMIT):
        self._build_engine = build_engine
        self.delta_limit = delta_limit
        ids = np.zeros(0, np.uint64)
        self._snapshot = Snapshot(ids, empty_records, build_engine(ids, empty_records),
                                  np.zeros(0, np.int64), ids, empty_records)
        self._lock = threading.Lock()
        self._merge_thread: threading.Thread | None = None
        self._log: list | None = None
        self.merges = 0

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def add(self, ids: np.ndarray, records: np.ndarray) -> None:
        if len(ids) > max(self.delta_limit, len(self._snapshot.base_ids)):
            # A batch bigger than the base goes straight into a new base: one sort, no delta.
            self._rebuild(ids, records)
            return
        # Copies: the change log may replay them after the caller reused its arrays.
        ids, records = last_wins(ids.copy(), records.copy())
        with self._lock:
            self._publish(_apply_add(self._snapshot, ids, records), ("add", ids, records))
            self._maybe_start_merge()

    def remove(self, ids: np.ndarray) -> None:
        ids = ids.copy()
        with self._lock:
            self._publish(_apply_remove(self._snapshot, ids), ("remove", ids))
            self._maybe_start_merge()

    def compact(self) -> None:
        """Builds a new base from everything now in the table (blocks writers, not readers)."""
        self._rebuild(None, None)

    def _rebuild(self, ids, records) -> None:
        while True:
            self.wait_merged()
            with self._lock:
                # A merge is only started under the lock, so none can start until we publish.
                if self._merge_thread is not None:
                    continue
                snap = self._snapshot
                if ids is not None or len(snap.dead) or len(snap.delta_ids):
                    self._snapshot = self._merged(snap, ids, records)
                    self.merges += 1
                return

    def wait_merged(self) -> None:
        """Waits for a background merge, if one is running, to publish its base."""
        thread = self._merge_thread
        if thread is not None:
            thread.join()

    def _publish(self, snap: Snapshot, op) -> None:
        if self._log is not None:
            self._log.append(op)
        self._snapshot = snap

    def _maybe_start_merge(self) -> None:
        snap = self._snapshot
        dead_limit = max(self.delta_limit, len(snap.base_ids) // 32)
        if self._merge_thread is not None:
            return
        if len(snap.delta_ids) <= self.delta_limit and len(snap.dead) <= dead_limit:
            return
        self._log = []
        thread = threading.Thread(target=self._background_merge, args=(snap,),
                                  name="hashmatch-merge", daemon=True)
        # Started before it is published (join() needs a started thread); it cannot finish
        # before we release the lock, since it publishes under it.
        thread.start()
        self._merge_thread = thread

    def _background_merge(self, snap: Snapshot) -> None:
        try:
            merged = self._merged(snap)
        except BaseException:
            with self._lock:
                self._log, self._merge_thread = None, None
            raise
        with self._lock:
            for op in self._log or []:
                merged = (_apply_add(merged, op[1], op[2]) if op[0] == "add"
                          else _apply_remove(merged, op[1]))
            self._snapshot = merged
            self._log, self._merge_thread = None, None
            self.merges += 1

    def _merged(self, snap: Snapshot, ids: np.ndarray | None = None,
                records: np.ndarray | None = None) -> Snapshot:
        """A snapshot whose base holds everything live in `snap`, plus (ids, records) added
        on top with dict semantics."""
        live = np.ones(len(snap.base_ids), bool)
        live[snap.dead] = False
        id_parts = [snap.base_ids[live] if len(snap.dead) else snap.base_ids, snap.delta_ids]
        record_parts = [snap.base_records[live] if len(snap.dead) else snap.base_records,
                        snap.delta_records]
        if ids is not None:
            id_parts.append(ids)
            record_parts.append(records)
        all_ids = np.concatenate(id_parts)
        # Among equal ids the one added last ends its run (stable order); only that one is kept.
        order = stable_argsort(all_ids)
        sorted_ids = all_ids[order]
        keep = np.ones(len(order), bool)
        keep[:-1] = sorted_ids[:-1] != sorted_ids[1:]
        if not keep.all():
            order, sorted_ids = order[keep], sorted_ids[keep]
        merged_records = _gather(record_parts, order)
        empty_ids = np.zeros(0, np.uint64)
        sorted_ids = narrow_ids(sorted_ids)
        return Snapshot(sorted_ids, merged_records,
                        self._build_engine(sorted_ids, merged_records),
                        np.zeros(0, np.int64), empty_ids, merged_records[:0])


def stable_argsort(ids: np.ndarray) -> np.ndarray:
    """np.argsort(ids, kind="stable") for uint64 ids, faster when ids leave room for the
    position: (id << bits | position) values are sorted by NumPy's SIMD sort and unpacked."""
    n = len(ids)
    bits = max(1, int(n - 1).bit_length())
    if n and int(ids.max()) < (1 << (64 - bits)):
        packed = (ids << np.uint64(bits)) | np.arange(n, dtype=np.uint64)
        packed.sort()
        return (packed & np.uint64((1 << bits) - 1)).astype(np.int64)
    return np.argsort(ids, kind="stable")


def take_rows(records: np.ndarray, order: np.ndarray) -> np.ndarray:
    """records[order] for a C-contiguous 2-d array, moving each row as one opaque item (several
    times faster than NumPy's row-wise fancy indexing)."""
    rows = np.ascontiguousarray(records)
    item = rows.view(np.dtype((np.void, rows.shape[1] * rows.itemsize))).ravel()
    return np.take(item, order).view(rows.dtype).reshape(len(order), rows.shape[1])


def _gather(parts: list[np.ndarray], order: np.ndarray) -> np.ndarray:
    """np.concatenate(parts)[order] without building the concatenation when there is one part."""
    parts = [p for p in parts if len(p)] or parts[:1]
    return take_rows(parts[0] if len(parts) == 1 else np.concatenate(parts), order)


def _apply_remove(snap: Snapshot, ids: np.ndarray) -> Snapshot:
    if not len(ids):
        return snap
    dead = snap.dead
    found = snap.base_rows_of(ids)
    if len(found):
        dead = np.union1d(dead, found)
    delta_ids, delta_records = snap.delta_ids, snap.delta_records
    if len(delta_ids):
        keep = ~np.isin(delta_ids, ids)
        if not keep.all():
            delta_ids, delta_records = delta_ids[keep], delta_records[keep]
    return Snapshot(snap.base_ids, snap.base_records, snap.engine, dead, delta_ids,
                    delta_records)


def _apply_add(snap: Snapshot, ids: np.ndarray, records: np.ndarray) -> Snapshot:
    snap = _apply_remove(snap, ids)
    # The delta stays ordered by id (it is small: at most about delta_limit rows), so that a
    # search's (distance, row) order over it is (distance, id), as over the base.
    delta_ids = np.concatenate([snap.delta_ids, ids])
    order = np.argsort(delta_ids, kind="stable")
    return Snapshot(snap.base_ids, snap.base_records, snap.engine, snap.dead, delta_ids[order],
                    take_rows(np.concatenate([snap.delta_records, records]), order))
