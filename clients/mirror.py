"""ListMirror: an in-process copy of the list, for platforms that match inside their own services.

It keeps core indexes (photo PDQ, video-frame PDQ, MD5) in step with a server through the
Replication Sync stream, read by sync_client.SyncClient (the reader every copy shares): a
snapshot (its digest checked before it replaces the copy), then change batches applied in order. A broken stream resumes from the last token; a refused token
(FAILED_PRECONDITION: the list was restored, or the copy was offline past the retention) takes
a snapshot again. `digest()` uses core.replica's canonical form, the one the server reports.

    with ListMirror("hashmatch.example:443", api_key) as copy:
        hits = copy.match(pdq_hashes, threshold=31)
"""
import dataclasses
import logging
import threading
import time

import grpc
import numpy as np

from hashmatch.clients.client import HashmatchError, TlsFiles
from hashmatch.clients.sync_client import SyncClient, entries_of, log_of
from hashmatch.core import HashIndex, Md5Index
from hashmatch.core.holds import EntryHolds
from hashmatch.core.shared import SharedIndex
from hashmatch.core.replica import frame_ids, list_digest
from hashmatch.core.video import FRAME_BITS
from hashmatch.v1 import hashmatch_pb2 as pb

log = logging.getLogger("hashmatch.clients")


@dataclasses.dataclass(frozen=True)
class MirrorMatches:
    """Hits of one batch: parallel arrays (position in the batch, entry id, distance). A listed
    hash answers once, as on the server: entry_id is the smallest entry holding it that is not
    held, same_hash_entries how many such entries hold it."""
    positions: np.ndarray
    entry_ids: np.ndarray
    distances: np.ndarray
    disputed: np.ndarray | None = None    # bool per hit; None when no entry is disputed
    same_hash_entries: np.ndarray | None = None     # int64 per hit

    def __len__(self):
        return len(self.entry_ids)


class _Indexes:
    """The copied list: three core indexes (each hash stored once) and each video's frame
    count."""

    def __init__(self, threads: int):
        self.images = SharedIndex(HashIndex(threads=threads))
        self.frames = SharedIndex(HashIndex(threads=threads))
        self.md5 = SharedIndex(Md5Index())
        self.videos: dict[int, int] = {}

    def add(self, rows: dict) -> None:
        if len(rows["image_ids"]):
            self.images.add(rows["image_ids"], rows["image_hashes"])
        if len(rows["frame_ids"]):
            self.videos.update(zip(rows["video_entries"].tolist(),
                                   rows["video_frame_counts"].tolist()))
            self.frames.add(rows["frame_ids"], rows["frame_hashes"])
        if len(rows["md5_ids"]):
            self.md5.add(rows["md5_ids"], rows["md5s"])

    def digest(self) -> tuple[int, str]:
        return list_digest(self.images.items(), self.frames.items(), self.md5.items())

    def remove(self, entries: np.ndarray) -> None:
        if not len(entries):
            return
        self.images.remove(entries)
        self.md5.remove(entries)
        counts = np.asarray([self.videos.pop(e, 0) for e in entries.tolist()], np.int64)
        if counts.any():    # one index change for all the videos, not one per video
            self.frames.remove(frame_ids(entries[counts > 0], counts[counts > 0]))


def _video_of(frame_ids: np.ndarray) -> np.ndarray:
    return frame_ids >> np.uint64(FRAME_BITS)


class ListMirror:
    """A copy of a server's list in this process, kept in step by a thread reading Sync;
    `match` and `match_md5` search it without a call to the server."""

    def __init__(self, target: str, api_key: str, threads: int = 0,
                 hold_disputed: bool = False, tls: TlsFiles | None = None):
        """target: the server (HOST:PORT); api_key: a key with the 'replicate' role;
        threads: threads one search may use (0 = all cores); hold_disputed: disputed entries
        do not match (else they match with `disputed` set). Held entries never match.
        tls: copy over TLS (and mTLS with a client certificate), as HashmatchClient does."""
        self.holds = EntryHolds(hold_disputed)
        self.target, self._threads = target, threads
        self._lock = threading.Lock()           # held while a batch is applied
        self._list = _Indexes(threads)
        self.sequence = 0
        self.head = 0
        self.token: bytes | None = None
        self._sync = SyncClient(target, api_key, self, tls)
        self._thread: threading.Thread | None = None

    @property
    def error(self) -> grpc.RpcError | None:
        """The last error a Sync stream ended with (None while none has)."""
        return self._sync.error

    # ------------------------------------------------------------ lifecycle

    def start(self, timeout: float | None = 60) -> "ListMirror":
        """Starts copying; waits up to `timeout` s for the first snapshot (None: no wait)."""
        self._thread = threading.Thread(target=self._run, daemon=True, name="hashmatch-mirror")
        self._thread.start()
        if timeout is not None:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        """Waits for the first snapshot. HashmatchError as soon as copying has ended (a refused
        key; TLS settings that do not fit the server, saying what to check); TimeoutError
        (naming the last error) when no snapshot came within `timeout` s."""
        deadline = time.monotonic() + timeout
        while not self._sync.snapshotted.wait(min(0.1, max(0.0, deadline - time.monotonic()))):
            if self.error is not None and self._thread is not None \
                    and not self._thread.is_alive():
                raise HashmatchError.from_rpc_error(self.error, self.target)
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no snapshot from {self.target} within {timeout:g} s"
                                   + (f": {self.error.details()}" if self.error else ""))

    def stop(self) -> None:
        """Stops copying (the copy stays readable as it is)."""
        self._sync.stop()
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _run(self) -> None:
        try:
            self._sync.run()
        except grpc.RpcError as exc:    # a refused key, SetUpFailed: wait_ready reports it
            log.error("the server refused to replicate: %s", exc.details())

    # ------------------------------------------------------------ reading

    def match(self, hashes, threshold: int = 31,
              include_video_frames: bool = False) -> MirrorMatches:
        """PDQ hashes (uint8[n, 32]) against the copy: hits within `threshold` (inclusive);
        with include_video_frames, video frames too (entry_id = the video holding the frame)."""
        hashes = np.ascontiguousarray(hashes, np.uint8).reshape(-1, 32)
        lists = self._list
        parts = [(lists.images, None)] + ([(lists.frames, _video_of)]
                                          if include_video_frames else [])
        found = []
        for index, entry_of in parts:
            hits, holders, disputed = index.answer(index.search(hashes, threshold), self.holds,
                                                   entry_of)
            found.append((hits.positions(), hits.ids, hits.distances, holders, disputed))
        return self._screen(*(np.concatenate(x) for x in zip(*found)))

    def match_md5(self, md5s) -> MirrorMatches:
        """MD5s (uint8[n, 16]) against the copy: exact hits (distance 0)."""
        md5s = np.ascontiguousarray(md5s, np.uint8).reshape(-1, 16)
        hits, holders, disputed = self._list.md5.answer(self._list.md5.search(md5s, 0),
                                                        self.holds)
        return self._screen(hits.positions(), hits.ids, hits.distances, holders, disputed)

    def _screen(self, positions, entry_ids, distances, holders, any_disputed) -> MirrorMatches:
        """Drops hits on held entries, marks those on disputed ones (core/holds.py) and those
        whose hash another disputed entry holds."""
        keep, disputed = self.holds.screen(entry_ids)
        if keep is None:
            return MirrorMatches(positions, entry_ids, distances, None, holders)
        disputed |= any_disputed
        return MirrorMatches(positions[keep], entry_ids[keep], distances[keep], disputed[keep],
                             holders[keep])

    def digest(self) -> tuple[int, str]:
        """(rows, SHA-256 hex) of the copy, comparable with the server's list_digest."""
        with self._lock:
            return self._list.digest()

    def verify(self) -> pb.VerifyCopyResponse:
        """Asks the server whether the copy is exact (`.exact`); `.same_sequence` is False
        while the two are at different sequences (wait for a heartbeat, then ask again)."""
        with self._lock:
            token, (rows, digest) = self.token, self._list.digest()
        return self._sync.stub.VerifyCopy(pb.VerifyCopyRequest(
            resume_token=token, list_digest=digest, digest_rows=rows),
            metadata=self._sync.metadata)

    # ------------------------------------------------------------ SyncClient's copy

    def snapshot(self, rows: dict, end) -> None:
        """Replaces the copy with a snapshot (called by the Sync reader)."""
        fresh = _Indexes(self._threads)
        fresh.add(rows)
        with self._lock:
            self._list, self.sequence, self.token = fresh, end.sequence, end.resume_token
            self.holds.load(rows["held_entries"], rows["disputed_entries"])
            self.head = max(self.head, end.sequence)

    def apply(self, batch, added: dict) -> None:
        """Applies one change batch (called by the Sync reader)."""
        with self._lock:
            self._list.remove(entries_of(batch.removed_entries))
            self._list.add(added)
            self.holds.apply(log_of(batch))
            self.sequence, self.token = batch.last_sequence, batch.resume_token
            self.head = max(self.head, batch.last_sequence)

    def heartbeat(self, message) -> None:
        """Notes the server's head and a newer token (called by the Sync reader)."""
        self.head = max(self.head, message.head_sequence)
        self.token = message.resume_token
