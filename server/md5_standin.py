"""A dict-based MD5 index with `hashmatch.core.Md5Index`'s API, used until the core one lands.

listing.py prefers the core class; this one exists only so the server works before it does.
"""
import threading

import numpy as np


class DictMd5Index:
    def __init__(self):
        self._lock = threading.Lock()
        self._by_md5: dict[bytes, set[int]] = {}
        self._by_id: dict[int, bytes] = {}

    def __len__(self):
        return len(self._by_id)

    def add(self, ids, md5s):
        md5s = np.ascontiguousarray(md5s, np.uint8).reshape(-1, 16)
        with self._lock:
            for i, h in zip(np.asarray(ids, np.uint64).tolist(), md5s):
                key = h.tobytes()
                self._by_md5.setdefault(key, set()).add(i)
                self._by_id[i] = key

    def remove(self, ids):
        with self._lock:
            for i in np.asarray(ids, np.uint64).tolist():
                key = self._by_id.pop(i, None)
                if key is not None:
                    self._by_md5[key].discard(i)

    def lookup(self, queries):
        queries = np.ascontiguousarray(queries, np.uint8).reshape(-1, 16)
        offsets, out = [0], []
        with self._lock:
            for q in queries:
                hits = sorted(self._by_md5.get(q.tobytes(), ()))
                out.extend(hits)
                offsets.append(len(out))
        return np.asarray(offsets, np.int64), np.asarray(out, np.uint64)
