"""What a Sync stream sends, read from the store's change log (the follower's own feed).

A library without gRPC: the servicer (services_replication.py) only writes what these return.
- Resume tokens are opaque to copies: version, the list's epoch, a sequence and the signal types
  the copy asked for. A token from another epoch, below the retention floor, or for other signal
  types raises ResyncRequired: never a silent jump forward.
- A snapshot is `store.load_all()` (one read transaction, so one sequence), cut into chunks and
  closed by its digest in the canonical form of core.replica.
- Change batches are `store.changes_after()`, checked to follow on without a gap; a gap is
  waited for, then refused, never skipped.
"""
import dataclasses
import struct

import numpy as np

from hashmatch.core.replica import pack_rows, rows_digest
from hashmatch.server.convert import SIGNAL_FROM_PB
from hashmatch.server.errors import InvalidRequest, ResyncRequired
from hashmatch.server.listing import SIGNAL_MD5, SIGNAL_PDQ, SIGNAL_VPDQ
from hashmatch.server.media import ListRows, entry_of_frame
from hashmatch.server.replica_store import ReplicaStore
from hashmatch.server.store import OP_ADD, OP_REMOVE, follows
from hashmatch.v1 import hashmatch_pb2 as pb

TOKEN = struct.Struct(">BqqB")      # version, epoch, sequence, signal mask
TOKEN_VERSION = 1
ALL_SIGNALS = (1 << SIGNAL_PDQ) | (1 << SIGNAL_MD5) | (1 << SIGNAL_VPDQ)
CHUNK_ROWS = 32768                  # rows per SnapshotChunk (about 1.3 MiB of photos)
ROW_BYTES = 64                      # a bound on one row's bytes in a message (photo: 40)
SNAPSHOT_AGAIN = "take a snapshot again (Sync without a resume token)"


@dataclasses.dataclass(frozen=True)
class Position:
    epoch: int
    sequence: int
    mask: int

    def token(self, sequence: int | None = None) -> bytes:
        return TOKEN.pack(TOKEN_VERSION, self.epoch,
                          self.sequence if sequence is None else sequence, self.mask)


def signal_mask(signal_types) -> int:
    """The bit mask of the wire SignalTypes asked for (all when none is named)."""
    mask = 0
    for value in signal_types:
        if value not in SIGNAL_FROM_PB:
            raise InvalidRequest(f"signal_types: {value} is not PDQ, MD5 or VPDQ")
        mask |= 1 << SIGNAL_FROM_PB[value]
    return mask or ALL_SIGNALS


def parse_token(token: bytes) -> Position:
    if len(token) != TOKEN.size or token[0] != TOKEN_VERSION:
        raise InvalidRequest(f"resume_token is not a token this server issued ({len(token)} "
                             f"bytes); {SNAPSHOT_AGAIN}")
    _, epoch, sequence, mask = TOKEN.unpack(token)
    return Position(epoch, sequence, mask)


def resume(store: ReplicaStore, token: bytes, mask: int) -> Position:
    """Where a copy resumes; ResyncRequired when the log cannot take it on from there."""
    at = parse_token(token)
    epoch, floor, head = store.bounds()
    if at.epoch != epoch:
        raise ResyncRequired(f"resume_token is from another epoch of the list (it was restored "
                             f"or reset); {SNAPSHOT_AGAIN}")
    if at.mask != mask:
        raise ResyncRequired(f"resume_token was issued for other signal_types; {SNAPSHOT_AGAIN}")
    if at.sequence < floor:
        raise ResyncRequired(f"resume_token is at sequence {at.sequence}, below the oldest the "
                             f"server keeps ({floor}: change_retention_s); {SNAPSHOT_AGAIN}")
    if at.sequence > head:
        raise ResyncRequired(f"resume_token is at sequence {at.sequence}, past the list's head "
                             f"({head}); {SNAPSHOT_AGAIN}")
    return at


def only(rows: ListRows, mask: int) -> ListRows:
    """The rows of the signal types in `mask`."""
    empty = ListRows()
    keep = {name: getattr(rows if mask & (1 << signal) else empty, name)
            for signal, names in ((SIGNAL_PDQ, ("image_ids", "image_hashes")),
                                  (SIGNAL_VPDQ, ("frame_ids", "frame_hashes", "video_entries",
                                                 "video_frame_counts")),
                                  (SIGNAL_MD5, ("md5_ids", "md5s")))
            for name in names}
    return ListRows(**keep, sequence=rows.sequence, held_entries=rows.held_entries,
                    disputed_entries=rows.disputed_entries)


def snapshot(store: ReplicaStore, mask: int):
    """The list at one sequence: (position, messages), the messages (begin, chunks, end) made
    one at a time as they are sent, so only the rows, not their packed copies, stay in memory."""
    epoch = store.epoch()
    rows = only(store.load_all(), mask)
    if store.epoch() != epoch:      # restored while we read: read the new history
        return snapshot(store, mask)
    at = Position(epoch, rows.sequence, mask)
    count, digest = rows_digest(rows)

    def messages():
        yield pb.SyncResponse(snapshot_begin=pb.SnapshotBegin(sequence=rows.sequence, rows=count))
        for part in _chunks(rows):
            yield pb.SyncResponse(snapshot_chunk=pb.SnapshotChunk(rows=pb.ListRows(**part)))
        yield pb.SyncResponse(snapshot_end=pb.SnapshotEnd(
            sequence=rows.sequence, digest_rows=count, list_digest=digest,
            resume_token=at.token(), held_entries=rows.held_entries.astype("<u8").tobytes(),
            disputed_entries=rows.disputed_entries.astype("<u8").tobytes()))
    return at, messages()


def _chunks(rows: ListRows):
    """Packed pieces (core.replica.pack_rows) of about CHUNK_ROWS rows each; a video is never
    split."""
    for a in range(0, len(rows.image_ids), CHUNK_ROWS):
        yield pack_rows(ListRows(image_ids=rows.image_ids[a:a + CHUNK_ROWS],
                                 image_hashes=rows.image_hashes[a:a + CHUNK_ROWS]))
    ends = np.cumsum(rows.video_frame_counts)
    start = 0
    while start < len(rows.video_entries):
        stop = max(start + 1, int(np.searchsorted(ends, ends[start] - rows.video_frame_counts[
            start] + CHUNK_ROWS, "right")))
        first = int(ends[start] - rows.video_frame_counts[start])
        yield pack_rows(ListRows(video_entries=rows.video_entries[start:stop],
                                 video_frame_counts=rows.video_frame_counts[start:stop],
                                 frame_hashes=rows.frame_hashes[first:int(ends[stop - 1])]))
        start = stop
    for a in range(0, len(rows.md5_ids), CHUNK_ROWS):
        yield pack_rows(ListRows(md5_ids=rows.md5_ids[a:a + CHUNK_ROWS],
                                 md5s=rows.md5s[a:a + CHUNK_ROWS]))


def changes(store: ReplicaStore, at: Position, max_bytes: int):
    """(ChangeBatch messages, the sequence they reach) for the next changes after `at`: ([],
    head) when there is nothing new, ([], -1) while the next change has not arrived in order
    (a gap: wait and ask again). ResyncRequired when the epoch changed or the log was pruned
    past `at`. A big stretch (an import) comes as several batches, each adding at most
    max_bytes / ROW_BYTES rows (but one log row always: an import block, 2.6 MB)."""
    epoch, floor, _ = store.bounds()
    if epoch != at.epoch:
        raise ResyncRequired(f"the list was restored or reset (new epoch); {SNAPSHOT_AGAIN}")
    if at.sequence < floor:
        raise ResyncRequired(f"the change log after sequence {at.sequence} was pruned; "
                             f"{SNAPSHOT_AGAIN}")
    batch = store.changes_after(at.sequence)
    if not batch.changes:
        return [], batch.head
    if not follows(batch.changes, at.sequence):
        return [], -1
    added, messages, first = only(batch.added, at.mask), [], at.sequence + 1
    for group in _groups(batch.changes, max(1, max_bytes // ROW_BYTES)):
        last = group[-1][0] + group[-1][1] - 1
        messages.append(pb.SyncResponse(changes=pb.ChangeBatch(
            first_sequence=first, last_sequence=last,
            added=pb.ListRows(**pack_rows(_added_by(added, group))),
            removed_entries=np.asarray([e for _, _, op, e in group if op == OP_REMOVE],
                                       "<u8").tobytes(),
            resume_token=at.token(last), log=np.asarray(group, "<u8").tobytes())))
        first = last + 1
    return messages, first - 1


def _groups(changes, most: int):
    """Consecutive runs of log rows adding at most `most` entries each (one row at least)."""
    group, rows = [], 0
    for change in changes:
        adds = change[1] if change[2] == OP_ADD else 0
        if group and rows + adds > most:
            yield group
            group, rows = [], 0
        group.append(change)
        rows += adds
    if group:
        yield group


def _added_by(rows: ListRows, group) -> ListRows:
    """The rows whose entries the ADDs of `group` cover."""
    adds = sorted((first, first + count) for _, count, op, first in group if op == OP_ADD)
    if not adds:
        return ListRows(sequence=rows.sequence)
    starts, ends = (np.asarray(column, np.uint64) for column in zip(*adds))

    def covered(entries) -> np.ndarray:
        at = np.maximum(np.searchsorted(starts, entries, "right") - 1, 0)
        return (starts[at] <= entries) & (entries < ends[at])

    images, videos, md5s = (covered(rows.image_ids), covered(rows.video_entries),
                            covered(rows.md5_ids))
    frames = covered(entry_of_frame(rows.frame_ids))
    return ListRows(image_ids=rows.image_ids[images], image_hashes=rows.image_hashes[images],
                    frame_ids=rows.frame_ids[frames], frame_hashes=rows.frame_hashes[frames],
                    video_entries=rows.video_entries[videos],
                    video_frame_counts=rows.video_frame_counts[videos],
                    md5_ids=rows.md5_ids[md5s], md5s=rows.md5s[md5s], sequence=rows.sequence)


def heartbeat(at: Position, head: int):
    return pb.SyncResponse(heartbeat=pb.Heartbeat(sequence=at.sequence, head_sequence=head,
                                                  resume_token=at.token()))


def verify(state_digest: tuple[int, int, str], token: bytes, digest: str, rows: int,
           epoch: int):
    """VerifyCopyResponse for a copy at `token` with (`rows`, `digest`), against the server's
    (sequence, rows, digest)."""
    at = parse_token(token)
    if at.epoch != epoch:
        raise ResyncRequired(f"resume_token is from another epoch of the list; {SNAPSHOT_AGAIN}")
    sequence, server_rows, server_digest = state_digest
    same = sequence == at.sequence
    return pb.VerifyCopyResponse(
        exact=same and server_rows == rows and server_digest == digest, sequence=sequence,
        list_digest=server_digest, digest_rows=server_rows, same_sequence=same)
