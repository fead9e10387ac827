"""StreamingMatcher: matches millions of a platform's hashes over one MatchStream.

One unary call per hash would spend its time on round trips. Here the caller adds
`(item_id, hash)` pairs; they are packed into batches (sealed when full, or after a short
linger so a trickle of uploads is not held back), and up to `max_in_flight` batches travel at
once, the window the server announces in GetListInfo. Answers may come back in any order: each
echoes its batch's sequence, which maps its positions back to the caller's item ids. A batch the
server rejects comes back as an outcome with `error` set; the stream and the other batches go
on. Only a broken stream (server gone, bad API key) ends everything, and then every unanswered
or unsent batch is reported with that error rather than silently dropped.
"""
from __future__ import annotations

import collections
import queue
import threading
import time
from dataclasses import dataclass
from typing import Callable, Hashable, Iterable, Iterator

import grpc
import numpy as np

from hashmatch.clients.client import (
    HASH_BYTES, FeedbackReport, HashmatchClient, HashmatchError, MatchHit, signal_type_of)
from hashmatch.v1 import hashmatch_pb2 as pb

DEFAULT_BATCH_SIZE = 4096
MAX_BATCH_SIZE = 16384
DEFAULT_LINGER_S = 0.020
_END = object()


@dataclass(frozen=True)
class BatchOutcome:
    """The answer to one batch: which items it held and what they matched.

    `matches` holds `(item_id, MatchHit)` pairs for the hits only (items without a hit do not
    appear). `error` is set when the server rejected the batch or the stream broke before it
    was answered; then `matches` is empty and every id in `item_ids` is unanswered.
    """

    sequence: int
    item_ids: tuple
    matches: tuple[tuple[Hashable, MatchHit], ...]
    error: HashmatchError | None = None

    def reports(self, action: str, hash_of: Callable[[Hashable], bytes], **fields
                ) -> list[FeedbackReport]:
        """One FeedbackReport per hit, for `client.report_actions`: `hash_of(item_id)` gives
        the item's hash; the report id is "item_id/entry_id", so reporting the same outcome
        again is counted once. `fields`: reason_code, tags, occurred_unix."""
        return [FeedbackReport(f"{item_id}/{hit.entry_id}", hit.entry_id, hash_of(item_id),
                               action, kind=hit.kind, **fields)
                for item_id, hit in self.matches]


class StreamingMatcher:
    """Batches `(item_id, hash)` pairs onto one MatchStream and hands back `BatchOutcome`s.

    Typical use::

        with StreamingMatcher(client, "pdq") as matcher:
            for outcome in matcher.match(pairs):   # pairs: iterable of (item_id, 32-byte hash)
                ...

    Or feed from one thread with `add` / `add_many` and `close()`, and read `results()` in
    another. `add` blocks while the window is full and two more batches wait (backpressure).
    The server's limits (GetListInfo) cap `batch_size` (at `max_batch_hashes`) and
    `max_in_flight`; None takes the server's window as it is.
    """

    def __init__(self, client: HashmatchClient, signal_type="pdq", *,
                 batch_size: int = DEFAULT_BATCH_SIZE, linger: float = DEFAULT_LINGER_S,
                 threshold: int | None = None, max_in_flight: int | None = None,
                 include_video_frames: bool = False):
        self._signal_type = signal_type_of(signal_type)
        if self._signal_type not in (pb.SIGNAL_TYPE_PDQ, pb.SIGNAL_TYPE_MD5):
            raise ValueError("a StreamingMatcher matches pdq or md5 hashes; match videos "
                             "one by one with HashmatchClient.match_video")
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH_SIZE}, got {batch_size}")
        if linger <= 0:
            raise ValueError(f"linger must be > 0 seconds, got {linger}")
        if max_in_flight is not None and max_in_flight < 1:
            raise ValueError(f"max_in_flight must be >= 1, got {max_in_flight}")
        info = client.list_info()
        if info.max_in_flight:
            max_in_flight = min(max_in_flight or info.max_in_flight, info.max_in_flight)
        if info.max_batch_hashes:
            batch_size = min(batch_size, info.max_batch_hashes)
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self._hash_bytes = HASH_BYTES[self._signal_type]
        self._target = client.target
        self._linger = linger
        self._threshold = threshold
        self._include_video_frames = include_video_frames

        self._cond = threading.Condition()
        self._buffer_ids: list = []
        self._buffer_hashes = bytearray()
        self._buffer_started = 0.0
        self._sealed: collections.deque[tuple[tuple, bytes]] = collections.deque()
        self._next_sequence = 1
        self._pending: dict[int, tuple] = {}
        self._stream_error: HashmatchError | None = None
        self._closing = False
        self._finished = threading.Event()

        self._requests: queue.SimpleQueue = queue.SimpleQueue()
        self._outcomes: queue.SimpleQueue = queue.SimpleQueue()
        self._call = client.open_match_stream(self._request_iterator())
        for target, name in ((self._send_batches, "sender"), (self._read_answers, "reader")):
            threading.Thread(target=target, name=f"hashmatch-stream-{name}", daemon=True).start()

    # ------------------------------------------------------------------ feeding

    def add(self, item_id: Hashable, hash: bytes) -> None:
        """Queues one hash (32 bytes PDQ / 16 bytes MD5, or a uint8 row) under `item_id`."""
        if not isinstance(hash, bytes):
            hash = np.ascontiguousarray(hash, dtype=np.uint8).tobytes()
        if len(hash) != self._hash_bytes:
            raise ValueError(f"hash for item {item_id!r} must be {self._hash_bytes} bytes, "
                             f"got {len(hash)}")
        with self._cond:
            self._wait_for_room()
            if not self._buffer_ids:
                self._start_buffer()
            self._buffer_ids.append(item_id)
            self._buffer_hashes += hash
            if len(self._buffer_ids) >= self.batch_size:
                self._seal()

    def add_many(self, item_ids: Iterable[Hashable], hashes) -> None:
        """Queues many hashes at once: `hashes` packed bytes or uint8[n, 32|16], ids beside."""
        if isinstance(hashes, np.ndarray):
            hashes = np.ascontiguousarray(hashes, dtype=np.uint8).tobytes()
        packed = memoryview(bytes(hashes))
        ids = list(item_ids)
        if len(packed) != len(ids) * self._hash_bytes:
            raise ValueError(f"{len(ids)} ids need {len(ids) * self._hash_bytes} bytes of "
                             f"hashes, got {len(packed)}")
        start = 0
        while start < len(ids):
            with self._cond:
                self._wait_for_room()
                if not self._buffer_ids:
                    self._start_buffer()
                take = min(self.batch_size - len(self._buffer_ids), len(ids) - start)
                self._buffer_ids.extend(ids[start:start + take])
                self._buffer_hashes += packed[start * self._hash_bytes:
                                              (start + take) * self._hash_bytes]
                start += take
                if len(self._buffer_ids) >= self.batch_size:
                    self._seal()

    def flush(self) -> None:
        """Sends the partly filled batch as soon as the window allows, not after the linger."""
        with self._cond:
            self._check_open()
            self._seal()

    def close(self) -> None:
        """Sends what is buffered and ends the request side; answers still arrive in results()."""
        with self._cond:
            if not self._closing and self._stream_error is None:
                self._seal()
            self._closing = True
            self._cond.notify_all()

    def cancel(self) -> None:
        """Abandons the stream; unanswered batches come back with a CANCELLED error."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._call.cancel()

    def __enter__(self) -> "StreamingMatcher":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.cancel()
        self._finished.wait()

    # ------------------------------------------------------------------ answers

    def results(self) -> Iterator[BatchOutcome]:
        """Yields each batch's outcome as it arrives, until the stream has ended (after close)."""
        while True:
            outcome = self._outcomes.get()
            if outcome is _END:
                self._outcomes.put(_END)
                return
            yield outcome

    def match(self, pairs: Iterable[tuple[Hashable, bytes]]) -> Iterator[BatchOutcome]:
        """Feeds `pairs` from a helper thread, closes, and yields outcomes as they come.

        Raises the stream's `HashmatchError` at the end if the stream broke (the outcomes
        already yielded then include the unanswered batches, each with that error).
        """
        feed_error: list[BaseException] = []

        def feed() -> None:
            try:
                for item_id, hash in pairs:
                    self.add(item_id, hash)
                self.close()
            except BaseException as error:  # handed to the caller's thread below
                feed_error.append(error)
                self.cancel()

        feeder = threading.Thread(target=feed, name="hashmatch-stream-feeder", daemon=True)
        feeder.start()
        yield from self.results()
        feeder.join()
        if feed_error and not isinstance(feed_error[0], HashmatchError):
            raise feed_error[0]
        if self.error is not None:
            raise self.error

    @property
    def error(self) -> HashmatchError | None:
        """Why the stream broke (then some items were never answered), or None."""
        return self._stream_error

    # ------------------------------------------------------------------ internals
    # Callers fill the buffer and seal full batches; one sender thread numbers and sends them
    # (and sends a lingering partial batch); one reader thread takes answers. All state is
    # guarded by self._cond.

    def _check_open(self) -> None:
        if self._stream_error is not None:
            raise self._stream_error
        if self._closing:
            raise RuntimeError("the StreamingMatcher is closed")

    def _wait_for_room(self) -> None:
        """Backpressure: at most two sealed batches wait for the window."""
        self._check_open()
        while len(self._sealed) >= 2:
            self._cond.wait()
            self._check_open()

    def _start_buffer(self) -> None:
        self._buffer_started = time.monotonic()
        self._cond.notify_all()  # the sender starts timing the linger

    def _seal(self) -> None:
        if self._buffer_ids:
            self._sealed.append((tuple(self._buffer_ids), bytes(self._buffer_hashes)))
            self._buffer_ids = []
            self._buffer_hashes = bytearray()
            self._cond.notify_all()

    def _next_batch(self) -> tuple[tuple, bytes] | None:
        """Waits for a batch that may be sent now; None when there is nothing more to send."""
        while True:
            if self._stream_error is not None:
                return None
            has_room = len(self._pending) < self.max_in_flight
            if self._sealed and has_room:
                return self._sealed.popleft()
            if self._closing and not self._sealed:
                return None
            wait = None
            if self._buffer_ids and not self._sealed:
                wait = self._buffer_started + self._linger - time.monotonic()
                if wait <= 0 and has_room:
                    self._seal()
                    continue
                wait = wait if wait > 0 else None
            self._cond.wait(wait)

    def _send_batches(self) -> None:
        try:
            while True:
                with self._cond:
                    batch = self._next_batch()
                    if batch is None:
                        return
                    item_ids, hashes = batch
                    sequence = self._next_sequence
                    self._next_sequence += 1
                    self._pending[sequence] = item_ids
                    self._cond.notify_all()
                request = pb.MatchRequest(sequence=sequence, signal_type=self._signal_type,
                                          hashes=hashes,
                                          include_video_frames=self._include_video_frames)
                if self._threshold is not None:
                    request.threshold = self._threshold
                self._requests.put(request)
        finally:
            self._requests.put(_END)

    def _request_iterator(self) -> Iterator[pb.MatchRequest]:
        while (request := self._requests.get()) is not _END:
            yield request

    def _read_answers(self) -> None:
        try:
            for response in self._call:
                with self._cond:
                    item_ids = self._pending.pop(response.sequence, None)
                    self._cond.notify_all()
                if item_ids is not None:
                    self._outcomes.put(_outcome(response, item_ids))
            broken = HashmatchError(grpc.StatusCode.INTERNAL,
                                    "the server ended the stream before answering this batch")
        except grpc.RpcError as error:
            broken = HashmatchError.from_rpc_error(error, self._target)
        with self._cond:
            unanswered = [(sequence, ids) for sequence, ids in sorted(self._pending.items())]
            unsent = list(self._sealed) + ([(tuple(self._buffer_ids), b"")]
                                           if self._buffer_ids else [])
            if unanswered or unsent or not self._closing:
                self._stream_error = broken
            self._pending.clear()
            self._sealed.clear()
            self._buffer_ids = []
            self._closing = True
            self._cond.notify_all()
        for sequence, item_ids in unanswered:
            self._outcomes.put(BatchOutcome(sequence, item_ids, (), broken))
        for item_ids, _ in unsent:
            self._outcomes.put(BatchOutcome(0, item_ids, (), broken))
        self._finished.set()
        self._outcomes.put(_END)


def _outcome(response: pb.MatchResponse, item_ids: tuple) -> BatchOutcome:
    if response.HasField("error") and response.error.code != 0:
        return BatchOutcome(response.sequence, item_ids, (),
                            HashmatchError.from_status(response.error))
    matches = []
    for match in response.matches:
        hit = MatchHit.from_proto(match)
        if hit.position < len(item_ids):
            matches.append((item_ids[hit.position], hit))
    return BatchOutcome(response.sequence, item_ids, tuple(matches))

