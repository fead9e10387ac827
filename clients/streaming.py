"""StreamingMatcher: matches millions of a platform's hashes over MatchStreams to one or more servers.

One unary call per hash would spend its time on round trips. Here the caller adds
`(item_id, hash)` pairs; they are packed into batches (sealed when full, or after a short
linger so a trickle of uploads is not held back) and sent on streams: `streams_per_server` for
each server address the client was given, each over its own channel (a single target, such as
one dns:/// name, gets them on its balanced channel, where round_robin puts each stream on a
healthy server). Each stream keeps up to `max_in_flight` batches unanswered, the window the
server announces in GetListInfo. Answers may come back in any order: each echoes its batch's
sequence, which maps its positions back to the caller's item ids.

A batch the server rejects comes back as an outcome with `error` set; the streams and the other
batches go on. When a stream breaks because its server went away (UNAVAILABLE, or the connection
closed under it, as at the server's maximum connection age), its unanswered batches go back to
the front of the queue for the other streams and it reconnects in the background: every item
still gets exactly one outcome. Only a refusal every server would repeat (a bad API key), or no
stream working for `reconnect_s`, ends everything; then every unanswered or unsent batch is
reported with that error rather than silently dropped.
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
    HASH_BYTES, FeedbackReport, HashmatchClient, HashmatchError, InvalidInput, MatchHit,
    signal_type_of)
from hashmatch.v1 import hashmatch_pb2 as pb

DEFAULT_BATCH_SIZE = 4096
MAX_BATCH_SIZE = 16384
DEFAULT_LINGER_S = 0.020
# How long every stream may be down at once before the matcher gives up.
DEFAULT_RECONNECT_S = 10.0
BACKOFF_S = (0.05, 2.0)
# Codes that say the server or the connection went away, not that the request was wrong.
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.ABORTED}
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


@dataclass
class _Batch:
    item_ids: tuple
    hashes: bytes
    sequence: int = 0  # given when first sent; a re-sent batch keeps it


class _Stream:
    """One MatchStream call: its request queue and the batches it has not answered yet."""

    def __init__(self, lane: "_Lane"):
        self.lane = lane
        self.requests: queue.SimpleQueue = queue.SimpleQueue()
        self.pending: dict[int, _Batch] = {}
        self.alive = True
        self.call = lane.client.open_match_stream(self._request_iterator())

    def _request_iterator(self) -> Iterator[pb.MatchRequest]:
        while (request := self.requests.get()) is not _END:
            yield request


class _Lane:
    """A place for one stream at a time, on one client; it reopens the stream when it breaks."""

    def __init__(self, client: HashmatchClient):
        self.client = client
        self.server = client.servers
        self.stream: _Stream | None = None
        self.answered = 0


class StreamingMatcher:
    """Batches `(item_id, hash)` pairs onto MatchStreams and hands back `BatchOutcome`s.

    Typical use::

        with StreamingMatcher(client, "pdq") as matcher:
            for outcome in matcher.match(pairs):   # pairs: iterable of (item_id, 32-byte hash)
                ...

    Or feed from one thread with `add` / `add_many` and `close()`, and read `results()` in
    another. `add` blocks while every window is full and a few more batches wait
    (backpressure). The server's limits (GetListInfo) cap `batch_size` (at `max_batch_hashes`)
    and `max_in_flight` (per stream); None takes the server's window as it is. A client of
    several servers gets `streams_per_server` streams on each.
    """

    def __init__(self, client: HashmatchClient, signal_type="pdq", *,
                 batch_size: int = DEFAULT_BATCH_SIZE, linger: float = DEFAULT_LINGER_S,
                 threshold: int | None = None, max_in_flight: int | None = None,
                 include_video_frames: bool = False, streams_per_server: int = 1,
                 reconnect_s: float = DEFAULT_RECONNECT_S):
        self._signal_type = signal_type_of(signal_type)
        if self._signal_type not in (pb.SIGNAL_TYPE_PDQ, pb.SIGNAL_TYPE_MD5):
            raise InvalidInput("a StreamingMatcher matches pdq or md5 hashes; match videos "
                             "one by one with HashmatchClient.match_video")
        if not 1 <= batch_size <= MAX_BATCH_SIZE:
            raise InvalidInput(f"batch_size must be 1..{MAX_BATCH_SIZE}, got {batch_size}")
        if linger <= 0:
            raise InvalidInput(f"linger must be > 0 seconds, got {linger}")
        if max_in_flight is not None and max_in_flight < 1:
            raise InvalidInput(f"max_in_flight must be >= 1, got {max_in_flight}")
        if streams_per_server < 1:
            raise InvalidInput(f"streams_per_server must be >= 1, got {streams_per_server}")
        if reconnect_s < 0:
            raise InvalidInput(f"reconnect_s must be >= 0 seconds, got {reconnect_s}")
        info = client.list_info()
        if info.max_in_flight:
            max_in_flight = min(max_in_flight or info.max_in_flight, info.max_in_flight)
        if info.max_batch_hashes:
            batch_size = min(batch_size, info.max_batch_hashes)
        self.batch_size = batch_size
        self.max_in_flight = max_in_flight
        self._hash_bytes = HASH_BYTES[self._signal_type]
        self._linger = linger
        self._threshold = threshold
        self._include_video_frames = include_video_frames
        self._reconnect_s = reconnect_s

        self._cond = threading.Condition()
        self._buffer_ids: list = []
        self._buffer_hashes = bytearray()
        self._buffer_started = 0.0
        self._sealed: collections.deque[_Batch] = collections.deque()
        self._next_sequence = 1
        self._stream_error: HashmatchError | None = None
        self._last_break: HashmatchError | None = None
        self._down_since: float | None = None
        self._closing = False
        self._finished = threading.Event()
        self.streams_opened = 0  # MatchStream calls opened, reconnections included
        self.resent_batches = 0  # batches put back after their stream broke, to send again
        self._outcomes: queue.SimpleQueue = queue.SimpleQueue()

        self._own_clients = ([client.for_address(address) for address in client.addresses]
                             if len(client.addresses) > 1 else [])
        self._lanes = [_Lane(lane_client) for lane_client in self._own_clients or [client]
                       for _ in range(streams_per_server)]
        self._running = len(self._lanes)
        with self._cond:
            for lane in self._lanes:
                self._open(lane)
        for number, lane in enumerate(self._lanes):
            threading.Thread(target=self._run_lane, args=(lane,), daemon=True,
                             name=f"hashmatch-stream-{number}").start()

    # ------------------------------------------------------------------ feeding

    def add(self, item_id: Hashable, hash: bytes) -> None:
        """Queues one hash (32 bytes PDQ / 16 bytes MD5, or a uint8 row) under `item_id`."""
        if not isinstance(hash, bytes):
            hash = np.ascontiguousarray(hash, dtype=np.uint8).tobytes()
        if len(hash) != self._hash_bytes:
            raise InvalidInput(f"hash for item {item_id!r} must be {self._hash_bytes} bytes, "
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
            raise InvalidInput(f"{len(ids)} ids need {len(ids) * self._hash_bytes} bytes of "
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
        """Abandons the streams; unanswered batches come back with a CANCELLED error."""
        with self._cond:
            self._fail(HashmatchError(grpc.StatusCode.CANCELLED,
                                      "the caller cancelled the match stream"))

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
        """Why the streams broke (then some items were never answered), or None."""
        return self._stream_error

    def answered_per_server(self) -> dict[str, int]:
        """Batches each server has answered so far: {"127.0.0.1:50051": 12, ...}."""
        with self._cond:
            counts: dict[str, int] = {}
            for lane in self._lanes:
                counts[lane.server] = counts.get(lane.server, 0) + lane.answered
            return counts

    # ------------------------------------------------------------------ internals
    # Callers fill the buffer and seal full batches. Each lane runs one stream at a time: a
    # sender thread takes sealed batches while the stream's window has room (and sends a
    # lingering partial batch) and ends the request side once all is sent after close(); the
    # lane's own thread reads the answers and, when the stream ends with batches unanswered,
    # puts them back and reconnects. All state is guarded by self._cond.

    def _check_open(self) -> None:
        if self._stream_error is not None:
            raise self._stream_error
        if self._closing:
            raise RuntimeError("the StreamingMatcher is closed")

    def _wait_for_room(self) -> None:
        """Backpressure: at most one sealed batch a stream, and one more, wait for a window."""
        self._check_open()
        while len(self._sealed) > len(self._lanes):
            self._cond.wait()
            self._check_open()

    def _start_buffer(self) -> None:
        self._buffer_started = time.monotonic()
        self._cond.notify_all()  # the senders start timing the linger

    def _seal(self) -> None:
        if self._buffer_ids:
            self._sealed.append(_Batch(tuple(self._buffer_ids), bytes(self._buffer_hashes)))
            self._buffer_ids = []
            self._buffer_hashes = bytearray()
            self._cond.notify_all()

    def _all_answered(self) -> bool:
        return (not self._buffer_ids and not self._sealed
                and not any(lane.stream and lane.stream.pending for lane in self._lanes))

    def _done(self) -> bool:
        return self._stream_error is not None or (self._closing and self._all_answered())

    def _next_batch(self, stream: _Stream) -> _Batch | None:
        """Waits for a batch `stream` may send now; None when the stream should end."""
        while True:
            if not stream.alive or self._done() or (self._closing and not self._sealed):
                return None
            has_room = len(stream.pending) < self.max_in_flight
            if self._sealed and has_room:
                batch = self._sealed.popleft()
                if not batch.sequence:
                    batch.sequence = self._next_sequence
                    self._next_sequence += 1
                stream.pending[batch.sequence] = batch
                self._cond.notify_all()
                return batch
            wait = None
            if self._buffer_ids and not self._sealed:
                wait = self._buffer_started + self._linger - time.monotonic()
                if wait <= 0 and has_room:
                    self._seal()
                    continue
                wait = wait if wait > 0 else None
            self._cond.wait(wait)

    def _send_batches(self, stream: _Stream) -> None:
        try:
            while True:
                with self._cond:
                    batch = self._next_batch(stream)
                if batch is None:
                    return
                request = pb.MatchRequest(sequence=batch.sequence, signal_type=self._signal_type,
                                          hashes=batch.hashes,
                                          include_video_frames=self._include_video_frames)
                if self._threshold is not None:
                    request.threshold = self._threshold
                stream.requests.put(request)
        finally:
            stream.requests.put(_END)

    def _open(self, lane: _Lane) -> None:
        lane.stream = _Stream(lane)
        self.streams_opened += 1
        self._down_since = None
        threading.Thread(target=self._send_batches, args=(lane.stream,), daemon=True,
                         name="hashmatch-stream-sender").start()

    def _read_answers(self, stream: _Stream) -> HashmatchError | None:
        """Reads `stream` to its end: None if it ended cleanly, else why it broke."""
        try:
            for response in stream.call:
                with self._cond:
                    batch = stream.pending.pop(response.sequence, None)
                    if batch is not None:
                        stream.lane.answered += 1
                    self._cond.notify_all()
                if batch is not None:
                    self._outcomes.put(_outcome(response, batch.item_ids))
            return None
        except grpc.RpcError as error:
            return HashmatchError.from_rpc_error(error, stream.lane.server)

    def _run_lane(self, lane: _Lane) -> None:
        backoff = BACKOFF_S[0]
        try:
            while lane.stream is not None:
                answered = lane.answered
                broke = self._read_answers(lane.stream)
                with self._cond:
                    self._put_back(lane)
                    if self._done():
                        return
                    broke = broke or HashmatchError(
                        grpc.StatusCode.UNAVAILABLE,
                        f"the server at {lane.server} ended the stream before answering")
                    if broke.code not in _RETRYABLE:
                        self._fail(broke)
                        return
                    self._last_break = broke
                    if self._down_since is None and not any(l.stream for l in self._lanes):
                        self._down_since = time.monotonic()
                backoff = BACKOFF_S[0] if lane.answered > answered else min(
                    backoff * 2, BACKOFF_S[1])
                if not self._reconnect(lane, backoff):
                    return
        finally:
            self._lane_ended()

    def _put_back(self, lane: _Lane) -> None:
        """The broken stream's unanswered batches go first in line, in their first order."""
        stream, lane.stream = lane.stream, None
        stream.alive = False
        for sequence in sorted(stream.pending, reverse=True):
            self._sealed.appendleft(stream.pending[sequence])
        self.resent_batches += len(stream.pending)
        stream.pending = {}
        self._cond.notify_all()

    def _reconnect(self, lane: _Lane, backoff: float) -> bool:
        """Waits until the lane's server is SERVING and opens a new stream; False: give up."""
        while True:
            with self._cond:
                self._cond.wait(backoff)
                while self._closing and not self._sealed and not self._done():
                    self._cond.wait()  # all sent: a stream is needed again only if one breaks
                if self._done():
                    return False
                down_for = time.monotonic() - (self._down_since or time.monotonic())
                if down_for > self._reconnect_s:
                    self._fail(self._last_break)
                    return False
            if lane.client.wait_ready(backoff):
                with self._cond:
                    if self._done():
                        return False
                    self._open(lane)
                    return True
            backoff = min(backoff * 2, BACKOFF_S[1])

    def _fail(self, error: HashmatchError) -> None:
        """Ends everything: each batch not answered yet comes back with `error`."""
        unanswered = sorted((batch for lane in self._lanes if lane.stream
                             for batch in lane.stream.pending.values()),
                            key=lambda batch: batch.sequence)
        unanswered += list(self._sealed)
        if self._buffer_ids:
            unanswered.append(_Batch(tuple(self._buffer_ids), b""))
        if unanswered or not self._closing:
            self._stream_error = error
        for batch in unanswered:
            self._outcomes.put(BatchOutcome(batch.sequence, batch.item_ids, (), error))
        for lane in self._lanes:
            if lane.stream:
                lane.stream.pending = {}
                lane.stream.alive = False
                lane.stream.call.cancel()
        self._sealed.clear()
        self._buffer_ids = []
        self._buffer_hashes = bytearray()
        self._closing = True
        self._cond.notify_all()

    def _lane_ended(self) -> None:
        with self._cond:
            self._running -= 1
            if self._running:
                return
        for own_client in self._own_clients:
            own_client.close()
        self._finished.set()
        self._outcomes.put(_END)


def _outcome(response: pb.MatchResponse, item_ids: tuple) -> BatchOutcome:
    if response.HasField("error") and response.error.code != 0:
        return BatchOutcome(response.sequence, item_ids, (),
                            HashmatchError.from_status(response.error))
    matches = []
    for hit in MatchHit.hits_of(response):
        if hit.position < len(item_ids):
            matches.append((item_ids[hit.position], hit))
    return BatchOutcome(response.sequence, item_ids, tuple(matches))

