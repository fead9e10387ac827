"""End to end over a real channel: cases, matching of every signal type, bad input, restart.

Every rejected request must come back with its own status and a message naming the problem,
and the server must keep serving afterwards.
"""
import logging
import os
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from hashmatch.server.store import Store, open_store
from hashmatch.v1 import hashmatch_pb2 as pb
from test_abuse import server_log

PDQ, MD5, VPDQ = pb.SIGNAL_TYPE_PDQ, pb.SIGNAL_TYPE_MD5, pb.SIGNAL_TYPE_VPDQ


@pytest.fixture
def live_server(start_server, any_db):
    """Every test here that talks to `stubs` runs on SQLite and on PostgreSQL."""
    return start_server(db_path=any_db)


def flip(hash_: np.ndarray, bits: int) -> np.ndarray:
    """The hash with its first `bits` bits flipped: exactly `bits` away."""
    out = np.unpackbits(hash_.copy())
    out[:bits] ^= 1
    return np.packbits(out)


def image(pdq=None, md5=b"", quality=90) -> pb.MediaHashes:
    return pb.MediaHashes(image=pb.ImageHashes(
        pdq=b"" if pdq is None else bytes(pdq), md5=md5, quality=quality))


def video(frames: np.ndarray, qualities=None, md5=b"") -> pb.MediaHashes:
    qualities = [90] * len(frames) if qualities is None else qualities
    return pb.MediaHashes(video=pb.VideoHashes(frame_pdqs=frames.tobytes(), md5=md5,
                                               frame_qualities=qualities))


def match(stubs, hashes: bytes, signal=PDQ, **fields) -> pb.MatchResponse:
    return stubs.matching.MatchBatch(pb.MatchRequest(signal_type=signal, hashes=hashes, **fields),
                                     metadata=stubs.key)


def rejected(call) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def hits(response) -> list[tuple[int, int, int]]:
    return [(m.position, m.entry_id, m.distance) for m in response.matches]


def test_submit_match_status_withdraw(stubs, random_hashes):
    listed = random_hashes(3, seed=1)
    case = stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[
        image(listed[0], md5=b"m" * 16), image(listed[1]), image(md5=b"n" * 16)]))
    # anonymous answers carry no list sequence (it would date every change to the list)
    assert len(case.entry_ids) == 3 and case.sequence == 0 and len(case.pin) == 8
    first, second, third = case.entry_ids

    queries = np.stack([flip(listed[1], 31), flip(listed[0], 32), listed[0], flip(listed[0], 5)])
    answer = match(stubs, queries.tobytes())
    assert hits(answer) == [(0, second, 31), (2, first, 0), (3, first, 5)]
    assert all(m.signal_type == PDQ for m in answer.matches)
    assert answer.list_sequence == 3
    assert hits(match(stubs, queries.tobytes(), threshold=4)) == [(2, first, 0)]
    assert hits(match(stubs, b"n" * 16 + b"x" * 16 + b"m" * 16, MD5)) == [(0, third, 0),
                                                                          (2, first, 0)]

    status = stubs.cases.GetCaseStatus(pb.GetCaseStatusRequest(case_id=case.case_id, pin=case.pin))
    assert (status.state, status.image_count, status.video_count) == (pb.CASE_STATE_ACTIVE, 3, 0)

    withdrawn = stubs.cases.WithdrawCase(pb.WithdrawCaseRequest(case_id=case.case_id, pin=case.pin))
    assert withdrawn.sequence == 0
    assert stubs.list_info.GetListInfo(pb.GetListInfoRequest(), metadata=stubs.key
                                       ).last_sequence == 6
    assert hits(match(stubs, queries.tobytes())) == []
    assert hits(match(stubs, b"m" * 16, MD5)) == []
    status = stubs.cases.GetCaseStatus(pb.GetCaseStatusRequest(case_id=case.case_id, pin=case.pin))
    assert status.state == pb.CASE_STATE_WITHDRAWN and status.withdrawn_unix > 0
    again = stubs.cases.WithdrawCase(pb.WithdrawCaseRequest(case_id=case.case_id, pin=case.pin))
    assert again.sequence == 0


def test_withdrawal_leaves_other_cases_matching(stubs, random_hashes):
    a, b = random_hashes(2, seed=2)
    case_a = stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[image(a)]))
    case_b = stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[image(b)]))
    stubs.cases.WithdrawCase(pb.WithdrawCaseRequest(case_id=case_a.case_id, pin=case_a.pin))
    assert hits(match(stubs, np.stack([a, b]).tobytes())) == [(1, case_b.entry_ids[0], 0)]


def test_video_matching_and_frames_for_images(stubs, random_hashes):
    frames = random_hashes(10, seed=3)
    case = stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[
        video(frames, qualities=[90] * 9 + [10])]))
    entry = case.entry_ids[0]
    # 8 of 8 distinct query frames match; 8 of the 9 stored frames (one was below quality 50)
    query = np.concatenate([frames[:8], frames[:2]])
    answer = match(stubs, query.tobytes(), VPDQ)
    (m,) = answer.matches
    assert (m.entry_id, m.signal_type, m.distance) == (entry, VPDQ, 0)
    assert m.query_match_percent == pytest.approx(100.0)
    assert m.compared_match_percent == pytest.approx(800 / 9)

    strangers = random_hashes(3, seed=4)
    mostly_new = np.concatenate([frames[:2], strangers]).tobytes()
    assert hits(match(stubs, mostly_new, VPDQ)) == []
    loose = pb.VideoMatchOptions(min_query_match_percent=40.0)
    assert len(match(stubs, mostly_new, VPDQ, video=loose).matches) == 1
    strict = pb.VideoMatchOptions(min_compared_match_percent=90.0)
    assert hits(match(stubs, query.tobytes(), VPDQ, video=strict)) == []
    low = pb.VideoMatchOptions(frame_qualities=[10, 10, 90, 90, 90])
    assert len(match(stubs, mostly_new, VPDQ, video=low).matches) == 0

    still = flip(frames[4], 3).tobytes()
    assert hits(match(stubs, still)) == []
    answer = match(stubs, still, include_video_frames=True)
    assert hits(answer) == [(0, entry, 3)] and answer.matches[0].signal_type == VPDQ
    assert hits(match(stubs, frames[9].tobytes(), include_video_frames=True)) == []

    stubs.cases.WithdrawCase(pb.WithdrawCaseRequest(case_id=case.case_id, pin=case.pin))
    assert hits(match(stubs, query.tobytes(), VPDQ)) == []
    assert hits(match(stubs, still, include_video_frames=True)) == []


def test_list_info(stubs, random_hashes):
    stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[
        image(random_hashes(1, 5)[0], md5=b"a" * 16), video(random_hashes(4, 6))]))
    info = stubs.list_info.GetListInfo(pb.GetListInfoRequest(), metadata=stubs.key)
    assert {c.signal_type: c.count for c in info.counts} == {PDQ: 1, MD5: 1, VPDQ: 1}
    assert info.video_frame_count == 4 and info.last_sequence == 2
    assert (info.default_threshold, info.max_batch_hashes, info.max_in_flight) == (31, 16384, 8)
    assert info.kernel_backend


REAL = np.random.default_rng(7).integers(0, 256, (3, 32), dtype=np.uint8)  # like real hashes
BAD_CASES = [
    ([], "at least one"),
    ([image(b"x" * 31)], "media[0]: pdq must be 32 bytes, got 31"),
    ([image(REAL[0], md5=b"y" * 15)], "media[0]: md5 must be 16 bytes, got 15"),
    ([image(REAL[0]), image(REAL[1], quality=49)], "media[1]: PDQ quality 49 is below 50"),
    ([image(REAL[0], quality=101)], "quality must be 0..100, got 101"),
    ([image()], "media[0]: an image needs a pdq hash or an md5"),
    ([pb.MediaHashes()], "media[0]: neither image nor video is set"),
    ([video(np.zeros((2, 32), np.uint8), qualities=[90])], "got 1 frame_qualities for 2 frames"),
    ([pb.MediaHashes(video=pb.VideoHashes(frame_pdqs=b"x" * 40, frame_qualities=[90]))],
     "frame_pdqs length 40 is not a multiple of 32"),
    ([video(np.ones((2, 32), np.uint8), qualities=[10, 20])], "no frame has quality >= 50"),
    ([image(md5=b"m" * 16)] * 5, "5 media items is over max_case_items (4)"),
    # degenerate PDQ hashes: poison that would match far too much (or nothing real)
    ([image(bytes(32))], "media[0]: PDQ hash has 0 of 256 bits set (a real hash has 16...240)"),
    ([image(REAL[0]), image(b"\xff" * 30 + b"\x01\x00")],
     "media[1]: PDQ hash has 241 of 256 bits set"),
    ([image(b"\x5a" * 32)], "media[0]: PDQ hash repeats a pattern of 8 bytes or fewer"),
    ([image(np.tile(REAL[0][:8], 4))], "media[0]: PDQ hash repeats a pattern"),
    ([video(np.stack([REAL[0], np.tile(REAL[1][:4], 8), REAL[2]]))],
     "media[0]: kept frame 1 repeats a pattern"),
    ([video(np.stack([REAL[0], np.eye(1, 32, dtype=np.uint8)[0]]))], "kept frame 1 has 1 of 256"),
    ([video(REAL), video(REAL[:2])], "case holds 5 hashes (PDQ, MD5 and video frames), over "
                                     "max_case_hashes (4)"),
]


def test_bad_cases_are_rejected_and_nothing_is_stored(start_server, connect):
    server = start_server(max_case_items=4, max_case_hashes=4)
    stubs = connect(server)
    for media, message in BAD_CASES:
        error = rejected(lambda: stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=media)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, message
        assert message in error.details()
    info = stubs.list_info.GetListInfo(pb.GetListInfoRequest(), metadata=stubs.key)
    assert info.last_sequence == 0
    assert stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[image(md5=b"m" * 16)])).case_id


def bad_batches(max_threshold: int, max_batch: int):
    return [
        (dict(signal_type=PDQ, hashes=b""), "batch has no hashes"),
        (dict(signal_type=PDQ, hashes=b"x" * 33), "hashes length 33 is not a multiple of 32"),
        (dict(signal_type=MD5, hashes=b"x" * 32 + b"y"), "not a multiple of 16"),
        (dict(signal_type=pb.SIGNAL_TYPE_UNSPECIFIED, hashes=b"x" * 32), "unknown signal_type 0"),
        (dict(signal_type=17, hashes=b"x" * 32), "unknown signal_type 17"),
        (dict(signal_type=PDQ, hashes=b"x" * 32 * (max_batch + 1)),
         f"{max_batch + 1} PDQ hashes in the batch is over max_batch_hashes ({max_batch})"),
        (dict(signal_type=PDQ, hashes=b"x" * 32, threshold=max_threshold + 1),
         f"threshold {max_threshold + 1} is over the server maximum ({max_threshold})"),
        (dict(signal_type=VPDQ, hashes=b"x" * 64,
              video=pb.VideoMatchOptions(frame_qualities=[90])), "got 1 frame_qualities"),
        (dict(signal_type=VPDQ, hashes=b"x" * 32,
              video=pb.VideoMatchOptions(frame_qualities=[20])), "no query frame has quality"),
        (dict(signal_type=VPDQ, hashes=b"x" * 32,
              video=pb.VideoMatchOptions(min_query_match_percent=120)),
         "min_query_match_percent must be 0..100"),
    ]


def test_bad_batches_are_invalid_argument(start_server, random_hashes, connect):
    server = start_server(max_batch_hashes=64, max_threshold=40)
    stubs = connect(server)
    listed = random_hashes(1, seed=7)
    stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[image(listed[0])]))
    for fields, message in bad_batches(40, 64):
        error = rejected(lambda: stubs.matching.MatchBatch(pb.MatchRequest(**fields),
                                                           metadata=stubs.key))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, message
        assert message in error.details()
    assert len(match(stubs, listed.tobytes(), threshold=40).matches) == 1
    assert len(match(stubs, np.repeat(listed, 64, axis=0).tobytes()).matches) == 64


def test_case_pin_rules(stubs):
    case = stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[image(md5=b"m" * 16)]))
    error = rejected(lambda: stubs.cases.GetCaseStatus(
        pb.GetCaseStatusRequest(case_id="nosuchcase", pin=case.pin)))
    assert error.code() == grpc.StatusCode.NOT_FOUND and "no case" in error.details()
    wrong = "0" * 8 if case.pin != "0" * 8 else "1" * 8
    error = rejected(lambda: stubs.cases.WithdrawCase(
        pb.WithdrawCaseRequest(case_id=case.case_id, pin=wrong)))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "wrong PIN" in error.details() and wrong not in error.details()
    assert hits(match(stubs, b"m" * 16, MD5)) == [(0, case.entry_ids[0], 0)]


def test_case_backs_off_after_repeated_wrong_pins(stubs):
    case = stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[image(md5=b"m" * 16)]))
    wrong = "0" * 8 if case.pin != "0" * 8 else "1" * 8
    request = pb.GetCaseStatusRequest(case_id=case.case_id, pin=wrong)
    for _ in range(5):
        assert "wrong PIN" in rejected(lambda: stubs.cases.GetCaseStatus(request)).details()
    assert "next try is possible in 1 s" in rejected(
        lambda: stubs.cases.GetCaseStatus(request)).details()
    error = rejected(lambda: stubs.cases.GetCaseStatus(
        pb.GetCaseStatusRequest(case_id=case.case_id, pin=case.pin)))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED and "locked for" in error.details()
    assert "the right PIN works after that" in error.details()


def test_case_ids_and_pins_count_as_typed_by_a_person(stubs):
    """Spaces, dashes and capitals a person types are the same case and PIN: a variant of the
    id is no fresh case to guess on, and the right PIN typed in groups works."""
    case = stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[image(md5=b"n" * 16)]))
    wrong = "0" * 8 if case.pin != "0" * 8 else "1" * 8
    spaced = " ".join(case.case_id[i:i + 4] for i in range(0, len(case.case_id), 4))
    variants = [case.case_id.upper(), spaced, "-".join(spaced.split()), f" {case.case_id} \t",
                case.case_id]
    for variant in variants:
        error = rejected(lambda: stubs.cases.GetCaseStatus(
            pb.GetCaseStatusRequest(case_id=variant, pin=wrong)))
        assert "wrong PIN" in error.details(), variant
    # Five variants were five wrong PINs on one case: the sixth try waits out the back-off.
    error = rejected(lambda: stubs.cases.GetCaseStatus(
        pb.GetCaseStatusRequest(case_id=spaced.upper(), pin=wrong)))
    assert "next try is possible in 1 s" in error.details()
    time.sleep(1.1)
    typed_pin = f"{case.pin[:4]} - {case.pin[4:]}"
    status = stubs.cases.GetCaseStatus(pb.GetCaseStatusRequest(case_id=spaced.upper(),
                                                               pin=typed_pin))
    assert status.case_id == case.case_id and status.image_count == 1
    stubs.cases.WithdrawCase(pb.WithdrawCaseRequest(case_id=spaced, pin=typed_pin))
    assert hits(match(stubs, b"n" * 16, MD5)) == []


def test_restart_reloads_everything(start_server, random_hashes, connect, any_db):
    first = start_server(db_path=any_db)
    stubs = connect(first)
    listed, frames = random_hashes(1, seed=8), random_hashes(5, seed=9)
    kept = stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[
        image(listed[0], md5=b"k" * 16), video(frames, md5=b"v" * 16)]))
    gone = stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[image(md5=b"g" * 16)]))
    stubs.cases.WithdrawCase(pb.WithdrawCaseRequest(case_id=gone.case_id, pin=gone.pin))
    imported = random_hashes(1000, seed=10)
    first.stop()
    stubs.channel.close()
    store = open_store(first.db_path)
    store.import_pdq_hashes(imported)
    store.close()

    second = start_server(db_path=first.db_path)
    stubs = connect(second)
    image_entry, video_entry = kept.entry_ids
    assert hits(match(stubs, listed.tobytes())) == [(0, image_entry, 0)]
    assert hits(match(stubs, b"k" * 16 + b"v" * 16 + b"g" * 16, MD5)) == [(0, image_entry, 0),
                                                                          (1, video_entry, 0)]
    assert [m.entry_id for m in match(stubs, frames.tobytes(), VPDQ).matches] == [video_entry]
    answer = match(stubs, imported[[0, 999]].tobytes())
    assert [m.position for m in answer.matches] == [0, 1]
    assert answer.matches[0].entry_id not in (image_entry, video_entry)
    info = stubs.list_info.GetListInfo(pb.GetListInfoRequest(), metadata=stubs.key)
    assert info.last_sequence == 4 + 1000
    assert {c.signal_type: c.count for c in info.counts} == {PDQ: 1001, MD5: 2, VPDQ: 1}
    status = stubs.cases.GetCaseStatus(pb.GetCaseStatusRequest(case_id=kept.case_id, pin=kept.pin))
    assert (status.image_count, status.video_count) == (1, 1)


def test_health_is_not_serving_until_loaded(start_server, monkeypatch, connect):
    import threading
    gate = threading.Event()
    load_all = Store.load_all

    def slow_load_all(self):
        gate.wait(30)
        return load_all(self)

    monkeypatch.setattr(Store, "load_all", slow_load_all)
    server = start_server(wait_serving=False)
    stubs = connect(server)
    health = health_pb2_grpc.HealthStub(stubs.channel)
    request = health_pb2.HealthCheckRequest(service="hashmatch.v1.Matching")
    assert health.Check(request).status == health_pb2.HealthCheckResponse.NOT_SERVING
    error = rejected(lambda: match(stubs, b"x" * 32))
    assert error.code() == grpc.StatusCode.UNAVAILABLE and "loading" in error.details()
    gate.set()
    server.thread.wait_serving()
    assert health.Check(request).status == health_pb2.HealthCheckResponse.SERVING
    assert health.Check(health_pb2.HealthCheckRequest()).status == \
        health_pb2.HealthCheckResponse.SERVING
    server.stop()


def _list_services(channel):
    reflect = reflection_pb2_grpc.ServerReflectionStub(channel)
    (answer,) = reflect.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(
        list_services="")]))
    return {s.name for s in answer.list_services_response.service}


def test_reflection_is_off_unless_enabled(stubs, start_server, connect, tmp_path):
    error = rejected(lambda: _list_services(stubs.channel))
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED
    server = start_server(reflection=True, db_path=str(tmp_path / "r.db"))
    names = _list_services(connect(server).channel)
    assert {"hashmatch.v1.Cases", "hashmatch.v1.Matching", "hashmatch.v1.ListInfo",
            "grpc.health.v1.Health"} <= names


def test_garbage_bytes_do_not_hurt_the_server(stubs, random_hashes):
    raw = stubs.channel.unary_unary("/hashmatch.v1.Matching/MatchBatch",
                                    request_serializer=None, response_deserializer=None)
    error = rejected(lambda: raw(b"\xff\xfe garbage \x00\x01" * 10, metadata=stubs.key))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not a valid message" in error.details()
    raw_case = stubs.channel.unary_unary("/hashmatch.v1.Cases/SubmitCase",
                                         request_serializer=None, response_deserializer=None)
    error = rejected(lambda: raw_case(b"\x0a\xff\xff\xff\xff\x0f"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    raw_health = stubs.channel.unary_unary("/grpc.health.v1.Health/Check",
                                           request_serializer=None, response_deserializer=None)
    with server_log() as records:          # open to anyone: refused, not a logged traceback
        error = rejected(lambda: raw_health(b"\xff\xff\xff"))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert not [r for r in records if r.levelno >= logging.ERROR]
    listed = random_hashes(1, seed=11)
    stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[image(listed[0])]))
    assert len(match(stubs, listed.tobytes()).matches) == 1


def test_copied_hash_is_answered_once_not_capped_away(start_server, random_hashes, connect):
    """1,000 copies of one hash in the list (one anonymous case) are stored and answered once:
    the match names the smallest of their entry ids with same_hash_entries 1,000, and the real
    entry near it keeps its place in the capped answer (nothing truncated)."""
    stubs = connect(start_server(max_matches_per_hash=16))
    listed, other = random_hashes(2, seed=12)
    copies = stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[image(listed)] * 1000))
    near = stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[image(flip(listed, 3))]))
    answer = match(stubs, np.stack([flip(listed, 3), other, listed]).tobytes())
    first, real = min(copies.entry_ids), near.entry_ids[0]
    # Position 0 is 0 away from the near entry and 3 from the 1,000; position 2 the reverse.
    assert hits(answer) == [(0, real, 0), (0, first, 3), (2, first, 0), (2, real, 3)]
    assert [m.same_hash_entries for m in answer.matches] == [1, 1000, 1000, 1]
    assert list(answer.truncated_positions) == []


def test_copied_video_and_frames(start_server, random_hashes, connect):
    """20 copies of a video and 3 photos of its first frame: a video query judges each listed
    video on its own frames (the 16 closest, flagged); a photo query with include_video_frames
    gets the photo hash once and the frame hash once, each naming its smallest entry."""
    stubs = connect(start_server(max_matches_per_hash=16))
    frames = random_hashes(4, seed=14)
    videos = stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[video(frames)] * 20)).entry_ids
    photos = stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[image(frames[0])] * 3)).entry_ids
    answer = match(stubs, frames.tobytes(), VPDQ)
    assert hits(answer) == [(0, e, 0) for e in sorted(videos)[:16]]
    assert list(answer.truncated_positions) == [0]
    answer = match(stubs, frames[0].tobytes(), include_video_frames=True)
    got = sorted((m.entry_id, m.signal_type, m.same_hash_entries) for m in answer.matches)
    assert got == sorted([(min(photos), PDQ, 3), (min(videos), VPDQ, 20)])
    assert list(answer.truncated_positions) == []


def test_batch_cap_divides_among_hashes(start_server, random_hashes, connect):
    stubs = connect(start_server(max_matches_per_hash=16, max_matches_per_batch=20,
                                 max_batch_hashes=8))
    listed = random_hashes(1, seed=13)
    bits = np.unpackbits(np.repeat(listed, 30, axis=0), axis=1)
    bits[np.arange(30), np.arange(30)] ^= 1     # 30 distinct hashes, each 1 bit from listed
    case = stubs.cases.SubmitCase(pb.SubmitCaseRequest(
        media=[image(h) for h in np.packbits(bits, axis=1)]))
    answer = match(stubs, np.repeat(listed, 4, axis=0).tobytes())
    closest = sorted(case.entry_ids)[:5]  # 20 matches / 4 hashes
    assert hits(answer) == [(p, e, 1) for p in range(4) for e in closest]
    assert list(answer.truncated_positions) == [0, 1, 2, 3]
    one = match(stubs, listed.tobytes())
    assert len(one.matches) == 16 and list(one.truncated_positions) == [0]


def test_metrics_endpoint(start_server, random_hashes, connect):
    import urllib.request
    server = start_server(metrics_listen="127.0.0.1:0")
    stubs = connect(server)
    match(stubs, random_hashes(3).tobytes())
    rejected(lambda: match(stubs, b"x"))
    url = f"http://127.0.0.1:{server.app.metrics_port}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    assert "hashmatch_batches_total 1" in text and "hashmatch_hashes_total 3" in text
    assert 'hashmatch_errors_total{code="INVALID_ARGUMENT"} 1' in text
    assert 'hashmatch_list_size{kind="pdq"} 0' in text


def test_health_turns_not_serving_on_shutdown(start_server):
    import threading
    server = start_server(shutdown_grace_s=0.5)
    channel = server.channel()
    health = health_pb2_grpc.HealthStub(channel)
    seen, first = [], threading.Event()

    def watch():
        try:
            for answer in health.Watch(health_pb2.HealthCheckRequest(service="")):
                seen.append(answer.status)
                first.set()
        except grpc.RpcError:
            pass
        first.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert first.wait(10)
    server.stop()
    watcher.join(10)
    channel.close()
    assert seen[0] == health_pb2.HealthCheckResponse.SERVING
    assert seen[-1] == health_pb2.HealthCheckResponse.NOT_SERVING


def test_concurrent_submits_and_withdrawals_keep_the_list_consistent(stubs, random_hashes):
    from concurrent.futures import ThreadPoolExecutor
    listed = random_hashes(16, seed=13)

    def submit_then_maybe_withdraw(i):
        case = stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[image(listed[i])]))
        if i % 2:
            stubs.cases.WithdrawCase(pb.WithdrawCaseRequest(case_id=case.case_id, pin=case.pin))
        return case.entry_ids[0]

    with ThreadPoolExecutor(4) as pool:
        entries = list(pool.map(submit_then_maybe_withdraw, range(16)))
    answer = match(stubs, listed.tobytes(), threshold=0)
    assert hits(answer) == [(i, entries[i], 0) for i in range(0, 16, 2)]
    info = stubs.list_info.GetListInfo(pb.GetListInfoRequest(), metadata=stubs.key)
    assert info.last_sequence == answer.list_sequence == 16 + 8
    assert {c.signal_type: c.count for c in info.counts}[PDQ] == 8


SMALL_REQUESTS = {"max_request_bytes": 64 * 1024, "max_batch_hashes": 1024,
                  "max_case_hashes": 1000, "max_case_items": 100, "max_video_frames": 1000}


def test_a_message_over_max_request_bytes(start_server, connect):
    server = start_server(**SMALL_REQUESTS)
    stubs = connect(server)
    error = rejected(lambda: match(stubs, bytes(32 * 4096)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert len(match(stubs, bytes(32 * 16)).matches) == 0


@pytest.mark.parametrize("threads, index_threads, cores", [
    (0, 1, len(os.sched_getaffinity(0))), (1, 1, 1), (2, 2, 1)])
def test_search_threads_reach_the_index(start_server, threads, index_threads, cores):
    """0: one thread a search, batches cut over the idle cores; N: N threads a search."""
    server = start_server(search_threads=threads)
    assert server.app.state._images.inner.threads == index_threads
    assert server.app.state._frames.inner.threads == index_threads
    assert server.app.state._cores.cores == cores


@pytest.mark.parametrize("layout, chained", [("speed", True), ("compact", False)])
def test_index_layout_reaches_the_tables(start_server, random_hashes, connect, layout, chained):
    """The setting picks the tables the list is searched with, also after a reload."""
    from hashmatch.core.index import MIN_INDEXED_HASHES

    listed = random_hashes(MIN_INDEXED_HASHES + 10, seed=11)
    server = start_server(index_layout=layout, imported=listed)
    for _ in range(2):
        assert server.app.state._images.inner.describe()["chained"] is chained
        assert len(match(connect(server), listed[5].tobytes()).matches) == 1
        server.app.follower.load()


def test_unknown_index_layout_is_refused():
    from hashmatch.server.config import ServerConfig
    with pytest.raises(ValueError, match="index_layout must be one of speed, compact, got 'fast'"):
        ServerConfig(index_layout="fast")


def test_calls_open_while_the_server_stops_get_unavailable(live_server, stubs):
    """While stop() closes the worker pools, calls still open (a Sync stream, a batch) get
    UNAVAILABLE, not INTERNAL from a closed executor."""
    live_server.app.stopping = True
    try:
        error = rejected(lambda: match(stubs, bytes(32)))
        assert error.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in error.details()
        error = rejected(lambda: stubs.cases.SubmitCase(pb.SubmitCaseRequest(
            media=[image(md5=b"s" * 16)])))
        assert error.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        live_server.app.stopping = False
    assert match(stubs, bytes(32)).matches is not None


def test_negative_search_threads_is_refused():
    from hashmatch.server.config import ServerConfig
    with pytest.raises(ValueError, match="search_threads must be >= 0, got -1"):
        ServerConfig(search_threads=-1)
