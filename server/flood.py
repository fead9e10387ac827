"""Flood breaker: an entry that matches too many distinct uploads in a sliding window is held.

A PDQ hash of a near-blank or generic image would otherwise block thousands of innocent uploads
on every platform. Each server counts, per entry, the distinct query hashes that hit it in the
last `window_s` seconds; past `limit`, it calls `trip(entry, count)` once, which writes OP_HOLD
to the change log (outcomes.OutcomeStore.hold) so every server and copy stops matching it.
Only hits are counted (a batch without hits costs one length check), and an entry keeps at most
`limit + 1` upload keys, so memory stays bounded by the entries hit in one window.
"""
import hashlib
import threading
import time

import numpy as np


class FloodBreaker:
    def __init__(self, limit: int, window_s: float, trip, clock=time.monotonic):
        """limit: distinct uploads an entry may match per window (0: off)."""
        self.limit, self.window_s, self._trip, self._clock = limit, window_s, trip, clock
        self._seen: dict[int, dict[bytes, float]] = {}   # entry -> upload key -> last seen
        self._tripped: dict[int, float] = {}             # entry -> when it tripped
        self._lock = threading.Lock()
        self._swept = clock()

    def observe_batch(self, hashes: np.ndarray, matches) -> None:
        """Counts a batch's hits (listing.Matches); the upload behind a hit is its query
        hash (a video query: all its frames)."""
        if not self.limit or not len(matches):
            return
        if matches.query_percent is not None:
            keys = [hashlib.blake2b(hashes.tobytes(), digest_size=16).digest()] * len(matches)
        else:
            keys = [hashes[p].tobytes() for p in matches.positions.tolist()]
        self.observe(matches.entry_ids, keys)

    def observe(self, entry_ids: np.ndarray, upload_keys: list[bytes]) -> None:
        """Counts hits: `entry_ids[i]` matched the upload whose hash is `upload_keys[i]`."""
        if not self.limit or not len(entry_ids):
            return
        now, tripped = self._clock(), []
        with self._lock:
            for entry, key in zip(entry_ids.tolist(), upload_keys):
                if now - self._tripped.get(entry, -self.window_s) < self.window_s:
                    continue        # its hold is on the way (a reinstated one counts again)
                seen = self._seen.setdefault(entry, {})
                seen[key] = now
                if len(seen) > self.limit:
                    for old in [k for k, t in seen.items() if now - t > self.window_s]:
                        del seen[old]
                    if len(seen) > self.limit:
                        tripped.append((entry, len(seen)))
                        self._tripped[entry] = now
                        del self._seen[entry]
            if now - self._swept > self.window_s:
                self._sweep(now)
        for entry, count in tripped:
            self._trip(entry, count)

    def _sweep(self, now: float) -> None:
        """Forgets entries not hit for a whole window."""
        self._swept = now
        for entry in [e for e, seen in self._seen.items()
                      if now - max(seen.values()) > self.window_s]:
            del self._seen[entry]
        self._tripped = {e: t for e, t in self._tripped.items() if now - t < self.window_s}
