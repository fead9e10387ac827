"""The reading end of a Sync stream, for copies the server package keeps: a `serve --follow`
server's in-memory list (SyncFollower) and the durable `hashmatch mirror` (mirror.py).

`SyncClient.run()` opens Sync from the copy's last token (a snapshot when it has none), hands
each message to the copy in order, and on a broken stream reconnects from the last token it
applied. FAILED_PRECONDITION (another epoch, below the retention floor) makes the copy take a
snapshot again, logged; a batch that does not follow on from the copy's sequence is refused
(the stream reopens from the token), never skipped. A snapshot whose digest does not match is
discarded and taken again.
"""
import logging
import threading

import grpc
import numpy as np

from hashmatch.core.replica import rows_digest, unpack_rows
from hashmatch.server.media import ListRows
from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc

log = logging.getLogger("hashmatch.server")
RETRY_S = (0.1, 0.25, 0.5, 1.0, 2.0)     # waits between reconnects, the last one repeating
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def decode_rows(message, sequence: int) -> ListRows:
    return ListRows(**unpack_rows(message), sequence=sequence)


def concat_rows(parts: list[ListRows], sequence: int) -> ListRows:
    """One ListRows of the snapshot's chunks."""
    names = [n for n in ListRows.__dataclass_fields__ if n != "sequence"]
    return ListRows(**{n: np.concatenate([getattr(p, n) for p in parts] or
                                         [getattr(ListRows(), n)]) for n in names},
                    sequence=sequence)


def removed_of(batch) -> np.ndarray:
    return entries_of(batch.removed_entries)


def entries_of(packed: bytes) -> np.ndarray:
    """n x uint64 little-endian (SnapshotEnd.held_entries, ...)."""
    return np.frombuffer(packed, "<u8").astype(np.uint64)


def log_of(batch) -> list[tuple[int, int, int, int]]:
    return [tuple(r) for r in np.frombuffer(batch.log, "<u8").reshape(-1, 4).tolist()]


class CopyBroken(Exception):
    """What the stream sent cannot be applied (a gap, a wrong digest): reconnect."""


class SyncClient:
    """Feeds `copy` from a Sync stream. `copy` has `token` (bytes; None: take a snapshot),
    `sequence`, `snapshot(rows: ListRows, end)` (the whole snapshot, digest checked),
    `apply(batch, rows)` and `heartbeat(message)`."""

    def __init__(self, target: str, api_key: str | None, copy):
        self.target, self.copy = target, copy
        self._metadata = [("x-api-key", api_key)] if api_key else []
        self._channel = grpc.insecure_channel(target, options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
        self._stub = pb_grpc.ReplicationStub(self._channel)
        self._stop = threading.Event()
        self._call = None
        self.snapshotted = threading.Event()    # set once the copy has a snapshot applied
        self.connected = False

    def run(self) -> None:
        """Copies until `stop()`; raises on PERMISSION_DENIED / UNAUTHENTICATED (a wrong key
        will not get better by retrying)."""
        failures = 0
        while not self._stop.is_set():
            try:
                self._read(self.copy.token)
                failures = 0
            except grpc.RpcError as exc:
                if self._stop.is_set():
                    return
                code = exc.code()
                if code in (grpc.StatusCode.PERMISSION_DENIED,
                            grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNIMPLEMENTED):
                    raise
                if code == grpc.StatusCode.FAILED_PRECONDITION:
                    log.warning("the source refused our resume token; taking a snapshot again",
                                extra={"fields": {"source": self.target,
                                                  "reason": exc.details()}})
                    self.copy.token = None
                    continue
                log.info("Sync stream ended; resuming from the last token", extra={"fields": {
                    "source": self.target, "code": code.name, "reason": exc.details(),
                    "sequence": self.copy.sequence}})
            except CopyBroken as exc:
                log.warning("Sync stream sent what cannot be applied; reconnecting",
                            extra={"fields": {"source": self.target, "reason": str(exc)}})
            self.connected = False
            self._stop.wait(RETRY_S[min(failures, len(RETRY_S) - 1)])
            failures += 1

    def _read(self, token: bytes | None) -> None:
        self._call = self._stub.Sync(pb.SyncRequest(resume_token=token or b""),
                                     metadata=self._metadata)
        parts, begin = [], None
        for message in self._call:
            self.connected = True
            kind = message.WhichOneof("message")
            if kind == "snapshot_begin":
                parts, begin = [], message.snapshot_begin
            elif kind == "snapshot_chunk":
                parts.append(decode_rows(message.snapshot_chunk.rows, begin.sequence))
            elif kind == "snapshot_end":
                end = message.snapshot_end
                rows = concat_rows(parts, end.sequence)
                rows.held_entries = entries_of(end.held_entries)
                rows.disputed_entries = entries_of(end.disputed_entries)
                parts = []
                if rows_digest(rows) != (end.digest_rows, end.list_digest):
                    raise CopyBroken(f"snapshot at {end.sequence} does not match its digest")
                self.copy.snapshot(rows, end)
                self.snapshotted.set()
            elif kind == "changes":
                batch = message.changes
                if batch.first_sequence != self.copy.sequence + 1:
                    raise CopyBroken(f"batch starts at {batch.first_sequence}, the copy is at "
                                     f"{self.copy.sequence}")
                self.copy.apply(batch, decode_rows(batch.added, batch.last_sequence))
            elif kind == "heartbeat":
                self.copy.heartbeat(message.heartbeat)
            if self._stop.is_set():
                return

    def stop(self) -> None:
        self._stop.set()
        if self._call is not None:
            self._call.cancel()
        self._channel.close()
