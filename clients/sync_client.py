"""The reading end of a Sync stream, for every copy of a list: the in-process ListMirror
(mirror.py), and in the server package a `serve --follow` server's list and the durable
`hashmatch mirror`. It lives with the clients because clients never import the server.

`SyncClient.run()` opens Sync from the copy's last token (a snapshot when it has none), hands
each message to the copy in order, and on a broken stream reconnects from the last token it
applied. FAILED_PRECONDITION (another epoch, below the retention floor) makes the copy take a
snapshot again, logged; a batch that does not follow on from the copy's sequence is refused
(the stream reopens from the token), never skipped. A snapshot whose digest does not match is
discarded and taken again. A refused key ends `run()` with the error: retrying will not help.
"""
import logging
import threading
import types

import grpc
import numpy as np

from hashmatch.clients.client import MAX_MESSAGE_BYTES, open_channel
from hashmatch.core.replica import rows_digest, unpack_rows
from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc

log = logging.getLogger("hashmatch.clients")
RETRY_S = (0.1, 0.25, 0.5, 1.0, 2.0)     # waits between reconnects, the last one repeating
FINAL = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
         grpc.StatusCode.UNIMPLEMENTED)


def entries_of(packed: bytes) -> np.ndarray:
    """n x uint64 little-endian (ChangeBatch.removed_entries, SnapshotEnd.held_entries, ...)."""
    return np.frombuffer(packed, "<u8").astype(np.uint64)


def log_of(batch) -> list[tuple[int, int, int, int]]:
    """A ChangeBatch's change-log rows: (sequence, count, op, entry) each."""
    return [tuple(r) for r in np.frombuffer(batch.log, "<u8").reshape(-1, 4).tolist()]


class CopyBroken(ValueError):
    """What the stream sent cannot be applied (a gap, a wrong digest): reconnect."""


def snapshot_rows(parts: list[dict], end) -> dict:
    """A snapshot's chunks as one set of rows (unpack_rows' arrays, plus held_entries and
    disputed_entries), its digest checked against `end`."""
    empty = unpack_rows({})
    rows = {n: np.concatenate([p[n] for p in parts] or [empty[n]]) for n in empty}
    if rows_digest(types.SimpleNamespace(**rows)) != (end.digest_rows, end.list_digest):
        raise CopyBroken(f"the snapshot at {end.sequence} does not match its digest")
    return {**rows, "held_entries": entries_of(end.held_entries),
            "disputed_entries": entries_of(end.disputed_entries)}


class SyncClient:
    """Feeds `copy` from a Sync stream. `copy` has `token` (bytes; None: take a snapshot),
    `sequence`, `snapshot(rows, end)` (the whole snapshot, digest checked, as snapshot_rows
    gives it), `apply(batch, added)` (added: the batch's rows as unpack_rows gives them) and
    `heartbeat(message)`. `error` is the last RpcError a stream ended with."""

    def __init__(self, target: str, api_key: str | None, copy):
        self.target, self.copy = target, copy
        self.metadata = [("x-api-key", api_key)] if api_key else []
        self._channel = open_channel(target, [("grpc.max_receive_message_length",
                                               MAX_MESSAGE_BYTES)])
        self.stub = pb_grpc.ReplicationStub(self._channel)
        self._stop = threading.Event()
        self._call = None
        self.snapshotted = threading.Event()    # set once the copy has a snapshot applied
        self.error: grpc.RpcError | None = None

    def run(self) -> None:
        """Copies until `stop()`; raises on PERMISSION_DENIED, UNAUTHENTICATED and
        UNIMPLEMENTED (a wrong key or a server without Replication)."""
        failures = 0
        while not self._stop.is_set():
            try:
                self._read(self.copy.token)
                failures = 0
            except grpc.RpcError as exc:
                if self._stop.is_set():
                    return
                self.error, code = exc, exc.code()
                if code in FINAL:
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
            except ValueError as exc:   # CopyBroken, or rows that do not unpack
                log.warning("Sync stream sent what cannot be applied; reconnecting",
                            extra={"fields": {"source": self.target, "reason": str(exc)}})
            self._stop.wait(RETRY_S[min(failures, len(RETRY_S) - 1)])
            failures += 1

    def _read(self, token: bytes | None) -> None:
        self._call = self.stub.Sync(pb.SyncRequest(resume_token=token or b""),
                                    metadata=self.metadata)
        parts = []
        for message in self._call:
            kind = message.WhichOneof("message")
            if kind == "snapshot_begin":
                parts = []
            elif kind == "snapshot_chunk":
                parts.append(unpack_rows(message.snapshot_chunk.rows))
            elif kind == "snapshot_end":
                rows, parts = snapshot_rows(parts, message.snapshot_end), []
                self.copy.snapshot(rows, message.snapshot_end)
                self.snapshotted.set()
            elif kind == "changes":
                batch = message.changes
                if batch.first_sequence != self.copy.sequence + 1:
                    raise CopyBroken(f"batch starts at {batch.first_sequence}, the copy is at "
                                     f"{self.copy.sequence}")
                self.copy.apply(batch, unpack_rows(batch.added))
            elif kind == "heartbeat":
                self.copy.heartbeat(message.heartbeat)
            if self._stop.is_set():
                return

    def stop(self) -> None:
        """Ends `run()` (the stream is cancelled) and closes the channel."""
        self._stop.set()
        if self._call is not None:
            self._call.cancel()
        self._channel.close()
