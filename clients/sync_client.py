"""The reading end of a Sync stream, for every copy of a list: the in-process ListMirror
(mirror.py), and in the server package a `serve --follow` server's list and the durable
`hashmatch mirror`. It lives with the clients because clients never import the server.

`SyncClient.run()` opens Sync from the copy's last token (a snapshot when it has none), hands
each message to the copy in order, and on a broken stream reconnects from the last token it
applied. FAILED_PRECONDITION (another epoch, below the retention floor) makes the copy take a
snapshot again, logged; a batch that does not follow on from the copy's sequence is refused
(the stream reopens from the token), never skipped. A snapshot whose digest does not match is
discarded and taken again. A refused key ends `run()` with the error: retrying will not help.

`tls` (client.TlsFiles, the client library's) reads over TLS, with a client certificate for a
source that requires one (mTLS). A connection set-up that fails SET_UP_TRIES times in a row
before the source has sent anything (a TLS handshake failed, or the source closed the
connection as it was set up: it serves TLS to a plaintext reader, or wants a client
certificate it did not get) also ends `run()`, as SetUpFailed: these settings do not fit the
source, and retrying forever would hide that. Once the source has answered, the same failures
are retried like any other. Before each reconnect the TLS files are looked at again: renewed
ones (a client certificate before the old one expires) make a new channel.
"""
import logging
import threading
import types

import grpc
import numpy as np

from hashmatch.clients.client import MAX_MESSAGE_BYTES, TlsFiles, open_channel
from hashmatch.core.replica import rows_digest, unpack_rows
from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc

log = logging.getLogger("hashmatch.clients")
RETRY_S = (0.1, 0.25, 0.5, 1.0, 2.0)     # waits between reconnects, the last one repeating
FINAL = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
         grpc.StatusCode.UNIMPLEMENTED)
# Failed set-ups in a row (about 0.35 s of waits) before a source that never answered is given
# up: one briefly at its connection limit also closes connections as they are set up.
SET_UP_TRIES = 3


def entries_of(packed: bytes) -> np.ndarray:
    """n x uint64 little-endian (ChangeBatch.removed_entries, SnapshotEnd.held_entries, ...)."""
    return np.frombuffer(packed, "<u8").astype(np.uint64)


def log_of(batch) -> list[tuple[int, int, int, int]]:
    """A ChangeBatch's change-log rows: (sequence, count, op, entry) each."""
    return [tuple(r) for r in np.frombuffer(batch.log, "<u8").reshape(-1, 4).tolist()]


class CopyBroken(ValueError):
    """What the stream sent cannot be applied (a gap, a wrong digest): reconnect."""


class SetUpFailed(grpc.RpcError):
    """The first connection to the source failed as it was set up (TLS): the RpcError it
    stands for (`code()`, `details()`), its details followed by what to check."""

    def __init__(self, error: grpc.RpcError, hint: str):
        super().__init__()
        self._code, self._details = error.code(), f"{hint} ({error.details()})"

    def code(self) -> grpc.StatusCode:
        """The status the connection failed with (UNAVAILABLE)."""
        return self._code

    def details(self) -> str:
        """What to check, then gRPC's own details."""
        return self._details

    def __str__(self) -> str:
        return f"{self._code.name}: {self._details}"


def set_up_hint(error: grpc.RpcError, tls: TlsFiles | None) -> str | None:
    """What to check when `error` ended a stream before the source sent anything and says the
    connection failed as it was set up; None for other errors (a source not up yet)."""
    if error.code() != grpc.StatusCode.UNAVAILABLE:
        return None
    details = error.details() or ""
    if "handshake" in details.lower():
        return ("the TLS handshake failed: the CA given must have signed the source's "
                "certificate, which must name the host dialled (and the source must serve TLS)")
    if "Socket closed" not in details:
        return None
    if tls is None:
        return ("the source closed the connection as it was set up: it may serve TLS (give "
                "its CA), or be at its connection limit")
    if tls.cert is None:
        return ("the source closed the connection after the TLS handshake: it may require a "
                "client certificate (mTLS; give a certificate and key)")
    return ("the source closed the connection after the TLS handshake: it may not trust the "
            "client certificate given (mTLS: it must be signed by the source's client CA)")


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
    `heartbeat(message)`. `error` is the last RpcError a stream ended with. `tls`: read over
    TLS (None: plaintext)."""

    def __init__(self, target: str, api_key: str | None, copy, tls: TlsFiles | None = None):
        self.target, self.copy, self.tls = target, copy, tls
        self.metadata = [("x-api-key", api_key)] if api_key else []
        self._open()
        self._stop = threading.Event()
        self._call = None
        self.snapshotted = threading.Event()    # set once the copy has a snapshot applied
        self.error: grpc.RpcError | None = None
        self._answered = False      # the source has sent a message since this client started

    def _open(self) -> None:
        """A channel with the TLS files as they are now (OSError when one cannot be read)."""
        self._stamp = self.tls.stamp() if self.tls else None    # before the files are read
        self._channel = open_channel(self.target, [("grpc.max_receive_message_length",
                                                    MAX_MESSAGE_BYTES)], self.tls)
        self.stub = pb_grpc.ReplicationStub(self._channel)

    def _reopen_if_renewed(self) -> None:
        if self.tls is None or self.tls.stamp() == self._stamp:
            return
        old = self._channel
        try:
            self._open()
        except OSError as exc:      # mid-renewal: keep the channel we have, look again later
            log.warning("TLS files unreadable; keeping the last ones", extra={"fields": {
                "source": self.target, "error": str(exc)}})
            return
        old.close()
        if self._stop.is_set():     # stop() may have closed the old channel, not this one
            self._channel.close()
        log.info("TLS files renewed; reconnecting with them", extra={"fields": {
            "source": self.target}})

    def run(self) -> None:
        """Copies until `stop()`; raises on PERMISSION_DENIED, UNAUTHENTICATED and
        UNIMPLEMENTED (a wrong key or a server without Replication), and SetUpFailed when the
        source never answered and its connection failed as it was set up (TLS settings)."""
        failures = 0
        while not self._stop.is_set():
            try:
                self._reopen_if_renewed()
                self._read(self.copy.token)
                failures = 0
            except grpc.RpcError as exc:
                if self._stop.is_set():
                    return
                self.error, code = exc, exc.code()
                if code in FINAL:
                    raise
                hint = None if self._answered else set_up_hint(exc, self.tls)
                if hint is not None and failures >= SET_UP_TRIES - 1:
                    self.error = SetUpFailed(exc, hint)
                    raise self.error from None
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
            self._answered = True
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
