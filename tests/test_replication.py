"""List replication over real servers on loopback: Sync, the durable mirror, serve --follow and
the client's ListMirror.

Every copy is checked the same way: its digest (core.replica's canonical form) equals the
primary's list_digest at the same sequence. Faults are real: kill -9 of a mirror process
mid-snapshot and mid-changes, kill -9 of a primary process mid-stream, a reader that stops
reading, tokens from another epoch or below the retention floor.
"""
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest

from hashmatch.clients.client import TlsFiles, open_channel
from hashmatch.clients.mirror import ListMirror
from hashmatch.core.replica import rows_digest, unpack_rows
from hashmatch.server.mirror import Mirror
from hashmatch.server.replica_store import open_replica_store
from hashmatch.server.store import open_store
from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc
from test_several_servers import wait_until

OPTIONS = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]


def replicate_key(db_path: str, name: str = "mirror", roles=("replicate",)) -> list:
    store = open_store(db_path)
    try:
        return [("x-api-key", store.add_platform(name, list(roles)))]
    finally:
        store.close()


def replication(target: str):
    return pb_grpc.ReplicationStub(grpc.insecure_channel(target, options=OPTIONS))


def primary_digest(target: str, key, tls: TlsFiles | None = None) -> tuple[int, int, str]:
    """(applied sequence, rows, digest) the primary reports."""
    stub = pb_grpc.ListInfoStub(open_channel(target, [], tls))
    info = stub.GetListInfo(pb.GetListInfoRequest(include_digest=True), metadata=key)
    return info.applied_sequence, info.digest_rows, info.list_digest


def photo_md5(seed: int) -> bytes:
    """The md5 new_case(seed) gives its photo."""
    return np.random.default_rng(seed).bytes(16)


def photo_pdq(seed: int) -> bytes:
    """The PDQ hash new_case(seed) gives its photo."""
    rng = np.random.default_rng(seed)
    rng.bytes(16)
    return rng.bytes(32)


def new_case(target: str, seed: int, video: bool = False,
             tls: TlsFiles | None = None) -> pb.SubmitCaseResponse:
    rng = np.random.default_rng(seed)
    media = [pb.MediaHashes(image=pb.ImageHashes(
        md5=rng.bytes(16), pdq=rng.bytes(32), quality=90))]
    if video:
        media.append(pb.MediaHashes(video=pb.VideoHashes(
            md5=rng.bytes(16), frame_pdqs=rng.bytes(32 * 5), frame_qualities=[90] * 5)))
    return pb_grpc.CasesStub(open_channel(target, [], tls)).SubmitCase(
        pb.SubmitCaseRequest(media=media))


def withdraw(target: str, case) -> None:
    pb_grpc.CasesStub(grpc.insecure_channel(target)).WithdrawCase(
        pb.WithdrawCaseRequest(case_id=case.case_id, pin=case.pin))


def same_as_primary(target, key, copy_sequence, copy_digest, tls=None) -> bool:
    """True once the copy and the primary are at one sequence with one digest; fails the test
    if they are at one sequence with different digests."""
    sequence, rows, digest = primary_digest(target, key, tls)
    sequence_now, (copy_rows, copy_hex) = copy_sequence(), copy_digest()
    if sequence_now != sequence:
        return False
    assert (copy_rows, copy_hex) == (rows, digest), f"copy differs at sequence {sequence}"
    return True


# ---------------------------------------------------------------------- the Sync stream


def test_snapshot_then_changes_then_heartbeat(start_server, random_hashes):
    primary = start_server(imported=random_hashes(70_000), sync_heartbeat_s=0.2)
    key = replicate_key(primary.db_path, roles=("replicate", "match"))
    kept = new_case(primary.target, 1, video=True)
    stream = replication(primary.target).Sync(pb.SyncRequest(), metadata=key)
    kinds, parts = [], []
    for message in stream:
        kinds.append(message.WhichOneof("message"))
        if kinds[-1] == "snapshot_chunk":
            parts.append(unpack_rows(message.snapshot_chunk.rows))
        if kinds[-1] == "snapshot_end":
            end = message.snapshot_end
            break
    assert kinds[0] == "snapshot_begin" and kinds.count("snapshot_chunk") >= 3
    rows = type("Rows", (), {k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
    assert rows_digest(rows) == (end.digest_rows, end.list_digest) == primary_digest(
        primary.target, key)[1:]
    # The case's two items are the last changes (anonymous answers carry no sequence).
    assert end.sequence == primary_digest(primary.target, key)[0] == 70_000 + len(kept.entry_ids)

    gone = new_case(primary.target, 2)
    withdraw(primary.target, gone)
    removed_at = primary_digest(primary.target, key)[0]    # the withdrawal was applied before
    seen, removed = [], []
    for message in stream:
        kind = message.WhichOneof("message")
        if kind == "changes":
            seen.append((message.changes.first_sequence, message.changes.last_sequence))
            removed += np.frombuffer(message.changes.removed_entries, "<u8").tolist()
        if kind == "heartbeat" and message.heartbeat.sequence == removed_at:
            break       # idle and current: the heartbeat names where the copy stands
    stream.cancel()
    assert seen[0][0] == end.sequence + 1 and seen[-1][1] == removed_at
    assert all(a[1] + 1 == b[0] for a, b in zip(seen, seen[1:]))     # in order, none missing
    assert removed == list(gone.entry_ids)


def test_an_import_while_copies_follow_arrives_in_batches_under_the_message_limit(
        start_server, random_hashes):
    primary = start_server(sync_heartbeat_s=0.2, max_message_bytes=4 * 1024 * 1024)
    key = replicate_key(primary.db_path, roles=("replicate", "match"))
    with ListMirror(primary.target, key[0][1], threads=1) as copy:
        new_case(primary.target, 1, video=True)
        store = open_store(primary.db_path)     # as `hashmatch list import` would, beside it
        try:
            store.import_pdq_hashes(random_hashes(300_000, seed=4))
        finally:
            store.close()
        new_case(primary.target, 2)
        wait_until(lambda: same_as_primary(primary.target, key, lambda: copy.sequence,
                                           copy.digest), what="the import copied")
        assert copy.digest()[0] == 300_000 + 2 + 5 + 3      # photos, frames, md5s


def test_a_key_without_replicate_learns_nothing(live_server):
    for metadata, code in (([("x-api-key", live_server.api_key)],
                            grpc.StatusCode.PERMISSION_DENIED),
                           ([], grpc.StatusCode.UNAUTHENTICATED)):
        stream = replication(live_server.target).Sync(pb.SyncRequest(), metadata=metadata)
        received = []
        with pytest.raises(grpc.RpcError) as info:
            for message in stream:
                received.append(message)
        assert info.value.code() == code and received == []
    assert "lacks the 'replicate' role" in info.value.details() or code != \
        grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as info:
        replication(live_server.target).VerifyCopy(
            pb.VerifyCopyRequest(), metadata=[("x-api-key", live_server.api_key)])
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "lacks the 'replicate' role" in info.value.details()


def _first_token(target, key) -> tuple[bytes, int]:
    stream = replication(target).Sync(pb.SyncRequest(), metadata=key)
    try:
        for message in stream:
            if message.WhichOneof("message") == "snapshot_end":
                return message.snapshot_end.resume_token, message.snapshot_end.sequence
    finally:
        stream.cancel()


def _refusal(target, key, token) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        next(iter(replication(target).Sync(pb.SyncRequest(resume_token=token), metadata=key)))
    return info.value


def test_tokens_the_log_cannot_continue_from_get_the_resync_status(live_server):
    key = replicate_key(live_server.db_path, roles=("replicate", "match"))
    new_case(live_server.target, 1)
    token, sequence = _first_token(live_server.target, key)
    resumed = replication(live_server.target).Sync(pb.SyncRequest(resume_token=token),
                                                   metadata=key)
    new_case(live_server.target, 2)
    first = next(iter(resumed))
    assert first.changes.first_sequence == sequence + 1          # a good token resumes
    resumed.cancel()

    bad = _refusal(live_server.target, key, b"not a token")
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT

    store = open_replica_store(live_server.db_path)
    try:
        floor = store.prune_changes(time.time() + 1)            # everything is now too old
        info = pb_grpc.ListInfoStub(live_server.channel()).GetListInfo(
            pb.GetListInfoRequest(), metadata=key)
        assert info.resume_floor_sequence == floor >= sequence + 1
        below = _refusal(live_server.target, key, token)
        assert below.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "below the oldest" in below.details() and "take a snapshot again" in below.details()

        token, _ = _first_token(live_server.target, key)         # a fresh snapshot is fine
        store.new_epoch()                                        # a restore: a new history
        other = _refusal(live_server.target, key, token)
        assert other.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "another epoch" in other.details() and "take a snapshot again" in other.details()
    finally:
        store.close()


def test_the_server_prunes_the_log_past_change_retention_s(start_server):
    primary = start_server(change_retention_s=1.0)
    key = replicate_key(primary.db_path, roles=("replicate", "match"))
    token, sequence = _first_token(primary.target, key)
    new_case(primary.target, 1)
    info = pb_grpc.ListInfoStub(primary.channel())
    wait_until(lambda: info.GetListInfo(pb.GetListInfoRequest(), metadata=key)
               .resume_floor_sequence > sequence, what="the log pruned", timeout=15)
    refused = _refusal(primary.target, key, token)
    assert refused.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "take a snapshot again" in refused.details()
    assert _first_token(primary.target, key)[1] == sequence + 1     # a snapshot still serves


def test_bounds_is_one_read_and_names_the_epoch_floor_and_head(tmp_path):
    """A Sync stream asks bounds() on every poll: one read transaction (the very first call on
    a new list also writes its epoch)."""
    store = open_replica_store(str(tmp_path / "list.db"))
    try:
        first = store.bounds()
        assert first == (store.epoch(), 0, store.head_sequence()) and first[0] > 0
        opened = store._db.transaction

        def counted(write):
            seen.append(write)
            return opened(write)
        seen, store._db.transaction = [], counted
        floor = store.prune_changes(time.time() + 1)
        head = store.head_sequence()
        seen.clear()
        assert store.bounds() == (first[0], floor, head)
        assert seen == [False]
    finally:
        store.close()


def test_bad_requests_get_invalid_argument_and_the_server_goes_on(live_server):
    key = replicate_key(live_server.db_path)
    raw = live_server.channel().unary_stream(
        "/hashmatch.v1.Replication/Sync", request_serializer=lambda b: b,
        response_deserializer=pb.SyncResponse.FromString)
    for request, words in ((b"\xff\xff\xff", "not a valid message"),
                           (pb.SyncRequest(signal_types=[9]).SerializeToString(),
                            "signal_types: 9")):
        with pytest.raises(grpc.RpcError) as info:
            next(iter(raw(request, metadata=key)))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert words in info.value.details()
    new_case(live_server.target, 3, video=True)
    md5_only = replication(live_server.target).Sync(
        pb.SyncRequest(signal_types=[pb.SIGNAL_TYPE_MD5]), metadata=key)
    for message in md5_only:
        if message.WhichOneof("message") == "snapshot_end":
            assert message.snapshot_end.digest_rows == 2        # the photo's and video's md5s
            break
    md5_only.cancel()


def test_a_reader_that_leaves_frees_its_stream(start_server):
    primary = start_server(max_streams_per_platform=1, sync_heartbeat_s=60)
    key = replicate_key(primary.db_path)
    _first_token(primary.target, key)          # reads the snapshot, then cancels: an idle stream

    def another_stream_opens() -> bool:
        try:
            return bool(_first_token(primary.target, key))
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            return False
    wait_until(another_stream_opens, what="the cancelled stream to give back its slot",
               timeout=10)


def test_a_reader_that_stops_reading_is_cut_off(start_server, random_hashes):
    primary = start_server(imported=random_hashes(600_000), sync_stall_s=1.0)
    key = replicate_key(primary.db_path)
    stream = replication(primary.target).Sync(pb.SyncRequest(), metadata=key)
    next(iter(stream))
    time.sleep(4)       # the server's writes now wait on this reader for longer than 1 s
    with pytest.raises(grpc.RpcError) as info:
        for _ in stream:
            pass
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "sync_stall_s" in info.value.details()
    new_case(primary.target, 1)         # and the server goes on serving
    assert _first_token(primary.target, key)[1] == 600_001


# ---------------------------------------------------------------------- copies


def test_list_mirror_follows_snapshot_and_changes_under_concurrent_writes(start_server,
                                                                         random_hashes, any_db):
    primary = start_server(imported=random_hashes(100_000), sync_heartbeat_s=0.2,
                           db_path=any_db)
    key = replicate_key(primary.db_path, roles=("replicate", "match"))
    stop = threading.Event()
    written = []

    def writer():
        seed = 10
        while not stop.is_set():
            case = new_case(primary.target, seed, video=seed % 3 == 0)
            if seed % 4 == 0:
                withdraw(primary.target, case)
            written.append((seed, case))
            seed += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        copies = [ListMirror(primary.target, key[0][1], threads=1).start() for _ in range(3)]
    finally:
        wait_until(lambda: len(written) > 10, what="writes during the snapshots")
        stop.set()
        thread.join()
    try:
        for copy in copies:
            wait_until(lambda: same_as_primary(primary.target, key, lambda: copy.sequence,
                                               copy.digest), what="the copy to catch up")
            assert copy.verify().exact
            for seed, case in written[-4:]:
                found = copy.match_md5(np.frombuffer(photo_md5(seed), np.uint8)[None])
                assert list(found.entry_ids) == ([] if seed % 4 == 0 else [case.entry_ids[0]])
    finally:
        for copy in copies:
            copy.stop()


def mirror_process(source: str, db: str, key, log_path, *flags: str) -> subprocess.Popen:
    """`hashmatch mirror --from SOURCE --db DB --json [flags]` as a real process."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "hashmatch.clients.cli", "mirror", "--from", source,
             "--db", db, "--api-key", key[0][1], "--json", "--every", "0.1", *flags],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def copy_state(db: str) -> tuple[int, int, bool]:
    """(sequence of the copy's token or -1, photo rows stored, has a token), read beside the
    running mirror."""
    con = sqlite3.connect(db, timeout=10)
    try:
        token = con.execute("SELECT sequence FROM replica").fetchone()
        (rows,) = con.execute("SELECT coalesce(sum(entry_count), 0) FROM hash_blocks "
                              "WHERE video = 0").fetchone()
    except sqlite3.OperationalError:     # not created yet
        return -1, 0, False
    finally:
        con.close()
    return (token[0] if token else -1), rows, token is not None


def stored_copy(db: str):
    """(sequence, (rows, digest)) of a mirror's store."""
    store = open_replica_store(db)
    try:
        return store.replica_position()[2], rows_digest(store.load_all())
    finally:
        store.close()


def kill9(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_mirror_killed_mid_snapshot_and_mid_changes_resumes_exactly(start_server,
                                                                   random_hashes, tmp_path):
    primary = start_server(imported=random_hashes(400_000), sync_heartbeat_s=0.2)
    key = replicate_key(primary.db_path, roles=("replicate", "match"))
    copy, log_path = str(tmp_path / "copy.db"), tmp_path / "mirror.log"

    first = mirror_process(primary.target, copy, key, log_path)
    wait_until(lambda: copy_state(copy)[1] > 0 and not copy_state(copy)[2], timeout=60,
               what="the snapshot half written")
    kill9(first)
    assert not copy_state(copy)[2], "no token may be stored before the snapshot is complete"

    second = mirror_process(primary.target, copy, key, log_path)
    snapshot_at = wait_until(lambda: copy_state(copy)[0] > 0 and copy_state(copy)[0],
                             timeout=60, what="the snapshot taken again")
    assert stored_copy(copy)[1] == primary_digest(primary.target, key)[1:]

    stop, seeds = threading.Event(), iter(range(100, 10_000))

    def writer():
        while not stop.is_set():
            seed = next(seeds)
            case = new_case(primary.target, seed, video=seed % 3 == 0)
            if seed % 2:
                withdraw(primary.target, case)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        wait_until(lambda: copy_state(copy)[0] > snapshot_at + 20, what="changes copied")
        kill9(second)
        killed_at = copy_state(copy)[0]
        time.sleep(0.3)     # the primary goes on changing while the mirror is down
        third = mirror_process(primary.target, copy, key, log_path)
        wait_until(lambda: copy_state(copy)[0] > killed_at + 10, what="changes after restart")
    finally:
        stop.set()
        thread.join()
    try:
        wait_until(lambda: same_as_primary(primary.target, key, lambda: stored_copy(copy)[0],
                                           lambda: stored_copy(copy)[1]),
                   what="the restarted mirror to catch up")
    finally:
        third.terminate()
        third.wait()
    events = [line for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert sum('"event":"snapshot"' in e for e in events) == 1, "the kill mid-changes resumed"


def test_mirror_resumes_when_the_primary_is_killed_mid_stream(server_process, tmp_path,
                                                             any_db):
    db = str(tmp_path / "primary.db")
    key = replicate_key(db, roles=("replicate", "match"))
    primary = server_process("--sync-heartbeat-s", "0.2", db_path=db)
    store = open_replica_store(any_db)          # the copy: an SQLite file or PostgreSQL
    events = []
    mirror = Mirror(store, primary.target, key[0][1], on_progress=lambda p: events.append(
        p.event))
    thread = mirror.start()
    try:
        new_case(primary.target, 1, video=True)
        wait_until(lambda: mirror.sequence >= 2, what="the first case copied")
        for round_ in range(2):
            kill9(primary.process)
            primary = server_process("--sync-heartbeat-s", "0.2", "--listen", primary.target,
                                     db_path=db)
            for seed in range(10 * round_ + 2, 10 * round_ + 6):
                case = new_case(primary.target, seed)
                if seed % 2:
                    withdraw(primary.target, case)
        wait_until(lambda: same_as_primary(primary.target, key, lambda: mirror.sequence,
                                           mirror.digest), what="the mirror to catch up")
        assert events.count("snapshot") == 1, "resumed from its token, no second snapshot"
    finally:
        mirror.stop()
        thread.join(10)
        store.close()


def test_follow_serves_the_primarys_list_read_only(start_server, tmp_path):
    primary = start_server()
    key = replicate_key(primary.db_path)
    mirror = start_server(db_path=str(tmp_path / "follower.db"), follow=primary.target,
                          follow_api_key=key[0][1])
    cases = pb_grpc.CasesStub(mirror.channel())
    with pytest.raises(grpc.RpcError) as info:
        cases.SubmitCase(pb.SubmitCaseRequest())
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert primary.target in info.value.details()

    case = new_case(primary.target, 7)
    request = pb.MatchRequest(signal_type=pb.SIGNAL_TYPE_PDQ, hashes=photo_pdq(7), threshold=0)
    matching = pb_grpc.MatchingStub(mirror.channel())
    mirror_key = [("x-api-key", mirror.api_key)]
    wait_until(lambda: matching.MatchBatch(request, metadata=mirror_key).matches,
               what="the case on the follower")
    withdraw(primary.target, case)
    wait_until(lambda: not matching.MatchBatch(request, metadata=mirror_key).matches,
               timeout=10, what="the withdrawal on the follower")
    primary_key = [("x-api-key", primary.api_key)]
    wait_until(lambda: same_as_primary(primary.target, primary_key,
                                       lambda: mirror.app.state.sequence,
                                       mirror.app.state.digest), what="equal digests")
