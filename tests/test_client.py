"""Client library and StreamingMatcher against a scripted in-process server.

The real server answers in order and rarely fails; this fake answers stream batches in reverse
order, rejects chosen batches, and fails on purpose, so the client's mapping, error and retry
paths are exercised for certain. tests/test_client_live.py repeats the essentials against the
real server.
"""
from concurrent import futures
import threading

import grpc
import numpy as np
import pytest
from google.rpc import status_pb2

from hashmatch.clients.client import HashmatchClient, HashmatchError, MatchHit
from hashmatch.clients.streaming import StreamingMatcher
from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc

WINDOW = 3
API_KEY = "test-key"
POISON = bytes([0xEE]) * 32  # a batch holding this hash is rejected


def listed_entry(hash_: bytes) -> int | None:
    """The fake list: a hash whose first byte is 1 matches entry int(bytes 1..4)."""
    return int.from_bytes(hash_[1:5], "big") if hash_[0] == 1 else None


def answer(request: pb.MatchRequest) -> pb.MatchResponse:
    size = 16 if request.signal_type == pb.SIGNAL_TYPE_MD5 else 32
    hashes = [request.hashes[i:i + size] for i in range(0, len(request.hashes), size)]
    if POISON in hashes:
        return pb.MatchResponse(sequence=request.sequence, error=status_pb2.Status(
            code=grpc.StatusCode.INVALID_ARGUMENT.value[0], message="poison hash in batch"))
    matches = [pb.Match(position=i, entry_id=listed_entry(h), distance=3,
                        signal_type=request.signal_type)
               for i, h in enumerate(hashes) if listed_entry(h) is not None]
    return pb.MatchResponse(sequence=request.sequence, matches=matches)


class FakeServer(pb_grpc.CasesServicer, pb_grpc.MatchingServicer, pb_grpc.ListInfoServicer):
    def __init__(self):
        self.calls = {"SubmitCase": 0, "GetListInfo": 0}
        self.unavailable_left = {"SubmitCase": 0, "GetListInfo": 0}
        self.submitted: list[pb.SubmitCaseRequest] = []
        self.abort_streams = False
        self.keys_seen: list[str | None] = []

    def _flaky(self, name, context):
        self.calls[name] += 1
        if self.unavailable_left[name] > 0:
            self.unavailable_left[name] -= 1
            context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")

    def SubmitCase(self, request, context):
        self._flaky("SubmitCase", context)
        self.submitted.append(request)
        return pb.SubmitCaseResponse(case_id="case-1", pin="123456",
                                     entry_ids=range(10, 10 + len(request.media)), sequence=7)

    def GetCaseStatus(self, request, context):
        if request.pin != "123456":
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "wrong PIN for this case")
        return pb.GetCaseStatusResponse(case_id=request.case_id, state=pb.CASE_STATE_ACTIVE,
                                        image_count=2, created_unix=1_700_000_000)

    def GetListInfo(self, request, context):
        self._flaky("GetListInfo", context)
        self.keys_seen.append(dict(context.invocation_metadata()).get("x-api-key"))
        return pb.GetListInfoResponse(max_in_flight=WINDOW, max_batch_hashes=16384,
                                      default_threshold=31, max_threshold=64)

    def MatchBatch(self, request, context):
        self.keys_seen.append(dict(context.invocation_metadata()).get("x-api-key"))
        return answer(request)

    def MatchStream(self, request_iterator, context):
        if self.abort_streams:
            next(request_iterator, None)
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "unknown API key")
        held = []
        for request in request_iterator:
            held.append(request)
            if len(held) == 2 or len(request.hashes) == 32:  # pairs reversed; a lone hash at once
                yield from (answer(r) for r in reversed(held))
                held.clear()
        yield from (answer(r) for r in reversed(held))


@pytest.fixture(scope="module")
def fake():
    servicer = FakeServer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_CasesServicer_to_server(servicer, server)
    pb_grpc.add_MatchingServicer_to_server(servicer, server)
    pb_grpc.add_ListInfoServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield servicer, f"127.0.0.1:{port}"
    server.stop(None)


@pytest.fixture
def client(fake):
    servicer, target = fake
    servicer.abort_streams = False
    with HashmatchClient(target, api_key=API_KEY, timeout=10) as connected:
        yield connected


class WindowWatcher:
    """Wraps open_match_stream to check the client never has more than `window` unanswered."""

    def __init__(self, client, window):
        self.window, self.sent, self.received, self.worst = window, 0, 0, 0
        self._open = client.open_match_stream
        client.open_match_stream = self.open

    def open(self, requests):
        def counted():
            for request in requests:
                self.sent += 1
                self.worst = max(self.worst, self.sent - self.received)
                yield request
        call = self._open(counted())
        watcher = self

        class Counted:
            def __iter__(self):
                for response in call:
                    watcher.received += 1
                    yield response

            def cancel(self):
                call.cancel()
        return Counted()


def random_hashes(n, seed, listed_every=7):
    rng = np.random.default_rng(seed)
    hashes = rng.integers(0, 256, size=(n, 32), dtype=np.uint8)
    hashes[:, 0] = np.where(np.arange(n) % listed_every == 0, 1, 2)
    return [bytes(row) for row in hashes]


# ---------------------------------------------------------------------- client


def test_submit_sends_only_hashes_and_unpacks(client, fake):
    from dataclasses import dataclass

    @dataclass
    class Image:
        path: str
        md5: bytes
        pdq: bytes
        quality: int

    @dataclass
    class Frame:
        frame_number: int
        timestamp: float
        pdq: bytes
        quality: int

    @dataclass
    class Video:
        path: str
        md5: bytes
        frames: tuple
        fps: float

    image = Image("a.jpg", b"\x01" * 16, b"\x02" * 32, 90)
    video = Video("v.mp4", b"\x03" * 16, (Frame(0, 0.0, b"\x04" * 32, 80),
                                         Frame(30, 1.0, b"\x05" * 32, 40)), 30.0)
    case = client.submit_case([image, video])
    case_id, pin, entry_ids = case
    assert (case_id, pin, entry_ids, case.sequence) == ("case-1", "123456", (10, 11), 7)
    assert "123456" not in repr(case)
    sent = fake[0].submitted[-1]
    assert sent.media[0].image == pb.ImageHashes(md5=b"\x01" * 16, pdq=b"\x02" * 32, quality=90)
    assert sent.media[1].video == pb.VideoHashes(md5=b"\x03" * 16,
                                                 frame_pdqs=b"\x04" * 32 + b"\x05" * 32,
                                                 frame_qualities=[80, 40])
    assert "path" not in str(sent)


def test_server_errors_carry_code_and_message(client):
    with pytest.raises(HashmatchError) as caught:
        client.case_status("case-1", "000000")
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED
    assert caught.value.message == "wrong PIN for this case"
    assert client.case_status("case-1", "123456").state == "active"


def test_unreachable_server_is_a_clear_error():
    with HashmatchClient("127.0.0.1:1", timeout=2) as client:
        with pytest.raises(HashmatchError) as caught:
            client.list_info()
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert "cannot reach the hashmatch server at 127.0.0.1:1" in str(caught.value)


def test_retries_only_idempotent_calls_on_unavailable(client, fake):
    servicer = fake[0]
    before = servicer.calls["GetListInfo"]
    servicer.unavailable_left["GetListInfo"] = 2
    assert client.list_info().max_in_flight == WINDOW
    assert servicer.calls["GetListInfo"] - before == 3

    before = servicer.calls["SubmitCase"]
    servicer.unavailable_left["SubmitCase"] = 1
    with pytest.raises(HashmatchError) as caught:
        client.submit_case([])
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert servicer.calls["SubmitCase"] - before == 1, "a submission must never be retried"


def test_match_batch_maps_positions_and_sends_api_key(client, fake):
    hashes = random_hashes(50, seed=1)
    hits = client.match_batch("pdq", hashes, threshold=10)
    assert [h.position for h in hits] == [i for i in range(50) if i % 7 == 0]
    assert all(h.entry_id == listed_entry(hashes[h.position]) and h.kind == "pdq" for h in hits)
    assert fake[0].keys_seen[-1] == API_KEY
    packed = client.match_batch("pdq", np.frombuffer(b"".join(hashes), np.uint8).reshape(-1, 32))
    assert packed == hits


def test_match_batch_rejects_wrong_hash_size(client):
    """Refused locally, as a HashmatchError like every other failure (and still a ValueError)."""
    with pytest.raises(HashmatchError, match="must be 32 bytes, got 31") as info:
        client.match_batch("pdq", [b"\x00" * 31])
    assert info.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert isinstance(info.value, ValueError)
    with pytest.raises(HashmatchError, match="multiple of 32 bytes, got 5"):
        client.match_batch("pdq", b"\x00" * 5)
    with pytest.raises(HashmatchError, match="signal type"):
        client.match_batch("sha1", [b"\x00" * 32])


# ---------------------------------------------------------------------- streaming


def test_stream_maps_out_of_order_answers_to_caller_ids(client):
    watcher = WindowWatcher(client, WINDOW)
    hashes = random_hashes(10_000, seed=2)
    pairs = [(f"upload-{i}", h) for i, h in enumerate(hashes)]
    with StreamingMatcher(client, "pdq", batch_size=512) as matcher:
        assert matcher.max_in_flight == WINDOW
        outcomes = list(matcher.match(pairs))
    sequences = [o.sequence for o in outcomes]
    assert sequences != sorted(sequences), "the fake should have answered out of order"
    assert sorted(sequences) == list(range(1, len(sequences) + 1))
    assert sorted(i for o in outcomes for i in o.item_ids) == sorted(i for i, _ in pairs)
    found = {(item_id, hit.entry_id) for o in outcomes for item_id, hit in o.matches}
    expected = {(f"upload-{i}", listed_entry(h)) for i, h in enumerate(hashes) if h[0] == 1}
    assert found == expected
    assert watcher.worst <= WINDOW
    assert watcher.sent == len(outcomes)


@pytest.mark.parametrize("batch_size", [1, 7, 4096])
def test_stream_answers_every_item_once_whatever_the_batch_size(client, batch_size):
    hashes = random_hashes(300, seed=batch_size)
    with StreamingMatcher(client, "pdq", batch_size=batch_size) as matcher:
        outcomes = list(matcher.match(zip(range(300), hashes)))
    assert sorted(i for o in outcomes for i in o.item_ids) == list(range(300))
    assert all(len(o.item_ids) <= batch_size for o in outcomes)
    matched = sorted(item_id for o in outcomes for item_id, _ in o.matches)
    assert matched == list(range(0, 300, 7))


def test_stream_reports_a_rejected_batch_and_goes_on(client):
    hashes = random_hashes(100, seed=3)
    hashes[42] = POISON
    with StreamingMatcher(client, "pdq", batch_size=10, max_in_flight=2) as matcher:
        outcomes = list(matcher.match(enumerate(hashes)))
    failed = [o for o in outcomes if o.error is not None]
    assert len(failed) == 1
    assert 42 in failed[0].item_ids and failed[0].matches == ()
    assert failed[0].error.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "poison" in failed[0].error.message
    matched = {item_id for o in outcomes for item_id, _ in o.matches}
    assert matched == {i for i in range(100) if i % 7 == 0 and not 40 <= i < 50}


def test_stream_add_many_and_md5(client):
    rng = np.random.default_rng(4)
    md5s = rng.integers(0, 256, size=(300, 16), dtype=np.uint8)
    md5s[::5, 0] = 1
    md5s[1::5, 0] = 0
    with StreamingMatcher(client, "md5", batch_size=64, max_in_flight=WINDOW) as matcher:
        matcher.add_many(range(1000, 1300), md5s)
        matcher.close()
        outcomes = list(matcher.results())
    matched = sorted(item_id for o in outcomes for item_id, _ in o.matches)
    assert matched == list(range(1000, 1300, 5))
    assert all(hit.kind == "md5" for o in outcomes for _, hit in o.matches)


def first_outcome(matcher, wait_s=20):
    """The first outcome, or None if none arrives in `wait_s` (so a bug fails, not hangs)."""
    arrived = []
    reader = threading.Thread(target=lambda: arrived.append(next(matcher.results())),
                              daemon=True)
    reader.start()
    reader.join(timeout=wait_s)
    return arrived[0] if arrived else None


def test_stream_sends_a_partial_batch_after_the_linger(client):
    matcher = StreamingMatcher(client, "pdq", batch_size=4096, linger=0.02, max_in_flight=2)
    matcher.add("only", random_hashes(1, seed=5)[0])
    outcome = first_outcome(matcher)
    assert outcome is not None and outcome.item_ids == ("only",), "linger should have sent it"
    matcher.close()
    assert list(matcher.results()) == []


def test_broken_stream_fails_unanswered_batches_and_raises(client, fake):
    fake[0].abort_streams = True
    with pytest.raises(HashmatchError) as caught:
        with StreamingMatcher(client, "pdq", batch_size=10, max_in_flight=2) as matcher:
            outcomes = []
            for outcome in matcher.match(enumerate(random_hashes(100, seed=6))):
                outcomes.append(outcome)
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED
    assert outcomes and all(o.error is not None for o in outcomes)


def test_stream_flush_sends_a_partial_batch_now(client):
    matcher = StreamingMatcher(client, "pdq", batch_size=4096, linger=3600, max_in_flight=2)
    matcher.add("first", random_hashes(1, seed=7)[0])
    matcher.flush()
    outcome = first_outcome(matcher)
    assert outcome is not None and outcome.item_ids == ("first",)
    matcher.close()
    assert list(matcher.results()) == []


@pytest.mark.parametrize("bad", [0, 16385])
def test_stream_batch_size_limits(client, bad):
    with pytest.raises(ValueError, match="batch_size"):
        StreamingMatcher(client, "pdq", batch_size=bad, max_in_flight=1)


def test_stream_rejects_wrong_hash_size(client):
    with StreamingMatcher(client, "pdq", max_in_flight=1) as matcher:
        with pytest.raises(ValueError, match="must be 32 bytes, got 16"):
            matcher.add("x", b"\x00" * 16)


def test_match_hit_repr_is_readable():
    hit = MatchHit(position=0, entry_id=5, distance=3, kind="pdq")
    assert "entry_id=5" in repr(hit) and "distance=3" in repr(hit)
