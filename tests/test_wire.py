"""The numpy-built match answers (server/wire.py) against protobuf itself: the same bytes as
protobuf writes, and the same MatchResponse as making one pb.Match a hit, at the edges of every
varint length and for every kind of hit."""
import numpy as np
import pytest

from hashmatch.core.signals import SIGNAL_MD5, SIGNAL_PDQ, SIGNAL_VPDQ
from hashmatch.server import convert, wire
from hashmatch.server.listing import Matches
from hashmatch.v1 import hashmatch_pb2 as pb

EDGES = [0, 1, 127, 128, 16383, 16384, 2**31 - 1, 2**32 - 1, 2**35, 2**56 - 1, 2**56,
         2**63 - 1, 2**63, 2**64 - 1]


def per_hit_answer(sequence, m: Matches, list_sequence) -> pb.MatchResponse:
    """The oracle: one pb.Match a hit, as the server built answers before wire.py."""
    wire_signal = {SIGNAL_PDQ: pb.SIGNAL_TYPE_PDQ, SIGNAL_MD5: pb.SIGNAL_TYPE_MD5,
                   SIGNAL_VPDQ: pb.SIGNAL_TYPE_VPDQ}
    return pb.MatchResponse(
        sequence=sequence, list_sequence=list_sequence,
        truncated_positions=[i for i, t in enumerate(m.truncated.tolist()) if t],
        matches=[pb.Match(position=int(m.positions[i]), entry_id=int(m.entry_ids[i]),
                          distance=int(m.distances[i]),
                          signal_type=wire_signal[int(m.signal_types[i])],
                          video_frame=int(m.signal_types[i]) == SIGNAL_VPDQ,
                          disputed=m.disputed is not None and bool(m.disputed[i]),
                          same_hash_entries=1 if m.holders is None else int(m.holders[i]))
                 for i in range(len(m))])


def test_repeated_message_is_what_protobuf_writes_at_every_varint_length():
    ids = np.array(EDGES, np.uint64)
    positions = np.arange(len(EDGES), dtype=np.int64)[::-1] * 1000
    distances = np.array([0, 256, 31, 1, 0, 5, 127, 128, 0, 2, 3, 4, 200, 0], np.int32)
    flags = np.arange(len(EDGES)) % 3 == 0
    want = pb.MatchResponse(matches=[
        pb.Match(position=int(p), entry_id=int(e), distance=int(d), disputed=bool(f))
        for p, e, d, f in zip(positions, ids, distances, flags)])
    got = wire.repeated_message(2, [(1, positions), (2, ids), (3, distances), (8, flags)])
    assert got == want.SerializeToString(deterministic=True)


def test_random_hits_give_the_per_hit_answer():
    rng = np.random.default_rng(7)
    n, queries = 3000, 16384
    signals = rng.choice([SIGNAL_PDQ, SIGNAL_MD5, SIGNAL_VPDQ], n).astype(np.int8)
    matches = Matches(np.sort(rng.integers(0, queries, n)), rng.integers(0, 2**64, n, np.uint64),
                      rng.integers(0, 257, n).astype(np.int32), signals,
                      rng.random(queries) < 0.01, disputed=rng.random(n) < 0.2,
                      holders=rng.integers(1, 2**31, n))
    got = convert.match_response(12, matches, 2**40)
    want = per_hit_answer(12, matches, 2**40)
    assert got == want
    assert got.SerializeToString(deterministic=True) == want.SerializeToString(deterministic=True)
    assert [m.video_frame for m in got.matches] == (signals == SIGNAL_VPDQ).tolist()


@pytest.mark.parametrize("disputed", [None, np.array([True, False])])
def test_small_answers_keep_order_and_flags(disputed):
    matches = Matches(np.array([0, 0]), np.array([9, 2**64 - 1], np.uint64),
                      np.array([0, 31], np.int32), np.array([SIGNAL_PDQ] * 2, np.int8),
                      np.array([True, False]), disputed=disputed)
    got = convert.match_response(1, matches, 0)
    assert got == per_hit_answer(1, matches, 0)
    assert [(m.position, m.entry_id, m.distance) for m in got.matches] == [
        (0, 9, 0), (0, 2**64 - 1, 31)]
    assert list(got.truncated_positions) == [0]


def test_no_hits_is_an_empty_answer():
    none = Matches(np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros(0, np.int32),
                   np.zeros(0, np.int8), np.zeros(5, bool))
    assert convert.match_response(3, none, 4) == pb.MatchResponse(sequence=3, list_sequence=4)


def test_video_answers_keep_their_percentages():
    matches = Matches(np.zeros(2, np.int64), np.array([5, 6], np.uint64),
                      np.array([3, 9], np.int32), np.full(2, SIGNAL_VPDQ, np.int8),
                      np.array([False]), np.array([90.0, 80.0]), np.array([70.0, 60.0]))
    got = convert.match_response(1, matches, 0).matches
    assert [(m.entry_id, m.query_match_percent, m.compared_match_percent, m.video_frame)
            for m in got] == [(5, 90.0, 70.0, False), (6, 80.0, 60.0, False)]


@pytest.mark.parametrize("fields", [[], [(16, np.zeros(1))], [(i, np.zeros(1)) for i in
                                                                range(1, 13)]])
def test_fields_outside_the_one_byte_layout_are_refused(fields):
    with pytest.raises(ValueError, match="fields numbered 1..15"):
        wire.repeated_message(2, fields)
