"""Platform feedback, case outcomes and false-positive protection, over real servers.

Each rule of issue 11 against real gRPC on loopback and a real store: reports counted once per
report id, the 'feedback' role, K disputing platforms (K-1 do not), the person's status in counts
only, the flood breaker holding an entry on another server, the suppression list, and review
decisions recorded with who and when, all through the change log.
"""
import time

import grpc
import numpy as np
import pytest

from hashmatch.clients.mirror import ListMirror
from hashmatch.server.outcomes import open_outcome_store
from hashmatch.server.store import open_store
from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc


def new_key(db_path: str, name: str, roles) -> str:
    """The API key of a new platform `name` with `roles`, added to the store at `db_path`."""
    store = open_store(db_path)
    try:
        return store.add_platform(name, list(roles))
    finally:
        store.close()


def platform_key(db_path: str, name: str, roles=("match", "feedback")) -> list:
    return [("x-api-key", new_key(db_path, name, roles))]


def submit_photo(channel, seed: int) -> tuple[pb.SubmitCaseResponse, bytes]:
    pdq = np.random.default_rng(seed).bytes(32)
    case = pb_grpc.CasesStub(channel).SubmitCase(pb.SubmitCaseRequest(media=[
        pb.MediaHashes(image=pb.ImageHashes(pdq=pdq, quality=90))]))
    return case, pdq


def near(pdq: bytes, bits: int, seed: int = 0) -> bytes:
    """`pdq` with `bits` distinct bits flipped (a different upload of the same picture)."""
    flipped = np.unpackbits(np.frombuffer(pdq, np.uint8))
    flipped[np.random.default_rng(seed).choice(256, bits, replace=False)] ^= 1
    return np.packbits(flipped).tobytes()


def report(entry: int, pdq: bytes, action=pb.ACTION_REMOVED, report_id="r1", **fields):
    return pb.ActionReport(report_id=report_id, entry_id=entry, signal_type=pb.SIGNAL_TYPE_PDQ,
                           hash=pdq, action=action, **fields)


def matches(channel, key, pdq: bytes) -> list[pb.Match]:
    return list(pb_grpc.MatchingStub(channel).MatchBatch(pb.MatchRequest(
        signal_type=pb.SIGNAL_TYPE_PDQ, hashes=pdq), metadata=key).matches)


def status(channel, case) -> pb.GetCaseStatusResponse:
    return pb_grpc.CasesStub(channel).GetCaseStatus(pb.GetCaseStatusRequest(
        case_id=case.case_id, pin=case.pin))


def wait_for(condition, timeout: float = 1.0) -> float:
    """Seconds until `condition()` held (fails past `timeout`)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "not within the time allowed"
        time.sleep(0.01)
    return time.monotonic() - start


def test_feedback_needs_the_feedback_role(live_server):
    channel = live_server.channel()
    case, pdq = submit_photo(channel, 1)
    feedback = pb_grpc.FeedbackStub(channel)
    match_only = platform_key(live_server.db_path, "matcher", ("match",))
    with pytest.raises(grpc.RpcError) as denied:
        feedback.ReportAction(report(case.entry_ids[0], pdq), metadata=match_only)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "'feedback' role" in denied.value.details()
    with pytest.raises(grpc.RpcError) as unknown:
        feedback.ReportAction(report(case.entry_ids[0], pdq),
                              metadata=[("x-api-key", "not-a-key")])
    assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert status(channel, case).total.copies_found == 0


def test_same_report_id_counts_once_and_bad_reports_are_refused(start_server, any_db):
    live_server = start_server(db_path=any_db)
    channel = live_server.channel()
    case, pdq = submit_photo(channel, 2)
    entry = case.entry_ids[0]
    feedback = pb_grpc.FeedbackStub(channel)
    key = platform_key(live_server.db_path, "site")
    first = feedback.ReportAction(report(entry, pdq), metadata=key)
    again = feedback.ReportAction(report(entry, pdq), metadata=key)
    assert (first.duplicate, again.duplicate) == (False, True)
    acks = list(feedback.ReportActions(iter([
        report(entry, pdq, report_id="r1"), report(entry, pdq, report_id="r2"),
        report(entry, pdq, pb.ACTION_NEEDS_REVIEW, report_id="r3")]), metadata=key))
    assert [a.duplicate for a in acks] == [True, False, False]
    outcome = status(channel, case).items[0]
    assert (outcome.copies_found, outcome.copies_removed) == (3, 2)
    for bad, rule in ((report(entry, pdq[:31]), "must be 32 bytes"),
                      (report(entry, pdq, action=pb.ACTION_UNSPECIFIED), "action must be"),
                      (report(entry, pdq, report_id=""), "report_id must have"),
                      (report(10_000, pdq), "not on the list")):
        with pytest.raises(grpc.RpcError) as refused:
            feedback.ReportAction(bad, metadata=key)
        assert refused.value.code() in (grpc.StatusCode.INVALID_ARGUMENT,
                                        grpc.StatusCode.NOT_FOUND)
        assert rule in refused.value.details()
    assert status(channel, case).items[0].copies_found == 3


@pytest.mark.parametrize("mode", ["flag", "hold"])
def test_k_platforms_dispute_an_entry_and_k_minus_one_do_not(start_server, mode):
    server = start_server(dispute_platforms=3, disputed_entries=mode)
    channel = server.channel()
    case, pdq = submit_photo(channel, 3)
    entry = case.entry_ids[0]
    feedback = pb_grpc.FeedbackStub(channel)
    keys = [platform_key(server.db_path, f"site{i}") for i in range(3)]
    for i, key in enumerate(keys[:2]):
        for n in range(2):      # the same platform twice is still one platform
            ack = feedback.ReportAction(report(entry, pdq, pb.ACTION_NOT_VIOLATING,
                                               f"nv{n}"), metadata=key)
            assert not ack.disputed
    assert [m.disputed for m in matches(channel, keys[0], pdq)] == [False]
    ack = feedback.ReportAction(report(entry, pdq, pb.ACTION_NOT_VIOLATING), metadata=keys[2])
    assert ack.disputed and ack.sequence > case.sequence
    found = matches(channel, keys[0], pdq)
    assert [m.disputed for m in found] == ([True] if mode == "flag" else [])
    outcome = status(channel, case)
    assert outcome.items[0].under_review and outcome.items[0].copies_found == 0
    assert "under review" in outcome.summary


def test_the_person_sees_counts_and_nothing_else(live_server):
    channel = live_server.channel()
    case, pdq = submit_photo(channel, 4)
    entry = case.entry_ids[0]
    key = platform_key(live_server.db_path, "PlatformWithAName")
    feedback = pb_grpc.FeedbackStub(channel)
    feedback.ReportAction(report(entry, pdq, occurred_unix=1_700_000_000, reason_code="ncii",
                                 tags=["upload-42"]), metadata=key)
    feedback.ReportAction(report(entry, pdq, pb.ACTION_QUALITY_UNKNOWN, "r2",
                                 occurred_unix=1_700_100_000), metadata=key)
    answer = status(channel, case)
    item = answer.items[0]
    assert (item.entry_id, item.copies_found, item.copies_removed) == (entry, 2, 1)
    assert (item.last_found_unix, item.last_removed_unix) == (1_700_100_000, 1_700_000_000)
    assert not item.under_review
    assert answer.total.copies_found == 2 and answer.total.copies_removed == 1
    assert answer.summary.startswith("Platforms have found copies of your photos or videos "
                                     "2 times")
    # Nothing about who reported or what they saw reaches the person.
    wire = answer.SerializeToString()
    for secret in (b"PlatformWithAName", pdq, b"upload-42", b"ncii"):
        assert secret not in wire
    assert {f.name for f, _ in item.ListFields()} <= {
        "entry_id", "copies_found", "copies_removed", "last_found_unix", "last_removed_unix",
        "under_review"}


def test_a_flood_holds_the_entry_on_another_server(start_server, any_db):
    db = any_db
    one = start_server(db_path=db, flood_limit=5, flood_window_s=60)
    two = start_server(db_path=db, flood_limit=5, flood_window_s=60)
    case, pdq = submit_photo(one.channel(), 5)
    key_one = [("x-api-key", one.api_key)]
    key_two = [("x-api-key", two.api_key)]
    wait_for(lambda: len(matches(two.channel(), key_two, pdq)) == 1, 2)
    for i in range(5):          # five distinct uploads: at the limit, still matching
        assert len(matches(one.channel(), key_one, near(pdq, 4, seed=i))) == 1
    for _ in range(3):          # the same upload again is not a new one
        assert len(matches(one.channel(), key_one, near(pdq, 4, seed=0))) == 1
    assert len(matches(one.channel(), key_one, near(pdq, 4, seed=99))) == 1  # the sixth: trips
    assert matches(one.channel(), key_one, pdq) == []
    wait_for(lambda: matches(two.channel(), key_two, pdq) == [], 1.0)
    held = pb_grpc.ReviewStub(one.channel()).ListHeld(
        pb.ListHeldRequest(), metadata=platform_key(db, "reviewer", ("admin",))).entries
    assert [(h.entry_id, h.reason, h.matching) for h in held] == [
        (case.entry_ids[0], pb.HELD_REASON_FLOOD, False)]
    assert "6 distinct uploads" in held[0].detail
    assert status(one.channel(), case).items[0].under_review
    assert one.app.metrics.flood_holds == 1 and two.app.metrics.flood_holds == 0


def test_suppression_refuses_near_duplicates_and_holds_listed_entries(live_server):
    channel = live_server.channel()
    case, pdq = submit_photo(channel, 6)
    other, other_pdq = submit_photo(channel, 7)
    admin = platform_key(live_server.db_path, "reviewer", ("admin",))
    key = [("x-api-key", live_server.api_key)]
    review = pb_grpc.ReviewStub(channel)
    with pytest.raises(grpc.RpcError) as denied:
        review.Suppress(pb.SuppressRequest(pdq_hashes=near(pdq, 3)), metadata=key)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    answer = review.Suppress(pb.SuppressRequest(pdq_hashes=near(pdq, 3), note="blank wall"),
                             metadata=admin)
    assert answer.added == 1 and list(answer.held_entries) == [case.entry_ids[0]]
    assert matches(channel, key, pdq) == []
    assert len(matches(channel, key, other_pdq)) == 1
    with pytest.raises(grpc.RpcError) as refused:
        submit_photo_with(channel, near(pdq, 10, seed=3))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "suppression list" in refused.value.details()
    submit_photo_with(channel, other_pdq)       # far from it: accepted


def submit_photo_with(channel, pdq: bytes) -> pb.SubmitCaseResponse:
    return pb_grpc.CasesStub(channel).SubmitCase(pb.SubmitCaseRequest(media=[
        pb.MediaHashes(image=pb.ImageHashes(pdq=pdq, quality=90))]))


def test_review_reinstates_and_removes_with_who_and_when(start_server, any_db):
    server = start_server(db_path=any_db, dispute_platforms=1, disputed_entries="hold")
    channel = server.channel()
    (kept, kept_pdq), (gone, gone_pdq) = submit_photo(channel, 8), submit_photo(channel, 9)
    reporter = platform_key(server.db_path, "site")
    admin = platform_key(server.db_path, "alice", ("admin",))
    feedback, review = pb_grpc.FeedbackStub(channel), pb_grpc.ReviewStub(channel)
    for entry, pdq in ((kept.entry_ids[0], kept_pdq), (gone.entry_ids[0], gone_pdq)):
        feedback.ReportAction(report(entry, pdq, pb.ACTION_NOT_VIOLATING, f"nv{entry}"),
                              metadata=reporter)
    held = review.ListHeld(pb.ListHeldRequest(), metadata=admin).entries
    assert [(h.entry_id, h.reason, h.not_violating_platforms) for h in held] == [
        (kept.entry_ids[0], pb.HELD_REASON_DISPUTED, 1),
        (gone.entry_ids[0], pb.HELD_REASON_DISPUTED, 1)]
    assert matches(channel, reporter, kept_pdq) == []
    with pytest.raises(grpc.RpcError) as denied:
        review.ListHeld(pb.ListHeldRequest(), metadata=reporter)
    assert denied.value.code() == grpc.StatusCode.PERMISSION_DENIED
    review.Decide(pb.DecideRequest(entry_id=kept.entry_ids[0],
                                   decision=pb.DECISION_REINSTATE, note="a real match"),
                  metadata=admin)
    removed = review.Decide(pb.DecideRequest(entry_id=gone.entry_ids[0],
                                             decision=pb.DECISION_REMOVE), metadata=admin)
    assert [m.entry_id for m in matches(channel, reporter, kept_pdq)] == [kept.entry_ids[0]]
    assert matches(channel, reporter, gone_pdq) == []
    assert review.ListHeld(pb.ListHeldRequest(), metadata=admin).entries == []
    with pytest.raises(grpc.RpcError) as nothing:
        review.Decide(pb.DecideRequest(entry_id=kept.entry_ids[0],
                                       decision=pb.DECISION_REMOVE), metadata=admin)
    assert nothing.value.code() == grpc.StatusCode.NOT_FOUND
    assert not status(channel, kept).items[0].under_review
    history = review.History(pb.HistoryRequest(entry_id=kept.entry_ids[0]),
                             metadata=admin).decisions
    assert [(d.decision, d.decided_by, d.note) for d in history] == [
        (pb.DECISION_REINSTATE, "alice", "a real match")]
    store = open_outcome_store(server.db_path)
    try:
        (seq, decision, by, at, note), = store.decisions(kept.entry_ids[0])
        assert (decision, by, note) == ("reinstate", "alice", "a real match")
        assert abs(at - time.time()) < 60
        assert store.decisions(gone.entry_ids[0])[0][0] == removed.sequence
    finally:
        store.close()
    # A restart loads the same states from the store: the removal and reinstatement hold.
    server.stop()
    again = start_server(db_path=server.db_path, disputed_entries="hold")
    assert len(matches(again.channel(), reporter, kept_pdq)) == 1
    assert matches(again.channel(), reporter, gone_pdq) == []


def test_holds_and_disputes_reach_copies_through_sync(start_server, tmp_path):
    primary = start_server(flood_limit=3, dispute_platforms=1)
    channel = primary.channel()
    (flooded, pdq), (disputed, disputed_pdq) = submit_photo(channel, 10), submit_photo(channel, 11)
    reporter = platform_key(primary.db_path, "site")
    pb_grpc.FeedbackStub(channel).ReportAction(report(
        disputed.entry_ids[0], disputed_pdq, pb.ACTION_NOT_VIOLATING), metadata=reporter)
    (_, copier), = platform_key(primary.db_path, "copier", ("replicate",))
    with ListMirror(primary.target, copier) as mirror:
        follower = start_server(db_path=str(tmp_path / "follower.db"), follow=primary.target,
                                follow_api_key=copier)
        follower_key = [("x-api-key", follower.api_key)]
        # The snapshot carries the dispute.
        assert mirror.match(np.frombuffer(disputed_pdq, np.uint8)).disputed.tolist() == [True]
        assert [m.disputed for m in matches(follower.channel(), follower_key,
                                            disputed_pdq)] == [True]
        assert len(mirror.match(np.frombuffer(pdq, np.uint8))) == 1
        for i in range(4):      # the fourth distinct upload trips the breaker on the primary
            matches(channel, reporter, near(pdq, 4, seed=i))
        assert matches(channel, reporter, pdq) == []
        wait_for(lambda: len(mirror.match(np.frombuffer(pdq, np.uint8))) == 0, 1.0)
        wait_for(lambda: matches(follower.channel(), follower_key, pdq) == [], 1.0)
