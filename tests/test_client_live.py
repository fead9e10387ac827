"""HashmatchClient and StreamingMatcher against the real server (conftest's start_server).

The streaming results are compared with a brute-force oracle over the same list, at distances
just inside, on and just outside the threshold, so a lost, duplicated or misattributed answer
fails the test.
"""
from dataclasses import dataclass

import grpc
import numpy as np
import pytest

from hashmatch.clients.client import HashmatchClient, HashmatchError
from hashmatch.clients.streaming import StreamingMatcher


@dataclass(frozen=True)
class Photo:
    """Shaped like hashing.ImageHashes, so these tests need no image decoding."""
    path: str
    md5: bytes
    pdq: bytes
    quality: int


def flip_bits(hash_: bytes, count: int, rng) -> bytes:
    bits = np.unpackbits(np.frombuffer(hash_, np.uint8))
    bits[rng.choice(256, size=count, replace=False)] ^= 1
    return np.packbits(bits).tobytes()


def distance(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


@pytest.fixture
def client(live_server):
    with HashmatchClient(live_server.target, api_key=live_server.api_key, timeout=20) as c:
        yield c


def test_case_lifecycle_is_live_for_matching(client, random_hashes):
    pdqs = [row.tobytes() for row in random_hashes(2, seed=1)]
    photos = [Photo(f"p{i}.jpg", bytes([i]) * 16, pdq, 90) for i, pdq in enumerate(pdqs)]
    case_id, pin, entry_ids = client.submit_case(photos)
    assert len(entry_ids) == 2 and len(pin) >= 6

    hits = client.match_batch("pdq", pdqs + [bytes(32)])
    assert sorted((h.position, h.entry_id, h.distance) for h in hits) == [
        (0, entry_ids[0], 0), (1, entry_ids[1], 0)]
    md5_hits = client.match_batch("md5", [bytes([1]) * 16])
    assert [(h.entry_id, h.kind) for h in md5_hits] == [(entry_ids[1], "md5")]

    status = client.case_status(case_id, pin)
    assert (status.state, status.image_count, status.withdrawn_unix) == ("active", 2, 0)
    client.withdraw(case_id, pin)
    assert client.match_batch("pdq", pdqs) == []
    assert client.case_status(case_id, pin).state == "withdrawn"


def test_bad_requests_raise_with_the_servers_message(client, live_server):
    with pytest.raises(HashmatchError) as caught:
        client.case_status("no-such-case", "1234")
    assert caught.value.code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.PERMISSION_DENIED)
    assert caught.value.message
    with pytest.raises(HashmatchError) as caught:
        client.match_batch("pdq", [bytes(32)], threshold=10_000)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "threshold" in caught.value.message
    with HashmatchClient(live_server.target, api_key="wrong") as stranger:
        with pytest.raises(HashmatchError) as caught:
            stranger.list_info()
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_streaming_matches_equal_brute_force(start_server, random_hashes):
    listed = random_hashes(3000, seed=2)
    server = start_server(imported=listed, max_in_flight=3, max_batch_hashes=512)

    rng = np.random.default_rng(3)
    queries = [row.tobytes() for row in random_hashes(6000, seed=4)]
    for k in range(0, 6000, 50):  # near copies of listed hashes at distance 9, 10 and 11
        queries[k] = flip_bits(listed[k % 3000].tobytes(), 9 + k % 3, rng)
    threshold = 10
    listed_bytes = [row.tobytes() for row in listed]
    ids = [f"upload-{i}" for i in range(len(queries))]

    with HashmatchClient(server.target, api_key=server.api_key) as client:
        entry_of_row = _entry_ids_by_hash(client, listed_bytes)
        with StreamingMatcher(client, "pdq", batch_size=4096, threshold=threshold) as matcher:
            assert (matcher.batch_size, matcher.max_in_flight) == (512, 3)
            outcomes = list(matcher.match(zip(ids, queries)))

    assert all(o.error is None for o in outcomes)
    assert sorted(i for o in outcomes for i in o.item_ids) == sorted(ids)
    found = sorted((item_id, hit.entry_id, hit.distance)
                   for o in outcomes for item_id, hit in o.matches)
    expected = sorted((ids[q], entry_of_row[row], distance(query, listed_hash))
                      for q, query in enumerate(queries)
                      for row, listed_hash in enumerate(listed_bytes)
                      if q % 50 == 0 and distance(query, listed_hash) <= threshold)
    assert found == expected and len(expected) == 80  # 120 near copies, 1/3 outside


def _entry_ids_by_hash(client, listed_bytes):
    """Imported hashes get entry ids chosen by the store; ask the server which is which."""
    entry_of_row = {}
    for start in range(0, len(listed_bytes), 500):
        for hit in client.match_batch("pdq", listed_bytes[start:start + 500], threshold=0):
            entry_of_row[start + hit.position] = hit.entry_id
    assert len(entry_of_row) == len(listed_bytes)
    return entry_of_row


def test_streaming_rejected_batches_do_not_end_the_stream(live_server, random_hashes):
    with HashmatchClient(live_server.target, api_key=live_server.api_key) as client:
        limit = client.list_info().max_threshold
        with StreamingMatcher(client, "pdq", batch_size=100, threshold=limit + 1) as matcher:
            outcomes = list(matcher.match(enumerate(random_hashes(350, seed=5))))
    assert len(outcomes) == 4
    assert all(o.error is not None and o.error.code == grpc.StatusCode.INVALID_ARGUMENT
               for o in outcomes)
    assert sum(len(o.item_ids) for o in outcomes) == 350


def test_streaming_with_a_wrong_key_raises(live_server, random_hashes):
    with HashmatchClient(live_server.target, api_key="wrong") as client:
        with pytest.raises(HashmatchError) as caught:
            with StreamingMatcher(client, "pdq", max_in_flight=2) as matcher:
                list(matcher.match(enumerate(random_hashes(10, seed=6))))
    assert caught.value.code == grpc.StatusCode.UNAUTHENTICATED


def test_capped_hits_say_there_are_more(client, random_hashes):
    """20 hashes near one query hash: the client gets the server's 16 closest (ties by entry
    id), each flagged `more`; an uncapped hash in the same batch is not flagged."""
    listed, single = random_hashes(2, seed=40)
    bits = np.unpackbits(np.repeat(listed[None], 20, axis=0), axis=1)
    bits[np.arange(20), np.arange(20)] ^= 1         # 20 distinct hashes, each 1 bit away
    _, _, near = client.submit_case([Photo(f"c{i}.jpg", b"", h.tobytes(), 90)
                                     for i, h in enumerate(np.packbits(bits, axis=1))])
    _, _, (alone,) = client.submit_case([Photo("s.jpg", b"", single.tobytes(), 90)])
    hits = client.match_batch("pdq", [listed.tobytes(), single.tobytes()])
    assert [(h.position, h.entry_id, h.more) for h in hits] == (
        [(0, e, True) for e in sorted(near)[:16]] + [(1, alone, False)])


def test_copies_of_a_hash_are_one_hit(client, random_hashes):
    """A hash listed 20 times is one hit naming the smallest entry, with how many hold it."""
    copied = random_hashes(1, seed=41)[0].tobytes()
    _, _, copies = client.submit_case([Photo(f"c{i}.jpg", b"", copied, 90) for i in range(20)])
    hits = client.match_batch("pdq", [copied])
    assert [(h.entry_id, h.same_hash_entries, h.more) for h in hits] == [(min(copies), 20, False)]
