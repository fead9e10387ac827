"""MatchStream under stress: bad batches mid-stream, clients that never read or vanish, limits.

A stream must survive any single bad batch, must not let one client's unread answers grow the
server or starve other streams, and must release its slot when the client goes away.
"""
import logging
import threading
import time

import grpc
import numpy as np
import pytest

from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc

PDQ, MD5 = pb.SIGNAL_TYPE_PDQ, pb.SIGNAL_TYPE_MD5


def listed_image(stubs, hash_) -> int:
    case = stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[
        pb.MediaHashes(image=pb.ImageHashes(pdq=bytes(hash_), quality=90))]))
    return case.entry_ids[0]


def test_a_bad_batch_mid_stream_gets_an_error_and_the_stream_goes_on(stubs, random_hashes):
    listed = random_hashes(1, seed=1)
    entry = listed_image(stubs, listed[0])
    requests = [
        pb.MatchRequest(sequence=1, signal_type=PDQ, hashes=listed.tobytes()),
        pb.MatchRequest(sequence=2, signal_type=PDQ, hashes=b"x" * 31),
        pb.MatchRequest(sequence=3, signal_type=PDQ, hashes=b""),
        pb.MatchRequest(sequence=4, signal_type=0, hashes=b"x" * 32),
        pb.MatchRequest(sequence=5, signal_type=PDQ, hashes=b"x" * 32, threshold=1000),
        pb.MatchRequest(sequence=6, signal_type=PDQ, hashes=listed.tobytes() * 2),
    ]
    answers = {a.sequence: a for a in stubs.matching.MatchStream(iter(requests),
                                                                 metadata=stubs.key)}
    assert sorted(answers) == [1, 2, 3, 4, 5, 6]
    assert [(m.position, m.entry_id) for m in answers[1].matches] == [(0, entry)]
    assert [(m.position, m.entry_id) for m in answers[6].matches] == [(0, entry), (1, entry)]
    for seq, words in [(2, "not a multiple of 32"), (3, "no hashes"), (4, "unknown signal_type"),
                       (5, "over the server maximum")]:
        assert answers[seq].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        assert words in answers[seq].error.message
        assert not answers[seq].matches


def test_garbage_bytes_mid_stream(stubs, random_hashes):
    listed = random_hashes(1, seed=2)
    listed_image(stubs, listed[0])
    raw = stubs.channel.stream_stream("/hashmatch.v1.Matching/MatchStream",
                                      request_serializer=None, response_deserializer=None)
    good = pb.MatchRequest(sequence=7, signal_type=PDQ, hashes=listed.tobytes())
    answers = [pb.MatchResponse.FromString(a) for a in raw(
        iter([good.SerializeToString(), b"\xff\xff\xff garbage", good.SerializeToString()]),
        metadata=stubs.key)]
    assert len(answers) == 3
    errors = [a for a in answers if a.HasField("error")]
    assert len(errors) == 1 and errors[0].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert sum(len(a.matches) for a in answers) == 2


def wait_until_still(read, settle_s: float = 1.0, limit_s: float = 20.0):
    """Polls read() until it stops changing for settle_s (or limit_s passes); returns it."""
    value, since, start = read(), time.monotonic(), time.monotonic()
    while time.monotonic() - start < limit_s:
        time.sleep(0.1)
        now = read()
        if now != value:
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= settle_s:
            break
    return value


def no_errors_logged(caplog) -> bool:
    return not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_client_that_never_reads_is_not_read_and_others_are_served(start_server, random_hashes,
                                                                     caplog, connect):
    server = start_server(max_in_flight=4, max_batch_hashes=16384)
    stubs = connect(server)
    listed = random_hashes(1, seed=3)
    entry = listed_image(stubs, listed[0])
    # Each answer holds 16384 matches (~160 KB), so unread answers fill HTTP/2 windows quickly.
    batch = np.repeat(listed, 16384, axis=0).tobytes()
    sent = []
    total = 2000  # 1 GiB of requests if the server buffered them all

    def requests():
        for i in range(total):
            sent.append(i)
            yield pb.MatchRequest(sequence=i, signal_type=PDQ, hashes=batch)

    stuck_channel = server.channel()
    stuck = pb_grpc.MatchingStub(stuck_channel).MatchStream(requests(), metadata=stubs.key)
    answered = wait_until_still(lambda: server.app.metrics.batches)
    assert answered < 100, "the server kept reading a stream whose answers nobody reads"
    assert len(sent) < 200, "requests were drained from a stream whose answers nobody reads"

    other = stubs.matching.MatchStream(iter([pb.MatchRequest(
        sequence=1, signal_type=PDQ, hashes=listed.tobytes())]), metadata=stubs.key)
    assert [m.entry_id for a in other for m in a.matches] == [entry]
    reply = stubs.matching.MatchBatch(pb.MatchRequest(signal_type=PDQ, hashes=listed.tobytes()),
                                      metadata=stubs.key)
    assert len(reply.matches) == 1

    stuck.cancel()
    stuck_channel.close()
    wait_until_still(lambda: len(caplog.records), settle_s=0.5, limit_s=5)
    assert no_errors_logged(caplog)


def test_a_client_that_disappears_mid_stream_frees_its_slot(start_server, random_hashes, caplog,
                                                             connect):
    server = start_server(max_streams_per_platform=1)
    stubs = connect(server)
    listed = random_hashes(1, seed=4)
    listed_image(stubs, listed[0])
    gone = threading.Event()

    def requests():
        for i in range(3):
            yield pb.MatchRequest(sequence=i, signal_type=PDQ, hashes=listed.tobytes())
        gone.wait(10)

    channel = server.channel()
    call = pb_grpc.MatchingStub(channel).MatchStream(requests(), metadata=stubs.key)
    assert next(call).sequence in (0, 1, 2)
    call.cancel()
    channel.close()
    gone.set()

    request = pb.MatchRequest(sequence=9, signal_type=PDQ, hashes=listed.tobytes())
    for _ in range(100):
        try:
            answers = list(stubs.matching.MatchStream(iter([request]), metadata=stubs.key))
            break
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            time.sleep(0.05)
    else:
        pytest.fail("the vanished client's stream was never released")
    assert len(answers[0].matches) == 1
    assert no_errors_logged(caplog)


def test_too_many_streams_per_platform(start_server, random_hashes, connect):
    server = start_server(max_streams_per_platform=1)
    stubs = connect(server)
    hold = threading.Event()

    def requests():
        yield pb.MatchRequest(sequence=1, signal_type=PDQ, hashes=bytes(32))
        hold.wait(10)

    first = stubs.matching.MatchStream(requests(), metadata=stubs.key)
    assert next(first).sequence == 1
    with pytest.raises(grpc.RpcError) as info:
        list(stubs.matching.MatchStream(iter([pb.MatchRequest(
            sequence=2, signal_type=PDQ, hashes=bytes(32))]), metadata=stubs.key))
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_streams_per_platform (1)" in info.value.details()
    hold.set()
    assert list(first) == []


def test_rate_limit_per_platform(start_server, connect):
    server = start_server(rate_limit_hashes_per_s=5, max_batch_hashes=100)
    stubs = connect(server)
    full = pb.MatchRequest(signal_type=MD5, hashes=bytes(16 * 100))
    stubs.matching.MatchBatch(full, metadata=stubs.key)
    with pytest.raises(grpc.RpcError) as info:
        stubs.matching.MatchBatch(full, metadata=stubs.key)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "rate_limit_hashes_per_s" in info.value.details()
    (answer,) = stubs.matching.MatchStream(iter([full]), metadata=stubs.key)
    assert answer.error.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]


def test_server_memory_stays_bounded_when_answers_are_not_read(server_process, random_hashes):
    import psutil
    server = server_process("--max-in-flight", "4")
    channel = grpc.insecure_channel(server.target)
    key = [("x-api-key", server.api_key)]
    listed = random_hashes(1, seed=5)
    pb_grpc.CasesStub(channel).SubmitCase(pb.SubmitCaseRequest(media=[pb.MediaHashes(
        image=pb.ImageHashes(pdq=listed.tobytes(), quality=90))]))
    batch = np.repeat(listed, 16384, axis=0).tobytes()  # 512 KiB asked, ~160 KB answered
    sent = []

    def requests():
        for i in range(4000):  # 2 GiB if the server took it all in
            sent.append(i)
            yield pb.MatchRequest(sequence=i, signal_type=PDQ, hashes=batch)

    rss = psutil.Process(server.process.pid).memory_info
    before = rss().rss
    stuck = pb_grpc.MatchingStub(channel).MatchStream(requests(), metadata=key)
    wait_until_still(lambda: (len(sent), rss().rss // (8 << 20)))
    grown = rss().rss - before
    assert len(sent) < 200
    assert grown < 256 << 20, f"server grew by {grown >> 20} MiB for a client that reads nothing"
    other = grpc.insecure_channel(server.target)
    reply = pb_grpc.MatchingStub(other).MatchBatch(pb.MatchRequest(
        signal_type=PDQ, hashes=listed.tobytes()), metadata=key)
    assert len(reply.matches) == 1
    stuck.cancel()
    other.close()
    channel.close()
    assert server.stop() == 0
